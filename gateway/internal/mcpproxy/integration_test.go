package mcpproxy_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/gateway/internal/funckey"
	"github.com/mcpgate/mcpgate/gateway/internal/grants"
	"github.com/mcpgate/mcpgate/gateway/internal/identity"
	"github.com/mcpgate/mcpgate/gateway/internal/mcpproxy"
	"github.com/mcpgate/mcpgate/gateway/internal/session"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
	"github.com/mcpgate/mcpgate/gateway/internal/store/redistest"
)

// realStack is the chain with real parts: redis-server, grants with its revocation
// subscription, the file key source, and a backend that enforces the function key.
type realStack struct {
	redis    *redistest.Server
	grants   *grants.Manager
	keys     *funckey.Keys
	keyFile  string
	accepted atomic.Value // the key the backend accepts
	backend  *httptest.Server
	gw       *httptest.Server
	token    string
	grantID  string
}

func newRealStack(t *testing.T) *realStack {
	t.Helper()
	s := &realStack{redis: redistest.Start(t)}
	ctx := t.Context()
	st, err := store.NewRedis(ctx, store.RedisOptions{URL: s.redis.URL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	k, err := session.NewKey(session.StateActive, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ring, err := session.NewRing(k)
	if err != nil {
		t.Fatal(err)
	}
	s.grants = grants.New(st, session.NewStaticKeeper(ring), grants.Options{})
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.grants.Run(rctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "revocation subscription", s.grants.CacheActive)

	s.keyFile = filepath.Join(t.TempDir(), "function-key")
	writeKey(t, s.keyFile, "key-one")
	s.accepted.Store("key-one")
	s.keys = funckey.New(funckey.File(s.keyFile), funckey.Options{MinRefreshInterval: time.Nanosecond})
	s.backend = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Functions-Key") != s.accepted.Load().(string) {
			w.WriteHeader(http.StatusUnauthorized) // as the Functions host: 401, empty body
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"content":[]}}`)
	}))
	t.Cleanup(s.backend.Close)

	s.gw = httptest.NewUnstartedServer(nil)
	public := "http://" + s.gw.Listener.Addr().String()
	p, err := mcpproxy.New(mcpproxy.Config{PublicURL: public, BackendURL: s.backend.URL, Verifier: s.grants, Keys: s.keys,
		RateLimit: 1000, Logger: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	p.Register(mux)
	s.gw.Config.Handler = mux
	s.gw.Start()
	t.Cleanup(s.gw.Close)

	ts, err := s.grants.Issue(ctx, grants.Grant{ClientID: "client-1", Resource: public + "/mcp", Scope: "mcp:tools",
		User: identity.User{Subject: "sub-1", ObjectID: "oid-1", Name: "Ada"}}, identity.Tokens{AccessToken: "upstream"})
	if err != nil {
		t.Fatal(err)
	}
	s.token, s.grantID = ts.AccessToken, ts.GrantID
	return s
}

func writeKey(t *testing.T, path, key string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *realStack) call(t *testing.T) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.gw.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello_mcp"}}`))
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, secret := range []string{"key-one", "key-two", s.token} {
		if strings.Contains(string(b), secret) {
			t.Fatalf("response leaks a secret: %s", b)
		}
	}
	return resp.StatusCode, string(b)
}

func TestRealRedisFailClosedAndRecover(t *testing.T) {
	s := newRealStack(t)
	if code, body := s.call(t); code != 200 {
		t.Fatalf("first call: %d %s", code, body)
	}
	// Redis dies mid-traffic: once the subscription drop is noticed the cache is bypassed and
	// every call fails closed with 503 (never 200 from a stale cache, never 401).
	s.redis.Kill()
	start := time.Now()
	var saw503 time.Duration
	for time.Since(start) < 10*time.Second {
		code, body := s.call(t)
		if code == 503 {
			saw503 = time.Since(start)
			break
		}
		if code != 200 {
			t.Fatalf("while Redis is down: %d %s", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if saw503 == 0 {
		t.Fatal("no 503 after Redis stopped")
	}
	t.Logf("503 after %v", saw503)
	if s.grants.CacheActive() {
		t.Fatal("cache still active with Redis down")
	}
	t0 := time.Now()
	if code, _ := s.call(t); code != 503 {
		t.Fatalf("second call with Redis down: %d", code)
	}
	t.Logf("a call with Redis down takes %v", time.Since(t0))
	// Redis returns: calls succeed again without restarting anything (in-memory Redis lost the
	// grant, so a new one is issued — what matters is that the chain recovers by itself).
	s.redis.Restart(t)
	waitFor(t, "subscription back", s.grants.CacheActive)
	ts, err := s.grants.Issue(t.Context(), grants.Grant{ClientID: "client-1", Resource: strings.Replace(s.gw.URL, "http://", "http://", 1) + "/mcp",
		User: identity.User{Subject: "sub-1", ObjectID: "oid-1"}}, identity.Tokens{})
	if err != nil {
		t.Fatal(err)
	}
	s.token = ts.AccessToken
	if code, body := s.call(t); code != 200 {
		t.Fatalf("after Redis returned: %d %s", code, body)
	}
}

func TestRealRevocationAndKeyRotation(t *testing.T) {
	s := newRealStack(t)
	if code, _ := s.call(t); code != 200 {
		t.Fatal(code)
	}
	// The function key is rotated: the backend accepts only the new key, and the file gets it.
	s.accepted.Store("key-two")
	writeKey(t, s.keyFile, "key-two")
	if code, body := s.call(t); code != 200 {
		t.Fatalf("after rotation: %d %s", code, body)
	}
	if s.keys.Fingerprint() != funckey.Fingerprint("key-two") {
		t.Fatal("the key source did not pick up the new key")
	}
	// Revocation: the next call is refused with the generic 401.
	if err := s.grants.Revoke(t.Context(), s.grantID); err != nil {
		t.Fatal(err)
	}
	if code, body := s.call(t); code != 401 || !strings.Contains(body, "invalid_token") {
		t.Fatalf("after revoke: %d %s", code, body)
	}
}
