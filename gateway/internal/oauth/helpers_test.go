package oauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/clients"
	"github.com/mcpgate/mcpgate/gateway/internal/identity"
	"github.com/mcpgate/mcpgate/gateway/internal/session"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
	"github.com/mcpgate/mcpgate/gateway/internal/upstream"
	"github.com/prometheus/client_golang/prometheus"
)

const testPublic = "http://127.0.0.1:8000"

// fakeIdP is an upstream Provider for edge cases: it plays the IdP's authorize page (login)
// and token endpoint (Exchange, Refresh) and can be told to fail.
type fakeIdP struct {
	mu          sync.Mutex
	codes       map[string]idpCode
	user        identity.User
	exchangeErr error
	refreshErr  error
	exchanges   int
	refreshes   int
}

type idpCode struct{ nonce, challenge string }

func newFakeIdP() *fakeIdP {
	return &fakeIdP{codes: map[string]idpCode{}, user: identity.User{Subject: "alice-sub", ObjectID: "alice-oid", Name: "Alice", Email: "alice@example.com"}}
}

func (f *fakeIdP) AuthCodeURL(state, nonce, verifier string) string {
	return "https://idp.example.test/authorize?" + url.Values{"state": {state}, "nonce": {nonce}, "code_challenge": {s256(verifier)}, "code_challenge_method": {"S256"}}.Encode()
}

// login plays the user signing in at the IdP page authURL and returns the callback URL.
func (f *fakeIdP) login(t testing.TB, authURL string) string {
	t.Helper()
	u, err := url.Parse(authURL)
	if err != nil || u.Host != "idp.example.test" {
		t.Fatalf("not an IdP URL: %q", authURL)
	}
	q := u.Query()
	if q.Has("resource") {
		t.Fatalf("resource must never be sent upstream: %q", authURL)
	}
	code := randomToken(16)
	f.mu.Lock()
	f.codes[code] = idpCode{nonce: q.Get("nonce"), challenge: q.Get("code_challenge")}
	f.mu.Unlock()
	return testPublic + "/oauth-callback?" + url.Values{"code": {code}, "state": {q.Get("state")}}.Encode()
}

func (f *fakeIdP) Exchange(_ context.Context, code, verifier, nonce string) (identity.User, identity.Tokens, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.exchanges++
	if f.exchangeErr != nil {
		return identity.User{}, identity.Tokens{}, f.exchangeErr
	}
	c, ok := f.codes[code]
	delete(f.codes, code)
	if !ok || c.nonce != nonce || c.challenge != s256(verifier) {
		return identity.User{}, identity.Tokens{}, &upstream.Error{Code: "invalid_grant", Description: "bad code"}
	}
	return f.user, identity.Tokens{AccessToken: "UPSTREAM-AT-" + randomToken(8), RefreshToken: "UPSTREAM-RT-" + randomToken(8), Expiry: time.Now().Add(time.Hour)}, nil
}

func (f *fakeIdP) Refresh(_ context.Context, old identity.Tokens) (identity.User, identity.Tokens, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refreshes++
	if f.refreshErr != nil {
		return identity.User{}, identity.Tokens{}, f.refreshErr
	}
	if !strings.HasPrefix(old.RefreshToken, "UPSTREAM-RT-") {
		return identity.User{}, identity.Tokens{}, &upstream.Error{Code: "invalid_grant"}
	}
	return f.user, identity.Tokens{AccessToken: "UPSTREAM-AT-" + randomToken(8), RefreshToken: "UPSTREAM-RT-" + randomToken(8), Expiry: time.Now().Add(time.Hour)}, nil
}

// env is one authorization server with real registry, store and ring, and a fake IdP.
type env struct {
	t       *testing.T
	srv     *Server
	h       http.Handler
	st      store.Store
	reg     *clients.Registry
	idp     *fakeIdP
	grants  GrantManager
	ring    *session.Ring
	keeper  *session.Keeper
	metrics *prometheus.Registry
	clock   *testClock
}

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type envOption func(*Config, *clients.Options)

