package ssebridge_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/gateway/internal/funckey"
	"github.com/mcpgate/mcpgate/gateway/internal/grants"
	"github.com/mcpgate/mcpgate/gateway/internal/identity"
	"github.com/mcpgate/mcpgate/gateway/internal/mcpproxy"
	"github.com/mcpgate/mcpgate/gateway/internal/session"
	"github.com/mcpgate/mcpgate/gateway/internal/ssebridge"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
	"github.com/mcpgate/mcpgate/gateway/internal/store/redistest"
)

const public = "http://mcp.test"

// env is a real redis-server, real grants and function-key file, and a backend that speaks
// just enough stateless Streamable HTTP (JSON and event-stream answers) and records what it got.
type env struct {
	redis   *redistest.Server
	st      *store.Redis
	grants  *grants.Manager
	keeper  *session.Keeper
	keys    *funckey.Keys
	keyFile string
	key     atomic.Value // the key the backend accepts
	backend *httptest.Server
	calls   atomic.Int64
	block   chan struct{} // "block" requests wait on it
	// noHijack serves the replicas through a ResponseWriter that cannot be taken over (as
	// under HTTP/2), so the request's goroutine holds each stream.
	noHijack bool
	// verifier replaces grants in the replicas' chains (nil: grants).
	verifier mcpproxy.Verifier

	mu   sync.Mutex
	seen []backendCall
}

type backendCall struct {
	Method, Version, User, Seq, RequestID string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{redis: redistest.Start(t), block: make(chan struct{})}
	ctx := t.Context()
	st, err := store.NewRedis(ctx, store.RedisOptions{URL: e.redis.URL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	e.st = st
	k, err := session.NewKey(session.StateActive, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ring, err := session.NewRing(k)
	if err != nil {
		t.Fatal(err)
	}
	e.keeper = session.NewStaticKeeper(ring)
	e.grants = grants.New(st, e.keeper, grants.Options{})
	e.keyFile = filepath.Join(t.TempDir(), "function-key")
	e.setKey(t, "key-one")
	e.key.Store("key-one")
	e.keys = funckey.New(funckey.File(e.keyFile), funckey.Options{MinRefreshInterval: time.Nanosecond})
	e.backend = httptest.NewServer(http.HandlerFunc(e.serveBackend))
	t.Cleanup(func() {
		select {
		case <-e.block:
		default:
			close(e.block)
		}
		e.backend.CloseClientConnections()
		e.backend.Close()
	})
	return e
}

func (e *env) setKey(t testing.TB, key string) {
	t.Helper()
	if err := os.WriteFile(e.keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (e *env) serveBackend(w http.ResponseWriter, r *http.Request) {
	e.calls.Add(1)
	if r.URL.Path != "/mcp" || r.Header.Get("X-Functions-Key") != e.key.Load().(string) || r.Header.Get("Authorization") != "" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params struct {
			Seq             string `json:"seq"`
			ProtocolVersion string `json:"protocolVersion"`
		} `json:"params"`
	}
	body, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(body, &m)
	version := r.Header.Get("Mcp-Protocol-Version")
	user := r.Header.Get("X-Mcpgate-User-Id")
	e.mu.Lock()
	e.seen = append(e.seen, backendCall{m.Method, version, user, m.Params.Seq, r.Header.Get("X-Request-Id")})
	e.mu.Unlock()
	result := func(v any) string {
		b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": m.ID, "result": v})
		return string(b)
	}
	switch {
	case m.ID == nil:
		w.WriteHeader(http.StatusAccepted)
	case m.Method == "initialize":
		w.Header().Set("Content-Type", "application/json")
		// Pretty-printed on purpose: multi-line JSON must become several data: lines.
		b, _ := json.MarshalIndent(map[string]any{"jsonrpc": "2.0", "id": m.ID, "result": map[string]any{
			"protocolVersion": "2025-06-18", "capabilities": map[string]any{}, "serverInfo": map[string]any{"name": "fake", "version": "1"}}}, "", "  ")
		_, _ = w.Write(b)
	case m.Method == "progress":
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 1; i <= 3; i++ {
			fmt.Fprintf(w, "event: message\nid: %d\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":%d}}\n\n", i, i)
			w.(http.Flusher).Flush()
		}
		fmt.Fprintf(w, ": comment\n\ndata: %s\n\n", result(map[string]any{"done": true}))
	case m.Method == "block":
		select {
		case <-e.block:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, result("unblocked"))
	case m.Method == "big":
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, result(strings.Repeat("x", 64<<10)))
	case m.Method == "fail":
		http.Error(w, "internal detail at 10.0.0.7", http.StatusInternalServerError)
	case m.Method == "truncated":
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n")
	case m.Method == "unknown":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": m.ID, "error": map[string]any{"code": -32601, "message": "method not found"}})
		_, _ = w.Write(b)
	default:
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, result(map[string]any{"method": m.Method, "version": version, "user": user}))
	}
}

func (e *env) backendSeen() []backendCall {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]backendCall(nil), e.seen...)
}

