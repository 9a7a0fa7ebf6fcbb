package mcpproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/mcpgate/mcpgate/gateway/internal/grants"
	"github.com/mcpgate/mcpgate/gateway/internal/identity"
)

const (
	goodToken = "good-token"
	secretKey = "fk-SECRET-function-key-value"
)

// fakeVerifier accepts goodToken for any /mcp resource; "down" simulates the store being down.
type fakeVerifier struct {
	down  atomic.Bool
	calls atomic.Int32
}

func (v *fakeVerifier) Verify(_ context.Context, tok, resource string) (*grants.Grant, error) {
	v.calls.Add(1)
	if v.down.Load() {
		return nil, grants.ErrUnavailable
	}
	if tok != goodToken || !strings.HasSuffix(resource, "/mcp") {
		return nil, grants.ErrInvalidToken
	}
	return &grants.Grant{ID: "grant-1", ClientID: "client-1", Resource: resource,
		User: identity.User{ObjectID: "oid-1", Name: "Zoë Example", Username: "zoe@example.com", TenantID: "tid-1"}}, nil
}

// fakeKeys is a KeySource whose Refresh swaps to next.
type fakeKeys struct {
	mu        sync.Mutex
	cur, next string
	refreshes atomic.Int32
}

func (k *fakeKeys) Current(context.Context) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cur == "" {
		return "", errors.New("no key")
	}
	return k.cur, nil
}
func (k *fakeKeys) Refresh(context.Context) error {
	k.refreshes.Add(1)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.next != "" {
		k.cur = k.next
	}
	return nil
}

// backendSeen records what the backend received.
type backendSeen struct {
	mu      sync.Mutex
	headers []http.Header
	hosts   []string
	bodies  []string
}

func (b *backendSeen) last() (http.Header, string, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.headers) == 0 {
		return nil, "", ""
	}
	n := len(b.headers) - 1
	return b.headers[n], b.hosts[n], b.bodies[n]
}

type env struct {
	t       *testing.T
	gw      *httptest.Server
	backend *httptest.Server
	seen    *backendSeen
	ver     *fakeVerifier
	keys    *fakeKeys
	proxy   *Proxy
	logs    *strings.Builder
	logMu   *sync.Mutex
	public  string
	handler http.HandlerFunc // backend behaviour (after key check)
	accept  atomic.Value     // string: the key the backend accepts
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func newEnv(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	e := &env{t: t, seen: &backendSeen{}, ver: &fakeVerifier{}, keys: &fakeKeys{cur: secretKey}, logs: &strings.Builder{}, logMu: &sync.Mutex{}}
	e.accept.Store(secretKey)
	e.handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Mcp-Session-Id", "sess-1")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}
	e.backend = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		e.seen.mu.Lock()
		e.seen.headers = append(e.seen.headers, r.Header.Clone())
		e.seen.hosts = append(e.seen.hosts, r.Host)
		e.seen.bodies = append(e.seen.bodies, string(body))
		e.seen.mu.Unlock()
		if r.Header.Get("X-Functions-Key") != e.accept.Load().(string) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="backend-secret-realm"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		e.handler(w, r)
	}))
	t.Cleanup(e.backend.Close)
	// The gateway's public URL is its own listener address (Host checks need the real host).
	e.gw = httptest.NewUnstartedServer(nil)
	e.public = "http://" + e.gw.Listener.Addr().String()
	cfg := Config{
		PublicURL:  e.public,
		BackendURL: e.backend.URL,
		Verifier:   e.ver,
		Keys:       e.keys,
		RateLimit:  rate.Inf,
		Logger:     slog.New(slog.NewJSONHandler(lockedWriter{e.logMu, e.logs}, nil)),
		Registerer: prometheus.NewRegistry(),
		KeepAlive:  -1,
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.proxy = p
	mux := http.NewServeMux()
	p.Register(mux)
	e.gw.Config.Handler = mux
	e.gw.Start()
	t.Cleanup(e.gw.Close)
	return e
}

func (e *env) logText() string {
	e.logMu.Lock()
	defer e.logMu.Unlock()
	return e.logs.String()
}

// do sends a request and checks that the function key never appears in the response.
func (e *env) do(method string, hdr map[string]string, body string) (*http.Response, string) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.gw.URL+"/mcp", strings.NewReader(body))
	if body == "" {
		req.Body = http.NoBody
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assertNoSecret(e.t, resp, string(b), strings.TrimPrefix(e.backend.URL, "http://"))
	return resp, string(b)
}