func newTestRing(t testing.TB) *session.Ring {
	t.Helper()
	k, err := session.NewKey(session.StateActive, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r, err := session.NewRing(k)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	return newEnvWithStore(t, store.NewMemory(), opts...)
}

func newEnvWithStore(t testing.TB, st store.Store, opts ...envOption) *env {
	t.Helper()
	tt, _ := t.(*testing.T)
	ring := newTestRing(t)
	keeper := session.NewStaticKeeper(ring)
	clock := &testClock{now: time.Now()}
	backend, err := clients.NewDirBackend(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	copts := clients.Options{
		Backend: backend,
		Logger:  discard(),
		Now:     clock.Now,
		Resolver: func(ctx context.Context, host string) ([]netip.Addr, error) {
			switch host {
			case "loopback.example.test":
				return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
			case "private.example.test":
				return []netip.Addr{netip.MustParseAddr("10.1.2.3")}, nil
			case "linklocal.example.test":
				return []netip.Addr{netip.MustParseAddr("169.254.169.254")}, nil
			}
			return nil, errors.New("no such host")
		},
	}
	idp := newFakeIdP()
	reg := prometheus.NewRegistry()
	cfg := Config{
		PublicURL: testPublic,
		Store:     st,
		Keys:      keeper,
		Upstream:  idp,
		Logger:    discard(),
		Metrics:   reg,
		Now:       clock.Now,
	}
	for _, o := range opts {
		o(&cfg, &copts)
	}
	registry, err := clients.NewRegistry(context.Background(), copts)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Clients == nil {
		cfg.Clients = registry
	}
	if cfg.Grants == nil {
		cfg.Grants = newTestGrants(t, st, keeper, clock)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: tt, srv: srv, h: srv.Handler(), st: st, reg: registry, idp: idp, grants: cfg.Grants, ring: ring, keeper: keeper, metrics: reg, clock: clock}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// browser keeps cookies across requests to the handler, like a user agent would.
type browser struct {
	h       http.Handler
	cookies map[string]*http.Cookie
}

func newBrowser(h http.Handler) *browser { return &browser{h: h, cookies: map[string]*http.Cookie{}} }

func (b *browser) do(req *http.Request) *http.Response {
	for _, c := range b.cookies {
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	if req.RemoteAddr == "" || req.RemoteAddr == "192.0.2.1:1234" {
		req.RemoteAddr = "203.0.113.7:5555"
	}
	rec := httptest.NewRecorder()
	b.h.ServeHTTP(rec, req)
	resp := rec.Result()
	for _, c := range resp.Cookies() {
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
			continue
		}
		b.cookies[c.Name] = c
	}
	return resp
}

func (b *browser) get(u string, hdr ...string) *http.Response {
	req := httptest.NewRequest(http.MethodGet, u, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return b.do(req)
}

func (b *browser) postForm(u string, form url.Values, hdr ...string) *http.Response {
	req := httptest.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return b.do(req)
}

func body(t testing.TB, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func location(t testing.TB, resp *http.Response) *url.URL {
	t.Helper()
	loc := resp.Header.Get("Location")
	if loc == "" {
		t.Fatalf("no Location (status %d)", resp.StatusCode)
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatalf("bad Location %q: %v", loc, err)
	}
	return u
}

func wantStatus(t testing.TB, resp *http.Response, want int) {
	t.Helper()
	if resp.StatusCode != want {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d, want %d; body: %.600s", resp.StatusCode, want, b)
	}
}

// testClient is a registered client.
type testClient struct {
	ID, Secret, Redirect string
}

// register registers a client through /register.
func (e *env) register(t testing.TB, meta map[string]any) testClient {
	t.Helper()
	if _, ok := meta["redirect_uris"]; !ok {
		meta["redirect_uris"] = []string{"http://127.0.0.1:3000/callback"}
	}
	if _, ok := meta["token_endpoint_auth_method"]; !ok {
		meta["token_endpoint_auth_method"] = "none"
	}
	if _, ok := meta["client_name"]; !ok {
		meta["client_name"] = "Test Client"
	}
	b, _ := json.Marshal(meta)
	req := httptest.NewRequest(http.MethodPost, testPublic+"/register", strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	resp := rec.Result()
	wantStatus(t, resp, http.StatusCreated)
	var out struct {
		ClientID     string   `json:"client_id"`
		ClientSecret string   `json:"client_secret"`
		RedirectURIs []string `json:"redirect_uris"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return testClient{ID: out.ClientID, Secret: out.ClientSecret, Redirect: out.RedirectURIs[0]}
}

// pkce returns a verifier and its S256 challenge.
func pkce() (string, string) {
	v := randomToken(32)
	return v, s256(v)
}

// authorizeURL builds an /authorize URL for c with PKCE challenge.
func authorizeURL(c testClient, challenge string, extra url.Values) string {
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {c.ID},
		"redirect_uri":          {c.Redirect},
		"code_challenge":        {challenge},
		"code_challenge_method": {"S256"},
		"state":                 {"client-state-" + randomToken(6)},
		"resource":              {testPublic + "/mcp"},
		"scope":                 {"mcp:tools"},
	}
	for k, v := range extra {
		if len(v) == 0 {
			q.Del(k)
		} else {
			q[k] = v
		}
	}
	return testPublic + "/authorize?" + q.Encode()
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
var requestRE = regexp.MustCompile(`name="request" value="([^"]+)"`)

// consentForm fetches the consent page at loc and returns the form fields.
func consentForm(t testing.TB, b *browser, loc *url.URL) url.Values {
	t.Helper()
	resp := b.get(testPublic + loc.RequestURI())
	wantStatus(t, resp, http.StatusOK)
	page := body(t, resp)
	m1, m2 := csrfRE.FindStringSubmatch(page), requestRE.FindStringSubmatch(page)
	if m1 == nil || m2 == nil {
		t.Fatalf("consent page without form fields:\n%s", page)
	}
	return url.Values{"csrf": {htmlUnescape(m1[1])}, "request": {htmlUnescape(m2[1])}}
}

func htmlUnescape(s string) string {
	r := strings.NewReplacer("&#43;", "+", "&amp;", "&", "&#34;", `"`, "&#39;", "'", "&lt;", "<", "&gt;", ">")
	return r.Replace(s)
}

// flowResult is the end of a browser flow: the client's redirect.
type flowResult struct {
	Redirect *url.URL
	State    string
}

// authorize runs /authorize → consent (allow) → IdP → callback and returns the redirect to
// the client. It fails the test if a step does not answer as expected.
func (e *env) authorize(t testing.TB, b *browser, c testClient, challenge string, extra url.Values) flowResult {
	t.Helper()
	au := authorizeURL(c, challenge, extra)
	state, _ := url.ParseQuery(strings.SplitN(au, "?", 2)[1])
	resp := b.get(au)
	wantStatus(t, resp, http.StatusFound)
	loc := location(t, resp)
	if loc.Path == "/consent" {
		form := consentForm(t, b, loc)
		form.Set("action", "allow")
		resp = b.postForm(testPublic+"/consent", form, "Origin", testPublic, "Sec-Fetch-Site", "same-origin")
		wantStatus(t, resp, http.StatusSeeOther)
		loc = location(t, resp)
	}
	cb := e.idp.login(t, loc.String())
	resp = b.get(cb)
	wantStatus(t, resp, http.StatusFound)
	return flowResult{Redirect: location(t, resp), State: state.Get("state")}
}

// token posts a form to /token (with optional Basic credentials).
func (e *env) token(t testing.TB, form url.Values, basic ...string) (*http.Response, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, testPublic+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if len(basic) == 2 {
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(basic[0])+":"+url.QueryEscape(basic[1]))))
	}
	req.RemoteAddr = "203.0.113.7:5555"
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	resp := rec.Result()
	var m map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("token response is not JSON (%d): %s", resp.StatusCode, raw)
		}
	}
	return resp, m
}

// codeFlow registers nothing: it runs the browser flow for c and redeems the code.
func (e *env) codeFlow(t testing.TB, c testClient) map[string]any {
	t.Helper()
	v, ch := pkce()
	res := e.authorize(t, newBrowser(e.h), c, ch, nil)
	resp, m := e.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {res.Redirect.Query().Get("code")},
		"redirect_uri": {c.Redirect}, "client_id": {c.ID}, "code_verifier": {v}, "resource": {testPublic + "/mcp"}})
	wantStatus(t, resp, http.StatusOK)
	return m
}

func wantOAuthError(t testing.TB, resp *http.Response, m map[string]any, status int, code string) {
	t.Helper()
	if resp.StatusCode != status || m["error"] != code {
		t.Fatalf("got %d %v, want %d error=%s", resp.StatusCode, m, status, code)
	}
}

func counter(t testing.TB, reg *prometheus.Registry, step, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "mcpgate_oauth_events_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["step"] == step && labels["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func newMemStore() store.Store { return store.NewMemory() }