// issue creates a grant for user and returns its access and refresh tokens.
func (e *env) issue(t testing.TB, user, resource string) *grants.TokenSet {
	t.Helper()
	ts, err := e.grants.Issue(t.Context(), grants.Grant{ClientID: "client-1", Resource: resource, Scope: "mcp:tools",
		User: identity.User{Subject: user, ObjectID: "oid-" + user, Name: user}}, identity.Tokens{AccessToken: "upstream"})
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// replica is one gateway replica: chain + bridge on its own listener, public URL shared.
type replica struct {
	bridge *ssebridge.Bridge
	srv    *httptest.Server
	reg    *prometheus.Registry
	stop   context.CancelFunc
	done   chan struct{}
}

func (e *env) replica(t testing.TB, id string, tweak func(*ssebridge.Config)) *replica {
	t.Helper()
	var v mcpproxy.Verifier = e.grants
	if e.verifier != nil {
		v = e.verifier
	}
	p, err := mcpproxy.New(mcpproxy.Config{PublicURL: public, BackendURL: e.backend.URL, Verifier: v, Keys: e.keys,
		RateLimit: 10_000, Logger: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg := ssebridge.Config{Chain: p, BackendURL: e.backend.URL, Keys: e.keys, Store: e.st, ReplicaID: id,
		Grants: e.grants, Registerer: reg, Logger: slog.New(slog.DiscardHandler)}
	if tweak != nil {
		tweak(&cfg)
	}
	b, err := ssebridge.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{bridge: b, reg: reg, stop: cancel, done: make(chan struct{})}
	go func() { b.Run(ctx); close(r.done) }()
	mux := http.NewServeMux()
	b.Register(mux)
	var h http.Handler = mux
	if e.noHijack {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { mux.ServeHTTP(flushOnly{w}, r) })
	}
	r.srv = httptest.NewServer(h)
	t.Cleanup(func() {
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		_ = b.Shutdown(sctx)
		r.srv.Close()
		cancel()
		<-r.done
	})
	waitFor(t, "subscription of "+id, b.Ready)
	return r
}

// flushOnly hides every optional interface of a ResponseWriter but Flush.
type flushOnly struct{ w http.ResponseWriter }

func (f flushOnly) Header() http.Header         { return f.w.Header() }
func (f flushOnly) Write(p []byte) (int, error) { return f.w.Write(p) }
func (f flushOnly) WriteHeader(code int)        { f.w.WriteHeader(code) }
func (f flushOnly) Flush()                      { f.w.(http.Flusher).Flush() }

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// do sends a request to replica r with the public Host.
func do(t testing.TB, r *replica, method, path, token, contentType, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, r.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "mcp.test"
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// sseClient reads one stream.
type sseClient struct {
	t        testing.TB
	resp     *http.Response
	cancel   context.CancelFunc
	endpoint string
	events   chan event
	endErr   error // how the stream ended (set before events is closed)
}

type event struct{ name, data string }

func open(t testing.TB, r *replica, token string) *sseClient {
	t.Helper()
	c, err := tryOpen(t, r, token)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func tryOpen(t testing.TB, r *replica, token string) (*sseClient, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.srv.URL+"/mcp/sse", nil)
	req.Host = "mcp.test"
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("GET /mcp/sse: %d %s", resp.StatusCode, b)
	}
	c := &sseClient{t: t, resp: resp, cancel: cancel, events: make(chan event, 1024)}
	go c.read()
	t.Cleanup(c.close)
	ev := c.next()
	if ev.name != "endpoint" {
		return nil, fmt.Errorf("first event %+v", ev)
	}
	c.endpoint = ev.data
	return c, nil
}

func (c *sseClient) close() {
	c.cancel()
	_ = c.resp.Body.Close()
}

func (c *sseClient) read() {
	defer close(c.events)
	br := bufio.NewReader(c.resp.Body)
	var ev event
	var data []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			c.endErr = err
			return
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if len(data) > 0 || ev.name != "" {
				ev.data = strings.Join(data, "\n")
				c.events <- ev
			}
			ev, data = event{}, nil
		case line == ": ping":
			c.events <- event{name: "ping"}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "event: "):
			ev.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = append(data, strings.TrimPrefix(line, "data: "))
		}
	}
}