func assertNoSecret(t *testing.T, resp *http.Response, body, backendAddr string) {
	t.Helper()
	var raw strings.Builder
	_ = resp.Header.Write(&raw)
	for _, s := range []string{secretKey, "rotated-key", "backend-secret-realm", backendAddr} {
		if s != "" && (strings.Contains(raw.String(), s) || strings.Contains(body, s)) {
			t.Fatalf("response leaks %q:\n%s\n%s", s, raw.String(), body)
		}
	}
}

var auth = map[string]string{"Authorization": "Bearer " + goodToken, "Content-Type": "application/json", "Accept": "application/json, text/event-stream"}

func with(extra map[string]string) map[string]string {
	m := map[string]string{}
	for k, v := range auth {
		m[k] = v
	}
	for k, v := range extra {
		if v == "" {
			delete(m, k)
			continue
		}
		m[k] = v
	}
	return m
}

const callBody = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello_mcp","arguments":{}}}`

func TestPolicyTable(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AllowedOrigins = []string{"https://app.example"} })
	prm := e.public + "/.well-known/oauth-protected-resource/mcp"
	missing := fmt.Sprintf(`Bearer resource_metadata="%s", scope="mcp:tools"`, prm)
	invalid := fmt.Sprintf(`Bearer error="invalid_token", error_description="The access token is invalid or expired", resource_metadata="%s", scope="mcp:tools"`, prm)
	cases := []struct {
		name       string
		hdr        map[string]string
		status     int
		wantHeader map[string]string
		reachesBE  bool
	}{
		{"ok", auth, 200, map[string]string{"Mcp-Session-Id": "sess-1"}, true},
		{"bad host", with(map[string]string{"Host": "evil.example"}), 403, nil, false},
		{"bad origin", with(map[string]string{"Origin": "https://evil.example"}), 403, nil, false},
		{"null origin", with(map[string]string{"Origin": "null"}), 403, nil, false},
		{"allowed origin", with(map[string]string{"Origin": "https://app.example"}), 200,
			map[string]string{"Access-Control-Allow-Origin": "https://app.example", "Access-Control-Expose-Headers": corsExposeHeaders}, true},
		{"no token", with(map[string]string{"Authorization": ""}), 401, map[string]string{"WWW-Authenticate": missing}, false},
		{"basic auth", with(map[string]string{"Authorization": "Basic Zm9vOmJhcg=="}), 401, map[string]string{"WWW-Authenticate": missing}, false},
		{"empty bearer", with(map[string]string{"Authorization": "Bearer "}), 401, map[string]string{"WWW-Authenticate": missing}, false},
		{"bad token", with(map[string]string{"Authorization": "Bearer nope"}), 401, map[string]string{"WWW-Authenticate": invalid}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.seen.headers)
			resp, body := e.do(http.MethodPost, tc.hdr, callBody)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			for k, v := range tc.wantHeader {
				if got := resp.Header.Get(k); got != v {
					t.Fatalf("%s = %q, want %q", k, got, v)
				}
			}
			if resp.StatusCode != 200 && resp.Header.Get("Access-Control-Allow-Origin") != "" && tc.name != "allowed origin" {
				t.Fatalf("CORS header on refusal: %v", resp.Header)
			}
			if resp.Header.Get("X-Request-Id") == "" {
				t.Fatal("no X-Request-Id")
			}
			e.seen.mu.Lock()
			reached := len(e.seen.headers) > before
			e.seen.mu.Unlock()
			if reached != tc.reachesBE {
				t.Fatalf("backend reached = %v, want %v", reached, tc.reachesBE)
			}
		})
	}
	// Every invalid-token body is identical (no oracle).
	_, b1 := e.do(http.MethodPost, with(map[string]string{"Authorization": "Bearer nope"}), callBody)
	_, b2 := e.do(http.MethodPost, with(map[string]string{"Authorization": "Bearer " + strings.Repeat("x", 500)}), callBody)
	if b1 != b2 || !strings.Contains(b1, "invalid_token") {
		t.Fatalf("invalid-token bodies differ: %q vs %q", b1, b2)
	}
}

func TestStoreUnavailable(t *testing.T) {
	e := newEnv(t, nil)
	e.ver.down.Store(true)
	resp, body := e.do(http.MethodPost, auth, callBody)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || !strings.Contains(body, `"id":null`) {
		t.Fatalf("got %d %v %s", resp.StatusCode, resp.Header, body)
	}
	if resp.Header.Get("WWW-Authenticate") != "" {
		t.Fatal("503 carries a challenge")
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RateLimit, c.RateBurst = rate.Limit(0.5), 2 })
	for i := range 2 {
		if resp, _ := e.do(http.MethodPost, auth, callBody); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	resp, body := e.do(http.MethodPost, auth, callBody)
	if resp.StatusCode != 429 {
		t.Fatalf("third request: %d %s", resp.StatusCode, body)
	}
	if ra := resp.Header.Get("Retry-After"); ra != "2" {
		t.Fatalf("Retry-After = %q", ra)
	}
	if resp.Header.Get("RateLimit-Policy") != `"mcp";q=2;w=4` || !strings.HasPrefix(resp.Header.Get("RateLimit"), `"mcp";r=0;t=`) {
		t.Fatalf("RateLimit headers: %v", resp.Header)
	}
	if n := len(e.seen.headers); n != 2 {
		t.Fatalf("backend saw %d requests", n)
	}
}