// next returns the next event other than a ping, or fails after 10 s.
func (c *sseClient) next() event {
	c.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-c.events:
			if !ok {
				return event{name: "EOF"}
			}
			if ev.name == "ping" {
				continue
			}
			return ev
		case <-timeout:
			c.t.Fatal("no event within 10 s")
		}
	}
}

func (c *sseClient) nextJSON() map[string]any {
	c.t.Helper()
	ev := c.next()
	if ev.name != "message" {
		c.t.Fatalf("event %+v, want message", ev)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(ev.data), &m); err != nil {
		c.t.Fatalf("event data %q: %v", ev.data, err)
	}
	return m
}

func (c *sseClient) post(r *replica, token, body string) (int, string) {
	c.t.Helper()
	resp, b := do(c.t, r, http.MethodPost, c.endpoint, token, "application/json", body)
	return resp.StatusCode, b
}

func mustPost(t testing.TB, c *sseClient, r *replica, token, body string) {
	t.Helper()
	if st, b := c.post(r, token, body); st != http.StatusAccepted {
		t.Fatalf("POST %.80s: %d %s", body, st, b)
	}
}

func TestStreamLocal(t *testing.T) {
	for _, noHijack := range []bool{false, true} {
		t.Run(fmt.Sprintf("noHijack=%v", noHijack), func(t *testing.T) { testStreamLocal(t, noHijack) })
	}
}

func testStreamLocal(t *testing.T, noHijack bool) {
	e := newEnv(t)
	e.noHijack = noHijack
	a := e.replica(t, "a", nil)
	tok := e.issue(t, "ada", public+"/mcp/sse")

	// The chain guards the stream: no token, wrong resource.
	resp, _ := do(t, a, http.MethodGet, "/mcp/sse", "", "", "")
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("Www-Authenticate"), public+"/.well-known/oauth-protected-resource/mcp/sse") {
		t.Fatalf("no token: %d %q", resp.StatusCode, resp.Header.Get("Www-Authenticate"))
	}
	mcpOnly := e.issue(t, "ada", public+"/mcp")
	if resp, _ := do(t, a, http.MethodGet, "/mcp/sse", mcpOnly.AccessToken, "", ""); resp.StatusCode != 401 {
		t.Fatalf("token for /mcp on /mcp/sse: %d", resp.StatusCode)
	}

	c := open(t, a, tok.AccessToken)
	if !strings.HasPrefix(c.endpoint, "/mcp/message?sessionId=") || len(strings.TrimPrefix(c.endpoint, "/mcp/message?sessionId=")) != 43 ||
		strings.Contains(c.endpoint, e.backend.URL) {
		t.Fatalf("endpoint %q", c.endpoint)
	}
	if c.resp.Header.Get("Content-Type") != "text/event-stream" || c.resp.Header.Get("X-Accel-Buffering") != "no" {
		t.Fatalf("stream headers %v", c.resp.Header)
	}

	mustPost(t, c, a, tok.AccessToken, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	m := c.nextJSON()
	if m["id"] != 1.0 || m["result"].(map[string]any)["protocolVersion"] != "2025-06-18" {
		t.Fatalf("initialize answer %v", m)
	}
	mustPost(t, c, a, tok.AccessToken, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	mustPost(t, c, a, tok.AccessToken, `{"jsonrpc":"2.0","id":"two","method":"tools/list"}`)
	m = c.nextJSON() // the notification wrote nothing: this is tools/list's answer
	res := m["result"].(map[string]any)
	if m["id"] != "two" || res["version"] != "2025-06-18" || res["user"] != "oid-ada" {
		t.Fatalf("tools/list answer %v (want the negotiated version and the user)", m)
	}

	// A streamed answer: progress notifications, then the result, in order.
	mustPost(t, c, a, tok.AccessToken, `{"jsonrpc":"2.0","id":3,"method":"progress"}`)
	for i := 1; i <= 3; i++ {
		m = c.nextJSON()
		if m["method"] != "notifications/progress" || m["params"].(map[string]any)["progress"] != float64(i) {
			t.Fatalf("event %d: %v", i, m)
		}
	}
	if m = c.nextJSON(); m["id"] != 3.0 || m["result"].(map[string]any)["done"] != true {
		t.Fatalf("progress result %v", m)
	}

	// Backend failures become JSON-RPC errors for the request, with nothing of the backend.
	for _, tc := range []struct {
		method string
		code   float64
	}{{"fail", -32004}, {"truncated", -32004}, {"unknown", -32601}} {
		mustPost(t, c, a, tok.AccessToken, `{"jsonrpc":"2.0","id":"`+tc.method+`","method":"`+tc.method+`"}`)
		for {
			m = c.nextJSON()
			if m["method"] == nil {
				break
			}
		}
		errObj, _ := m["error"].(map[string]any)
		if m["id"] != tc.method || errObj == nil || errObj["code"] != tc.code || strings.Contains(fmt.Sprint(m), "10.0.0.7") {
			t.Fatalf("%s: %v", tc.method, m)
		}
	}

	// Malformed messages: 400 without touching the backend; wrong content type: 415.
	before := e.calls.Load()
	for _, body := range []string{`{"jsonrpc":"2.0","id":1,`, `[{"jsonrpc":"2.0","id":1,"method":"x"}]`, `{"id":1,"method":"x"}`, `{"jsonrpc":"2.0"}`, `"x"`, ``} {
		if st, b := c.post(a, tok.AccessToken, body); st != 400 || !strings.Contains(b, "-32700") {
			t.Errorf("POST %q: %d %s", body, st, b)
		}
	}
	resp, _ = do(t, a, http.MethodPost, c.endpoint, tok.AccessToken, "text/plain", `{"jsonrpc":"2.0","method":"x"}`)
	if resp.StatusCode != 415 {
		t.Errorf("text/plain: %d", resp.StatusCode)
	}
	if e.calls.Load() != before {
		t.Error("a refused message reached the backend")
	}

	// Unknown sessions and another user's token: 404.
	other := e.issue(t, "bob", public)
	if st, _ := c.post(a, other.AccessToken, `{"jsonrpc":"2.0","id":9,"method":"tools/list"}`); st != 404 {
		t.Errorf("another user's POST: %d", st)
	}
	for _, path := range []string{"/mcp/message?sessionId=" + strings.Repeat("A", 43), "/mcp/message?sessionId=short"} {
		if resp, _ := do(t, a, http.MethodPost, path, tok.AccessToken, "application/json", `{"jsonrpc":"2.0","method":"x"}`); resp.StatusCode != 404 {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
	if resp, _ := do(t, a, http.MethodPost, "/mcp/message", tok.AccessToken, "application/json", `{"jsonrpc":"2.0","method":"x"}`); resp.StatusCode != 400 {
		t.Errorf("no sessionId: %d", resp.StatusCode)
	}
	// A token without resource (bound to the origin) works on the stream too; a refreshed
	// token of the same grant keeps the stream.
	ts, _, err := e.grants.Refresh(t.Context(), tok.RefreshToken, "client-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	mustPost(t, c, a, ts.AccessToken, `{"jsonrpc":"2.0","id":10,"method":"ping"}`)
	if m = c.nextJSON(); m["id"] != 10.0 {
		t.Fatalf("after refresh: %v", m)
	}
}

func TestCrossReplica(t *testing.T) {
	e := newEnv(t)
	a := e.replica(t, "a", nil)
	e.noHijack = true // the holder hijacks, the other replica does not: both work
	b := e.replica(t, "b", nil)
	tok := e.issue(t, "ada", public)
	c := open(t, a, tok.AccessToken)

	// A request through the other replica is answered on the stream.
	mustPost(t, c, b, tok.AccessToken, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26"}}`)
	if m := c.nextJSON(); m["id"] != 1.0 {
		t.Fatalf("initialize via b: %v", m)
	}
	mustPost(t, c, b, tok.AccessToken, `{"jsonrpc":"2.0","id":2,"method":"progress"}`)
	for i := 0; i < 3; i++ {
		if m := c.nextJSON(); m["method"] != "notifications/progress" {
			t.Fatalf("progress via b: %v", m)
		}
	}
	if m := c.nextJSON(); m["id"] != 2.0 {
		t.Fatalf("result via b: %v", m)
	}

	// Order per path: notifications through the other replica reach the backend in order.
	for i := range 50 {
		mustPost(t, c, b, tok.AccessToken, fmt.Sprintf(`{"jsonrpc":"2.0","method":"notifications/seq","params":{"seq":"%d"}}`, i))
	}
	mustPost(t, c, b, tok.AccessToken, `{"jsonrpc":"2.0","id":"last","method":"tools/list"}`)
	if m := c.nextJSON(); m["id"] != "last" || m["result"].(map[string]any)["version"] != "2025-06-18" {
		t.Fatalf("last: %v", m)
	}
	var seqs []string
	for _, bc := range e.backendSeen() {
		if bc.Method == "notifications/seq" {
			seqs = append(seqs, bc.Seq)
		}
		if len(bc.RequestID) < 8 {
			t.Fatalf("backend call %+v without the POST's request id", bc)
		}
	}
	for i, s := range seqs {
		if s != fmt.Sprint(i) {
			t.Fatalf("backend saw notifications in the order %v", seqs)
		}
	}
	if len(seqs) != 50 {
		t.Fatalf("backend saw %d notifications", len(seqs))
	}

	// Another user's token through the other replica: 404, nothing published.
	other := e.issue(t, "bob", public)
	if st, _ := c.post(b, other.AccessToken, `{"jsonrpc":"2.0","id":9,"method":"tools/list"}`); st != 404 {
		t.Fatalf("another user via b: %d", st)
	}

	// A holder that died without cleaning up (its key is still there, nobody subscribes to
	// its channel): PUBLISH reaches no one → 404 at once.
	key := store.Key("sse", strings.TrimPrefix(c.endpoint, "/mcp/message?sessionId="))
	v, err := e.st.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.Set(t.Context(), key, []byte(strings.Replace(string(v), `"r":"a"`, `"r":"ghost"`, 1)), time.Minute); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.post(b, tok.AccessToken, `{"jsonrpc":"2.0","id":5,"method":"tools/list"}`); st != 404 || counter(t, b, "mcpgate_sse_rejected_total", "holder_gone") != 1 {
		t.Fatalf("holder gone: %d", st)
	}
	if err := e.st.Set(t.Context(), key, v, time.Minute); err != nil {
		t.Fatal(err)
	}
	mustPost(t, c, b, tok.AccessToken, `{"jsonrpc":"2.0","id":6,"method":"ping"}`)
	if m := c.nextJSON(); m["id"] != 6.0 {
		t.Fatalf("after restoring the key: %v", m)
	}

	// The holder shuts down: its streams end cleanly, their keys go, POSTs get 404.
	a.stop()
	<-a.done
	if ev := c.next(); ev.name != "EOF" || c.endErr != io.EOF {
		t.Fatalf("stream after its replica stopped: %+v %v", ev, c.endErr)
	}
	if st, _ := c.post(b, tok.AccessToken, `{"jsonrpc":"2.0","id":7,"method":"tools/list"}`); st != 404 {
		t.Fatalf("holder stopped: %d", st)
	}
}

func TestLimitsAndCleanup(t *testing.T) {
	for _, noHijack := range []bool{false, true} {
		t.Run(fmt.Sprintf("noHijack=%v", noHijack), func(t *testing.T) { testLimitsAndCleanup(t, noHijack) })
	}
}

func testLimitsAndCleanup(t *testing.T, noHijack bool) {
	e := newEnv(t)
	e.noHijack = noHijack
	a := e.replica(t, "a", func(c *ssebridge.Config) {
		c.MaxStreamsPerUser, c.MaxStreams, c.MaxPending, c.KeepAlive = 2, 3, 2, 20*time.Millisecond
	})
	ada, bob, cy := e.issue(t, "ada", public), e.issue(t, "bob", public), e.issue(t, "cy", public)
	c1 := open(t, a, ada.AccessToken)
	// Keep-alive comments on an idle stream.
	select {
	case ev := <-c1.events:
		if ev.name != "ping" {
			t.Fatalf("idle stream: %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no keep-alive")
	}
	open(t, a, ada.AccessToken)
	if _, err := tryOpen(t, a, ada.AccessToken); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("third stream of one user: %v", err)
	}
	c3 := open(t, a, bob.AccessToken)
	if _, err := tryOpen(t, a, cy.AccessToken); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("fourth stream on the replica: %v", err)
	}

	// Pending messages per stream: two block, the third is refused.
	mustPost(t, c3, a, bob.AccessToken, `{"jsonrpc":"2.0","id":1,"method":"block"}`)
	mustPost(t, c3, a, bob.AccessToken, `{"jsonrpc":"2.0","id":2,"method":"block"}`)
	waitFor(t, "two blocked calls", func() bool { return countMethod(e, "block") == 2 })
	if st, _ := c3.post(a, bob.AccessToken, `{"jsonrpc":"2.0","id":3,"method":"block"}`); st != 503 {
		t.Fatalf("third pending message: %d", st)
	}
	// The client goes away: its blocked backend calls end, its key is deleted, the count drops.
	key := store.Key("sse", strings.TrimPrefix(c3.endpoint, "/mcp/message?sessionId="))
	if _, err := e.st.Get(t.Context(), key); err != nil {
		t.Fatalf("stream key: %v", err)
	}
	c3.close()
	waitFor(t, "stream removed", func() bool { return a.bridge.OpenStreams() == 2 })
	waitFor(t, "key deleted", func() bool { _, err := e.st.Get(t.Context(), key); return err == store.ErrNotFound })
	c1.close()
	waitFor(t, "streams", func() bool { return a.bridge.OpenStreams() == 1 })
	open(t, a, cy.AccessToken)

	// Shutdown ends every stream cleanly.
	sctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := a.bridge.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if a.bridge.OpenStreams() != 0 {
		t.Fatal("streams left after Shutdown")
	}
	if _, err := tryOpen(t, a, cy.AccessToken); err == nil {
		t.Fatal("stream opened after Shutdown")
	}
}

func countMethod(e *env, method string) int {
	n := 0
	for _, c := range e.backendSeen() {
		if c.Method == method {
			n++
		}
	}
	return n
}

func TestKeyRefreshOnBackend401(t *testing.T) {
	e := newEnv(t)
	a := e.replica(t, "a", nil)
	tok := e.issue(t, "ada", public)
	c := open(t, a, tok.AccessToken)
	mustPost(t, c, a, tok.AccessToken, `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	if m := c.nextJSON(); m["id"] != 1.0 || m["result"] == nil {
		t.Fatalf("first: %v", m)
	}
	// The key is rotated: the backend takes only the new one, which the file now holds.
	// (A different length: the file source may not see a same-size rewrite within the file
	// system's timestamp granularity.)
	e.key.Store("key-two-rotated")
	e.setKey(t, "key-two-rotated")
	mustPost(t, c, a, tok.AccessToken, `{"jsonrpc":"2.0","id":2,"method":"ping"}`)
	if m := c.nextJSON(); m["id"] != 2.0 || m["result"] == nil {
		t.Fatalf("after rotation: %v", m)
	}
	// A key the backend never accepts: one retry, then a JSON-RPC error.
	e.key.Store("key-three")
	mustPost(t, c, a, tok.AccessToken, `{"jsonrpc":"2.0","id":3,"method":"ping"}`)
	if m := c.nextJSON(); m["id"] != 3.0 || m["error"].(map[string]any)["code"] != -32004.0 {
		t.Fatalf("refused key: %v", m)
	}
	// Backend down: a JSON-RPC error for requests, nothing for notifications.
	e.backend.Close()
	mustPost(t, c, a, tok.AccessToken, `{"jsonrpc":"2.0","method":"notifications/x"}`)
	mustPost(t, c, a, tok.AccessToken, `{"jsonrpc":"2.0","id":4,"method":"ping"}`)
	if m := c.nextJSON(); m["id"] != 4.0 || m["error"].(map[string]any)["code"] != -32004.0 {
		t.Fatalf("backend down: %v", m)
	}
}

func TestHeartbeatKeepsAndRestoresKeys(t *testing.T) {
	e := newEnv(t)
	a := e.replica(t, "a", func(c *ssebridge.Config) { c.Heartbeat = 100 * time.Millisecond })
	tok := e.issue(t, "ada", public)
	c := open(t, a, tok.AccessToken)
	key := store.Key("sse", strings.TrimPrefix(c.endpoint, "/mcp/message?sessionId="))
	ttl := func() time.Duration {
		d, err := e.st.Client().PTTL(t.Context(), key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := ttl(); d <= 0 || d > 300*time.Millisecond {
		t.Fatalf("key TTL %v, want three heartbeats", d)
	}
	// Many heartbeats later the key is still there (each one extends it).
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if ttl() <= 0 {
			t.Fatal("stream key expired while the stream is open")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Lost (e.g. Redis restarted): the next heartbeat restores it.
	if err := e.st.Del(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "key restored", func() bool { return ttl() > 0 })
	c.close()
	waitFor(t, "key deleted", func() bool { return ttl() < 0 })
}

// TestMemoryStore runs a stream on the in-memory store (one replica, no Redis).
func TestMemoryStore(t *testing.T) {
	e := newEnv(t)
	mem := store.NewMemory()
	t.Cleanup(func() { _ = mem.Close() })
	p, err := mcpproxy.New(mcpproxy.Config{PublicURL: public, BackendURL: e.backend.URL, Verifier: e.grants, Keys: e.keys,
		RateLimit: 10_000, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	b, err := ssebridge.New(ssebridge.Config{Chain: p, BackendURL: e.backend.URL, Keys: e.keys, Store: mem, ReplicaID: "m",
		Heartbeat: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	mux := http.NewServeMux()
	b.Register(mux)
	r := &replica{bridge: b, srv: httptest.NewServer(mux)}
	t.Cleanup(r.srv.Close)
	waitFor(t, "ready", b.Ready)
	tok := e.issue(t, "ada", public)
	c := open(t, r, tok.AccessToken)
	time.Sleep(100 * time.Millisecond) // a few heartbeats through the generic path
	mustPost(t, c, r, tok.AccessToken, `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	if m := c.nextJSON(); m["id"] != 1.0 || m["result"] == nil {
		t.Fatalf("answer %v", m)
	}
	if _, err := mem.Get(t.Context(), store.Key("sse", strings.TrimPrefix(c.endpoint, "/mcp/message?sessionId="))); err != nil {
		t.Fatalf("stream key: %v", err)
	}
}

// BenchmarkRoundTrip measures POST /mcp/message → the answer's event on the stream, with the
// POST sent to the replica holding the stream and to the other one (Redis pub/sub between
// them); in-process replicas, real redis-server, a trivial backend.
func BenchmarkRoundTrip(b *testing.B) {
	e := newEnv(b)
	a, other := e.replica(b, "a", nil), e.replica(b, "b", nil)
	tok := e.issue(b, "ada", public)
	for _, tc := range []struct {
		name string
		post *replica
	}{{"holder", a}, {"other_replica", other}} {
		b.Run(tc.name, func(b *testing.B) {
			c := open(b, a, tok.AccessToken)
			body := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
			for b.Loop() {
				mustPost(b, c, tc.post, tok.AccessToken, body)
				if ev := c.next(); ev.name != "message" {
					b.Fatalf("event %+v", ev)
				}
			}
		})
	}
}

// TestRedisDown: new streams fail closed (503) while Redis is down; open streams are not
// dropped during the outage (a failed grant check closes nothing); once Redis is back (empty:
// no persistence here, so every grant is gone, as if revoked while the replica could not hear
// it) the grant check run when the revocation subscription is back closes the old stream, and
// new grants open streams again.
func TestRedisDown(t *testing.T) {
	e := newEnv(t)
	a := e.replica(t, "a", func(c *ssebridge.Config) { c.GrantCheckInterval = 50 * time.Millisecond })
	tok := e.issue(t, "ada", public)
	old := open(t, a, tok.AccessToken)
	e.redis.Kill()
	waitFor(t, "subscription down", func() bool { return !a.bridge.Ready() })
	if _, err := tryOpen(t, a, tok.AccessToken); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("stream with Redis down: %v", err)
	}
	waitFor(t, "a failed grant check", func() bool { return gauge(t, a, "mcpgate_sse_grant_check_errors_total") > 0 })
	if n := a.bridge.OpenStreams(); n != 1 {
		t.Fatalf("%d open streams during the outage, want 1", n)
	}
	e.redis.Restart(t)
	waitFor(t, "subscription up", a.bridge.Ready)
	expectEnd(t, old, "stream whose grant vanished with Redis")
	tok = e.issue(t, "ada", public)
	c := open(t, a, tok.AccessToken)
	mustPost(t, c, a, tok.AccessToken, `{"jsonrpc":"2.0","id":2,"method":"ping"}`)
	if m := c.nextJSON(); m["id"] != 2.0 {
		t.Fatalf("after the outage: %v", m)
	}
	if n := a.bridge.OpenStreams(); n != 1 {
		t.Fatalf("%d open streams, want the new one", n)
	}
	if got := counter(t, a, "mcpgate_sse_streams_closed_total", "grant_gone"); got != 1 {
		t.Fatalf("grant_gone closes: %v", got)
	}
}

// TestSlowClientDropped: a client that stops reading cannot grow the gateway's memory: its
// stream is closed (queue bound or write timeout) and everything it held is released.
func TestSlowClientDropped(t *testing.T) {
	e := newEnv(t)
	a := e.replica(t, "a", func(c *ssebridge.Config) {
		c.MaxQueuedBytes, c.WriteTimeout = 256<<10, 300*time.Millisecond
	})
	tok := e.issue(t, "ada", public)
	endpoint := openUnread(t, a, tok.AccessToken)
	for i := 0; a.bridge.OpenStreams() == 1 && i < 2000; i++ {
		resp, _ := do(t, a, http.MethodPost, endpoint, tok.AccessToken, "application/json", `{"jsonrpc":"2.0","id":1,"method":"big"}`)
		if resp.StatusCode != 202 && resp.StatusCode != 503 && resp.StatusCode != 404 {
			t.Fatalf("POST: %d", resp.StatusCode)
		}
	}
	waitFor(t, "slow stream closed", func() bool { return a.bridge.OpenStreams() == 0 })
	mfs, err := a.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, mf := range mfs {
		if mf.GetName() == "mcpgate_sse_streams_closed_total" {
			for _, m := range mf.GetMetric() {
				reasons = append(reasons, m.GetLabel()[0].GetValue())
			}
		}
	}
	if len(reasons) != 1 || (reasons[0] != "slow_client" && reasons[0] != "write_failed") {
		t.Fatalf("closed reasons %v", reasons)
	}
}

// openUnread opens a stream for tok on r, reads its endpoint event and then nothing more.
func openUnread(t *testing.T, r *replica, tok string) (endpoint string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, r.srv.URL+"/mcp/sse", nil)
	req.Host = "mcp.test"
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET: %v %v", err, resp)
	}
	t.Cleanup(func() { resp.Body.Close() })
	var head []byte
	for !bytes.HasSuffix(head, []byte("\n\n")) {
		var b [1]byte
		if _, err := resp.Body.Read(b[:]); err != nil {
			t.Fatalf("endpoint event: %v", err)
		}
		head = append(head, b[0])
	}
	_, endpoint, _ = strings.Cut(strings.TrimSpace(string(head)), "data: ")
	return endpoint
}

// TestUserQueueBudget: the streams of one user share a budget for what waits to be written,
// or is being written, to them. A user whose streams are not read loses streams once that
// budget is spent, well before any stream reaches its own queue bound or its write timeout,
// and another user's stream keeps working.
func TestUserQueueBudget(t *testing.T) {
	e := newEnv(t)
	a := e.replica(t, "a", func(c *ssebridge.Config) {
		c.MaxQueuedBytes, c.MaxQueuedBytesPerUser, c.WriteTimeout = 64<<20, 1<<20, time.Minute
	})
	greedy := e.issue(t, "ada", public)
	var endpoints []string
	for range 4 {
		endpoints = append(endpoints, openUnread(t, a, greedy.AccessToken))
	}
	other := e.issue(t, "bob", public)
	otherEP := openUnread(t, a, other.AccessToken)
	// Until one of the greedy user's streams is closed (its endpoint then answers 404).
	closed := false
	for i := 0; !closed && i < 4000; i++ {
		resp, _ := do(t, a, http.MethodPost, endpoints[i%len(endpoints)], greedy.AccessToken, "application/json", `{"jsonrpc":"2.0","id":1,"method":"big"}`)
		switch resp.StatusCode {
		case 202, 503:
		case 404:
			closed = true
		default:
			t.Fatalf("POST: %d", resp.StatusCode)
		}
	}
	if !closed {
		t.Fatal("no stream of the greedy user was closed")
	}
	// (A closed stream whose write is blocked stays registered until the write times out;
	// its bytes stay charged to the user meanwhile, which is what bounds the memory.)
	mfs, err := a.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	dropped := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "mcpgate_sse_streams_dropped_total" {
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == "user_queue_limit" {
					dropped += m.GetCounter().GetValue()
				}
			}
		}
	}
	if dropped < 1 {
		t.Fatalf("no stream dropped for the user's queue budget (metrics %v)", mfs)
	}
	if resp, _ := do(t, a, http.MethodPost, otherEP, other.AccessToken, "application/json", `{"jsonrpc":"2.0","id":1,"method":"big"}`); resp.StatusCode != 202 {
		t.Fatalf("the other user's stream: %d", resp.StatusCode)
	}
}