func TestPreflight(t *testing.T) {
	e := newEnv(t, nil)
	resp, _ := e.do(http.MethodOptions, map[string]string{"Origin": e.public, "Access-Control-Request-Method": "POST",
		"Access-Control-Request-Headers": "authorization, content-type, mcp-param-region, bad header"}, "")
	if resp.StatusCode != 204 {
		t.Fatalf("preflight status %d", resp.StatusCode)
	}
	if got := resp.Header.Get("Access-Control-Allow-Headers"); !strings.Contains(got, "Mcp-Session-Id") || !strings.HasSuffix(got, ", mcp-param-region") {
		t.Fatalf("Allow-Headers = %q", got)
	}
	if resp.Header.Get("Access-Control-Allow-Origin") != e.public || resp.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("preflight headers %v", resp.Header)
	}
	if e.ver.calls.Load() != 0 || len(e.seen.headers) != 0 {
		t.Fatal("preflight was authenticated or forwarded")
	}
	resp, _ = e.do(http.MethodOptions, map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}, "")
	if resp.StatusCode != 403 {
		t.Fatalf("preflight from a bad origin: %d", resp.StatusCode)
	}
}

func TestBackendHeaders(t *testing.T) {
	e := newEnv(t, nil)
	resp, _ := e.do(http.MethodPost, with(map[string]string{
		"X-MCPGate-User-Id": "attacker", "x-mcpgate-client-id": "evil", "X-Mcpgate-Other": "x",
		"Cookie": "a=b", "X-Forwarded-For": "6.6.6.6", "Forwarded": "for=6.6.6.6", "X-Functions-Key": "client-key",
		"X-MS-CLIENT-PRINCIPAL": "forged", "Mcp-Session-Id": "sess-1", "MCP-Protocol-Version": "2025-11-25",
		"Mcp-Method": "tools/call", "Mcp-Name": "hello_mcp", "Mcp-Param-Region": "eu", "Last-Event-ID": "ev-1",
	}), callBody)
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	h, host, body := e.seen.last()
	want := map[string]string{
		"X-Functions-Key": secretKey, "X-Mcpgate-User-Id": "oid-1", "X-Mcpgate-Client-Id": "client-1",
		"X-Mcpgate-User-Name": "Zo%C3%AB Example", "X-Mcpgate-Username": "zoe@example.com", "X-Mcpgate-Tenant-Id": "tid-1",
		"Mcp-Session-Id": "sess-1", "Mcp-Protocol-Version": "2025-11-25", "Mcp-Method": "tools/call", "Mcp-Name": "hello_mcp",
		"Mcp-Param-Region": "eu", "Last-Event-Id": "ev-1", "X-Forwarded-For": "127.0.0.1",
	}
	for k, v := range want {
		if got := h.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("backend %s = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"Authorization", "Cookie", "Forwarded", "X-Mcpgate-Other", "X-Ms-Client-Principal", "Accept-Encoding"} {
		if v := h.Values(k); len(v) != 0 {
			t.Errorf("backend received %s: %q", k, v)
		}
	}
	if host != strings.TrimPrefix(e.backend.URL, "http://") {
		t.Errorf("backend Host = %q", host)
	}
	if body != callBody {
		t.Errorf("backend body = %q", body)
	}
	// The access-log line is written after the response is sent: wait for it.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(e.logText(), `"mcp_method":"tools/call","mcp_name":"hello_mcp"`); {
		if time.Now().After(deadline) {
			t.Fatalf("access log: %s", e.logText())
		}
		time.Sleep(time.Millisecond)
	}
	for _, secret := range []string{secretKey, goodToken, "a=b"} {
		if strings.Contains(e.logText(), secret) {
			t.Fatalf("access log holds %q: %s", secret, e.logText())
		}
	}
}

func TestPassThroughStatuses(t *testing.T) {
	e := newEnv(t, nil)
	for _, st := range []int{202, 400, 404, 405, 413} {
		e.handler = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("MCP-Protocol-Version", "2025-11-25")
			w.WriteHeader(st)
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":7,"error":{"code":-32600,"message":"status %d"}}`, st)
		}
		for _, m := range []string{http.MethodPost, http.MethodGet, http.MethodDelete} {
			resp, body := e.do(m, auth, map[string]string{http.MethodPost: callBody}[m])
			if resp.StatusCode != st || body != fmt.Sprintf(`{"jsonrpc":"2.0","id":7,"error":{"code":-32600,"message":"status %d"}}`, st) ||
				resp.Header.Get("MCP-Protocol-Version") != "2025-11-25" {
				t.Fatalf("%s %d: got %d %q", m, st, resp.StatusCode, body)
			}
		}
	}
}

func TestBackend401RefreshAndRetry(t *testing.T) {
	e := newEnv(t, nil)
	e.accept.Store("rotated-key")
	e.keys.next = "rotated-key"
	resp, body := e.do(http.MethodPost, auth, callBody)
	if resp.StatusCode != 200 || e.keys.refreshes.Load() != 1 {
		t.Fatalf("status %d (%s), refreshes %d", resp.StatusCode, body, e.keys.refreshes.Load())
	}
	if _, _, b := e.seen.last(); b != callBody {
		t.Fatalf("retried body = %q", b)
	}
	// The backend refuses every key: one refresh, no loop, 502 without the backend's challenge.
	e.accept.Store("never")
	resp, body = e.do(http.MethodPost, auth, callBody)
	if resp.StatusCode != 502 || resp.Header.Get("WWW-Authenticate") != "" || !strings.Contains(body, `"id":null`) {
		t.Fatalf("got %d %v %s", resp.StatusCode, resp.Header, body)
	}
	if e.keys.refreshes.Load() != 2 {
		t.Fatalf("refreshes = %d", e.keys.refreshes.Load())
	}
}

func TestNoKeyFailsClosed(t *testing.T) {
	e := newEnv(t, nil)
	e.keys.cur = ""
	resp, _ := e.do(http.MethodPost, auth, callBody)
	if resp.StatusCode != 503 || len(e.seen.headers) != 0 {
		t.Fatalf("status %d, backend hits %d", resp.StatusCode, len(e.seen.headers))
	}
}

func TestBackendDownAndTimeout(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.BackendHeaderTimeout = 200 * time.Millisecond })
	release := make(chan struct{})
	e.handler = func(w http.ResponseWriter, r *http.Request) { <-release }
	resp, body := e.do(http.MethodPost, auth, callBody)
	close(release)
	if resp.StatusCode != 504 || !strings.Contains(body, `"jsonrpc":"2.0","id":null`) {
		t.Fatalf("timeout: %d %s", resp.StatusCode, body)
	}
	backendAddr := strings.TrimPrefix(e.backend.URL, "http://")
	e.backend.Close()
	resp, body = e.do(http.MethodPost, auth, callBody)
	if resp.StatusCode != 502 || strings.Contains(body, backendAddr) || !strings.Contains(body, `"id":null`) {
		t.Fatalf("down: %d %s", resp.StatusCode, body)
	}
}

func TestBodyLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxBodyBytes = 64 })
	resp, _ := e.do(http.MethodPost, auth, strings.Repeat(" ", 65))
	if resp.StatusCode != 413 || len(e.seen.headers) != 0 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestEventStreamKeepAlive(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.KeepAlive = 30 * time.Millisecond })
	release := make(chan struct{})
	e.handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		fl := w.(http.Flusher)
		_, _ = io.WriteString(w, "id: 1\ndata: {\"a\":1}\n")
		fl.Flush()
		time.Sleep(100 * time.Millisecond) // mid-event silence: only comment lines may appear
		_, _ = io.WriteString(w, "\n")
		fl.Flush()
		<-release
		_, _ = io.WriteString(w, "data: {\"b\":2}\n\n")
	}
	req, _ := http.NewRequest(http.MethodGet, e.gw.URL+"/mcp", nil)
	for k, v := range auth {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("X-Accel-Buffering") != "no" {
		t.Fatalf("headers %v", resp.Header)
	}
	br := bufio.NewReader(resp.Body)
	var lines []string
	for len(lines) < 12 {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
		if len(lines) >= 6 && l == "\n" && lines[len(lines)-2] == ": keep-alive\n" {
			break
		}
	}
	close(release)
	text := strings.Join(lines, "")
	// The event is intact: data line, then only comment lines, then the blank line.
	if !strings.HasPrefix(text, "id: 1\ndata: {\"a\":1}\n") || !strings.Contains(text, ": keep-alive\n") {
		t.Fatalf("stream: %q", text)
	}
	ev := text[:strings.Index(text, "\n\n")+2]
	for _, l := range strings.Split(strings.TrimSuffix(ev, "\n\n"), "\n")[2:] {
		if l != ": keep-alive" {
			t.Fatalf("event corrupted by %q in %q", l, ev)
		}
	}
}