// TestShutdownLetsCallsFinish: a call in flight when the replica shuts down is answered on the
// stream before the stream ends cleanly (the client sees the answer, then the end).
func TestShutdownLetsCallsFinish(t *testing.T) {
	e := newEnv(t)
	a := e.replica(t, "a", func(c *ssebridge.Config) { c.ShutdownGrace = 10 * time.Second })
	tok := e.issue(t, "ada", public)
	c := open(t, a, tok.AccessToken)
	mustPost(t, c, a, tok.AccessToken, `{"jsonrpc":"2.0","id":7,"method":"block"}`)
	waitFor(t, "call in flight", func() bool { return countMethod(e, "block") == 1 })
	done := make(chan error, 1)
	go func() { done <- a.bridge.Shutdown(context.Background()) }()
	// New messages are refused meanwhile.
	if st, _ := c.post(a, tok.AccessToken, `{"jsonrpc":"2.0","id":8,"method":"ping"}`); st != 404 {
		t.Fatalf("POST during shutdown: %d", st)
	}
	close(e.block)
	if m := c.nextJSON(); m["id"] != 7.0 || m["result"] != "unblocked" {
		t.Fatalf("answer during shutdown: %v", m)
	}
	if ev := c.next(); ev.name != "EOF" || c.endErr != io.EOF {
		t.Fatalf("after the answer: %+v (%v), want the clean end of the stream", ev, c.endErr)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := a.bridge.OpenStreams(); n != 0 {
		t.Fatalf("%d streams after Shutdown", n)
	}
}

// gauge returns the value of the unlabelled counter or gauge name of replica r.
func gauge(t *testing.T, r *replica, name string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			m := mf.GetMetric()[0]
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return 0
}

// counter returns the value of the labelled counter name{…=label} of replica r.
func counter(t *testing.T, r *replica, name, label string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
