package oauth

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/clients"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
	"github.com/mcpgate/mcpgate/gateway/internal/upstream"
)

func TestNewValidatesConfig(t *testing.T) {
	e := newEnv(t)
	base := Config{PublicURL: testPublic, Clients: e.reg, Grants: e.grants, Keys: e.keeper, Store: e.st, Upstream: e.idp}
	for name, mod := range map[string]func(*Config){
		"http non-loopback": func(c *Config) { c.PublicURL = "http://gw.example.com" },
		"path":              func(c *Config) { c.PublicURL = "https://gw.example.com/base" },
		"query":             func(c *Config) { c.PublicURL = "https://gw.example.com?x=1" },
		"empty":             func(c *Config) { c.PublicURL = "" },
		"no store":          func(c *Config) { c.Store = nil },
		"no upstream":       func(c *Config) { c.Upstream = nil },
		"code ttl too long": func(c *Config) { c.CodeTTL = 11 * time.Minute },
	} {
		cfg := base
		mod(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg.PublicURL)
		}
	}
	cfg := base
	cfg.PublicURL = "https://GW.example.com/"
	s, err := New(cfg)
	if err != nil || s.Issuer() != "https://gw.example.com" {
		t.Fatalf("issuer %q, %v", s.Issuer(), err)
	}
}

func TestMetadata(t *testing.T) {
	e := newEnv(t)
	get := func(path string, hdr ...string) (*http.Response, map[string]any) {
		req := httptest.NewRequest(http.MethodGet, "http://evil.example"+path, nil) // Host must not matter
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		var m map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &m)
		return rec.Result(), m
	}
	resp, m := get("/.well-known/oauth-authorization-server", "Origin", "https://inspector.example")
	wantStatus(t, resp, 200)
	if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Error("metadata without CORS")
	}
	want := map[string]any{
		"issuer":                 testPublic,
		"authorization_endpoint": testPublic + "/authorize",
		"token_endpoint":         testPublic + "/token",
		"registration_endpoint":  testPublic + "/register",
		"revocation_endpoint":    testPublic + "/revoke",
		"authorization_response_iss_parameter_supported": true,
		"client_id_metadata_document_supported":          true,
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	for k, v := range map[string]string{
		"code_challenge_methods_supported":      `["S256"]`,
		"scopes_supported":                      `["mcp:tools","offline_access"]`,
		"grant_types_supported":                 `["authorization_code","refresh_token"]`,
		"response_types_supported":              `["code"]`,
		"token_endpoint_auth_methods_supported": `["none","client_secret_basic","client_secret_post"]`,
	} {
		if b, _ := json.Marshal(m[k]); string(b) != v {
			t.Errorf("%s = %s, want %s", k, b, v)
		}
	}
	for path, res := range map[string]string{
		"/.well-known/oauth-protected-resource":         testPublic,
		"/.well-known/oauth-protected-resource/mcp":     testPublic + "/mcp",
		"/.well-known/oauth-protected-resource/mcp/sse": testPublic + "/mcp/sse",
	} {
		resp, m := get(path)
		wantStatus(t, resp, 200)
		if m["resource"] != res {
			t.Errorf("%s: resource %v, want %s", path, m["resource"], res)
		}
		if b, _ := json.Marshal(m["authorization_servers"]); string(b) != `["`+testPublic+`"]` {
			t.Errorf("%s: authorization_servers %s", path, b)
		}
		if b, _ := json.Marshal(m["scopes_supported"]); string(b) != `["mcp:tools"]` {
			t.Errorf("%s: scopes_supported %s", path, b)
		}
		if b, _ := json.Marshal(m["bearer_methods_supported"]); string(b) != `["header"]` {
			t.Errorf("%s: bearer_methods_supported %s", path, b)
		}
	}
	for _, path := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-protected-resource/other", "/.well-known/x"} {
		resp, m := get(path)
		wantStatus(t, resp, 404)
		if m["error"] != "not_found" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s: %v %s", path, m, resp.Header.Get("Content-Type"))
		}
	}
	req := httptest.NewRequest(http.MethodOptions, testPublic+"/token", nil)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	if rec.Code != 204 || rec.Header().Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(rec.Header().Get("Access-Control-Allow-Methods"), "POST") {
		t.Errorf("token preflight: %d %v", rec.Code, rec.Header())
	}
	req = httptest.NewRequest(http.MethodGet, testPublic+"/authorize", nil)
	req.Header.Set("Origin", "https://app.example")
	rec = httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	if rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Error("CORS on /authorize")
	}
}

func TestFullFlow(t *testing.T) {
	e := newEnv(t)
	c := e.register(t, map[string]any{"client_name": "Flow <Client>", "client_uri": "https://flow.example/"})
	b := newBrowser(e.h)
	v, ch := pkce()
	au := authorizeURL(c, ch, url.Values{"state": {"s t+a%t&e#1"}})

	// /authorize: consent needed → redirect to our consent page, flow cookie set.
	resp := b.get(au)
	wantStatus(t, resp, http.StatusFound)
	loc := location(t, resp)
	if loc.Path != "/consent" || loc.Host != "" {
		t.Fatalf("authorize → %s", loc)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Error("authorize redirect cacheable")
	}
	var flowCookie *http.Cookie
	for _, ck := range resp.Cookies() {
		if strings.HasPrefix(ck.Name, "__Host-mcpgate-flow-") {
			flowCookie = ck
		}
	}
	if flowCookie == nil || !flowCookie.Secure || !flowCookie.HttpOnly || flowCookie.Path != "/" || flowCookie.SameSite != http.SameSiteLaxMode || flowCookie.Domain != "" {
		t.Fatalf("flow cookie %+v", flowCookie)
	}

	// Consent page.
	resp = b.get(testPublic + loc.RequestURI())
	wantStatus(t, resp, http.StatusOK)
	page := body(t, resp)
	h := resp.Header
	if h.Get("X-Frame-Options") != "DENY" {
		t.Error("no X-Frame-Options DENY")
	}
	// no-referrer would make browsers send "Origin: null" with the form (seen in Chromium).
	if h.Get("Referrer-Policy") != "same-origin" || strings.Contains(page, `content="no-referrer"`) {
		t.Errorf("consent page referrer policy %q", h.Get("Referrer-Policy"))
	}
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"frame-ancestors 'none'", "form-action 'self' https://idp.example.test http://127.0.0.1:3000;", "default-src 'none'", "base-uri 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") {
		t.Error("CSP allows unsafe-inline")
	}
	// The inline style's hash must be the one the CSP allows.
	m := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindStringSubmatch(page)
	sum := sha256.Sum256([]byte(m[1]))
	if !strings.Contains(csp, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'") {
		t.Error("CSP style hash does not match the inline style")
	}
	for _, want := range []string{"Flow &lt;Client&gt;", "https://flow.example/", "127.0.0.1:3000", "Unverified — self-registered", "mcp:tools", `name="action" value="allow"`} {
		if !strings.Contains(page, want) {
			t.Errorf("consent page lacks %q", want)
		}
	}
	if strings.Contains(page, "<script") {
		t.Error("consent page has a script")
	}
	form := url.Values{"csrf": {htmlUnescape(csrfRE.FindStringSubmatch(page)[1])}, "request": {htmlUnescape(requestRE.FindStringSubmatch(page)[1])}, "action": {"allow"}}
	resp = b.postForm(testPublic+"/consent", form, "Origin", testPublic, "Sec-Fetch-Site", "same-origin")
	wantStatus(t, resp, http.StatusSeeOther)
	idpURL := location(t, resp)
	if idpURL.Host != "idp.example.test" {
		t.Fatalf("consent → %s", idpURL)
	}
	upState := idpURL.Query().Get("state")
	if len(upState) < 43 || strings.Contains(upState, "client-state") || upState == "s t+a%t&e#1" {
		t.Errorf("upstream state %q is not our own random value", upState)
	}
	var consentCookie *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "__Host-mcpgate-consent" {
			consentCookie = ck
		}
	}
	if consentCookie == nil || !consentCookie.Secure || !consentCookie.HttpOnly || consentCookie.SameSite != http.SameSiteLaxMode || len(consentCookie.Value) > 400 {
		t.Fatalf("consent cookie %+v", consentCookie)
	}

	// IdP → callback → client.
	resp = b.get(e.idp.login(t, idpURL.String()))
	wantStatus(t, resp, http.StatusFound)
	cb := location(t, resp)
	if got := cb.Scheme + "://" + cb.Host + cb.Path; got != c.Redirect {
		t.Fatalf("callback → %s", cb)
	}
	q := cb.Query()
	if q.Get("state") != "s t+a%t&e#1" || q.Get("iss") != testPublic || len(q.Get("code")) < 43 {
		t.Fatalf("client redirect query %v", q)
	}
	if _, ok := b.cookies[flowCookie.Name]; ok {
		t.Error("flow cookie not cleared at the callback")
	}

	// Token.
	tresp, tok := e.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "redirect_uri": {c.Redirect},
		"client_id": {c.ID}, "code_verifier": {v}, "resource": {testPublic + "/mcp"}})
	wantStatus(t, tresp, 200)
	if tresp.Header.Get("Cache-Control") != "no-store" || tresp.Header.Get("Pragma") != "no-cache" || !strings.HasPrefix(tresp.Header.Get("Content-Type"), "application/json") {
		t.Errorf("token headers %v", tresp.Header)
	}
	if tok["token_type"] != "Bearer" || tok["access_token"] == "" || tok["refresh_token"] == nil || tok["scope"] != "mcp:tools" || tok["expires_in"] == nil {
		t.Fatalf("token response %v", tok)
	}
	if !e.tokenValid(tok["access_token"].(string), testPublic+"/mcp") {
		t.Error("issued access token does not verify")
	}

	// Refresh (refreshes upstream too).
	rresp, rtok := e.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}, "client_id": {c.ID}, "resource": {testPublic + "/mcp"}})
	wantStatus(t, rresp, 200)
	if rtok["access_token"] == tok["access_token"] || rtok["refresh_token"] == tok["refresh_token"] || e.idp.refreshes != 1 {
		t.Fatalf("refresh %v (upstream refreshes %d)", rtok, e.idp.refreshes)
	}

	// A second /authorize in the same browser skips consent and works (the sample's
	// second-login bug), with a fresh upstream state.
	_, ch2 := pkce()
	resp = b.get(authorizeURL(c, ch2, nil))
	wantStatus(t, resp, http.StatusFound)
	loc2 := location(t, resp)
	if loc2.Host != "idp.example.test" {
		t.Fatalf("remembered consent not honoured: → %s", loc2)
	}
	if loc2.Query().Get("state") == upState {
		t.Error("upstream state reused")
	}
	resp = b.get(e.idp.login(t, loc2.String()))
	wantStatus(t, resp, http.StatusFound)
	if location(t, resp).Query().Get("code") == "" {
		t.Error("second login did not yield a code")
	}

	// Revoke.
	req := httptest.NewRequest(http.MethodPost, testPublic+"/revoke", strings.NewReader(url.Values{"token": {rtok["access_token"].(string)}, "client_id": {c.ID}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("revoke: %d %s", rec.Code, rec.Body)
	}
	if e.tokenValid(rtok["access_token"].(string), testPublic+"/mcp") {
		t.Error("token still valid after revocation")
	}
	rresp, rerr := e.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rtok["refresh_token"].(string)}, "client_id": {c.ID}})
	wantOAuthError(t, rresp, rerr, 400, "invalid_grant")

	for step, outcome := range map[string]string{"register": "ok", "authorize": "consent_required", "consent": "allow", "callback": "ok", "token": "ok", "refresh": "ok", "revoke": "ok"} {
		if counter(t, e.metrics, step, outcome) < 1 {
			t.Errorf("metric %s/%s not counted", step, outcome)
		}
	}
}

func TestConfidentialClient(t *testing.T) {
	e := newEnv(t)
	c := e.register(t, map[string]any{"token_endpoint_auth_method": "client_secret_basic", "redirect_uris": []string{"https://app.example/cb"}})
	if c.Secret == "" {
		t.Fatal("no secret issued")
	}
	v, ch := pkce()
	res := e.authorize(t, newBrowser(e.h), c, ch, nil)
	form := url.Values{"grant_type": {"authorization_code"}, "code": {res.Redirect.Query().Get("code")}, "redirect_uri": {c.Redirect}, "code_verifier": {v}}
	// Wrong secret: 401 with WWW-Authenticate; the code is not burnt by a failed authentication.
	resp, m := e.token(t, form, c.ID, "wrong")
	wantOAuthError(t, resp, m, 401, "invalid_client")
	if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
		t.Error("invalid_client after Basic without WWW-Authenticate")
	}
	// Secret in the body although registered for Basic.
	f2 := url.Values{}
	for k, vv := range form {
		f2[k] = vv
	}
	f2.Set("client_id", c.ID)
	f2.Set("client_secret", c.Secret)
	resp, m = e.token(t, f2)
	wantOAuthError(t, resp, m, 401, "invalid_client")
	// No authentication at all.
	f2.Del("client_secret")
	resp, m = e.token(t, f2)
	wantOAuthError(t, resp, m, 401, "invalid_client")
	resp, m = e.token(t, form, c.ID, c.Secret)
	wantStatus(t, resp, 200)
	if m["access_token"] == nil {
		t.Fatal(m)
	}
}

func TestNoRefreshTokenWithoutGrant(t *testing.T) {
	e := newEnv(t)
	c := e.register(t, map[string]any{"grant_types": []string{"authorization_code"}})
	m := e.codeFlow(t, c)
	if _, ok := m["refresh_token"]; ok {
		t.Fatalf("refresh token issued to a client not registered for it: %v", m)
	}
}

func TestPreapprovedClientSkipsConsent(t *testing.T) {
	var e *env
	var id string
	e = newEnv(t, func(c *Config, _ *clients.Options) { c.PreapprovedClients = []string{"placeholder"} })
	c := e.register(t, map[string]any{})
	id = c.ID
	// Rebuild the server with the real id pre-approved over the same registry and store.
	srv, err := New(Config{PublicURL: testPublic, Clients: e.reg, Grants: e.grants, Keys: e.keeper, Store: e.st, Upstream: e.idp, PreapprovedClients: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	_, ch := pkce()
	resp := newBrowser(srv.Handler()).get(authorizeURL(c, ch, nil))
	wantStatus(t, resp, http.StatusFound)
	if location(t, resp).Host != "idp.example.test" {
		t.Fatalf("pre-approved client sent to %s", location(t, resp))
	}
}

func TestDenyConsent(t *testing.T) {
	e := newEnv(t)
	c := e.register(t, map[string]any{})
	b := newBrowser(e.h)
	_, ch := pkce()
	resp := b.get(authorizeURL(c, ch, url.Values{"state": {"xyz"}}))
	form := consentForm(t, b, location(t, resp))
	form.Set("action", "deny")
	resp = b.postForm(testPublic+"/consent", form, "Origin", testPublic)
	wantStatus(t, resp, http.StatusSeeOther)
	loc := location(t, resp)
	if !strings.HasPrefix(loc.String(), c.Redirect+"?") || loc.Query().Get("error") != "access_denied" || loc.Query().Get("state") != "xyz" || loc.Query().Get("iss") != testPublic {
		t.Fatalf("deny → %s", loc)
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == "__Host-mcpgate-consent" {
			t.Error("deny remembered in the consent cookie")
		}
	}
	// The pending request is used up.
	resp = b.postForm(testPublic+"/consent", form, "Origin", testPublic)
	wantStatus(t, resp, http.StatusBadRequest)
}

func TestUpstreamErrors(t *testing.T) {
	e := newEnv(t)
	c := e.register(t, map[string]any{})
	start := func(b *browser, state string) *url.URL {
		_, ch := pkce()
		resp := b.get(authorizeURL(c, ch, url.Values{"state": {state}}))
		form := consentForm(t, b, location(t, resp))
		form.Set("action", "allow")
		return location(t, b.postForm(testPublic+"/consent", form, "Origin", testPublic))
	}
	t.Run("user cancels at the IdP", func(t *testing.T) {
		b := newBrowser(e.h)
		idp := start(b, "st1")
		resp := b.get(testPublic + "/oauth-callback?" + url.Values{"state": {idp.Query().Get("state")}, "error": {"access_denied"}, "error_description": {"AADSTS65004: User declined to consent"}}.Encode())
		wantStatus(t, resp, http.StatusFound)
		loc := location(t, resp)
		if !strings.HasPrefix(loc.String(), c.Redirect+"?") || loc.Query().Get("error") != "access_denied" || loc.Query().Get("state") != "st1" || loc.Query().Get("iss") != testPublic {
			t.Fatalf("→ %s", loc)
		}
	})
	t.Run("IdP configuration error gets a page with a way back", func(t *testing.T) {
		b := newBrowser(e.h)
		idp := start(b, "st2")
		resp := b.get(testPublic + "/oauth-callback?" + url.Values{"state": {idp.Query().Get("state")}, "error": {"unauthorized_client"}, "error_description": {"AADSTS700016: Application not found <b>"}}.Encode())
		wantStatus(t, resp, http.StatusBadGateway)
		page := body(t, resp)
		if !strings.Contains(page, "AADSTS700016") || strings.Contains(page, "<b>") || !strings.Contains(page, `id="return"`) || !strings.Contains(page, "error=server_error") {
			t.Fatalf("page:\n%s", page)
		}
		if counter(t, e.metrics, "callback", "error_server_error") < 1 {
			t.Error("callback error not counted")
		}
	})
	t.Run("exchange fails", func(t *testing.T) {
		b := newBrowser(e.h)
		idp := start(b, "st3")
		e.idp.exchangeErr = &upstream.Error{Code: "invalid_grant", Description: "AADSTS54005: code already redeemed", AADSTS: "AADSTS54005"}
		defer func() { e.idp.exchangeErr = nil }()
		resp := b.get(e.idp.login(t, idp.String()))
		wantStatus(t, resp, http.StatusBadGateway)
		if page := body(t, resp); !strings.Contains(page, "AADSTS54005") {
			t.Fatalf("page:\n%s", page)
		}
	})
	t.Run("state replay and unknown state", func(t *testing.T) {
		b := newBrowser(e.h)
		idp := start(b, "st4")
		cb := e.idp.login(t, idp.String())
		wantStatus(t, b.get(cb), http.StatusFound)
		resp := b.get(cb)
		wantStatus(t, resp, http.StatusBadRequest)
		if resp.Header.Get("Location") != "" {
			t.Error("replayed state redirected")
		}
		wantStatus(t, b.get(testPublic+"/oauth-callback?code=x&state=unknown"), http.StatusBadRequest)
		wantStatus(t, b.get(testPublic+"/oauth-callback?code=x"), http.StatusBadRequest)
	})
	t.Run("callback in another browser", func(t *testing.T) {
		idp := start(newBrowser(e.h), "st5")
		resp := newBrowser(e.h).get(e.idp.login(t, idp.String()))
		wantStatus(t, resp, http.StatusForbidden)
		if resp.Header.Get("Location") != "" {
			t.Error("callback without the flow cookie redirected")
		}
	})
	t.Run("refresh after the user was disabled upstream", func(t *testing.T) {
		m := e.codeFlow(t, c)
		e.idp.refreshErr = &upstream.Error{Code: "invalid_grant", Description: "AADSTS50057: The user account is disabled."}
		defer func() { e.idp.refreshErr = nil }()
		resp, m2 := e.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {m["refresh_token"].(string)}, "client_id": {c.ID}})
		wantOAuthError(t, resp, m2, 400, "invalid_grant")
	})
	t.Run("refresh while the IdP is down", func(t *testing.T) {
		m := e.codeFlow(t, c)
		e.idp.refreshErr = &upstream.Error{Code: "temporarily_unavailable"}
		defer func() { e.idp.refreshErr = nil }()
		resp, m2 := e.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {m["refresh_token"].(string)}, "client_id": {c.ID}})
		wantOAuthError(t, resp, m2, 503, "temporarily_unavailable")
	})
}

func TestRedisDumpRevealsNoSecrets(t *testing.T) {
	e := newEnv(t)
	c := e.register(t, map[string]any{})
	b := newBrowser(e.h)
	_, ch := pkce()
	res := e.authorize(t, b, c, ch, url.Values{"state": {"CLIENT-STATE-MARKER"}})
	code := res.Redirect.Query().Get("code")
	mem := e.st.(*store.Memory)
	for _, key := range []string{recordStoreKey(kindCode, code)} {
		v, err := mem.Get(t.Context(), key)
		if err != nil {
			t.Fatalf("code record missing: %v", err)
		}
		for _, secret := range []string{"UPSTREAM-AT-", "UPSTREAM-RT-", "alice", "CLIENT-STATE-MARKER", code, c.Redirect} {
			if strings.Contains(string(v), secret) {
				t.Errorf("stored code record reveals %q", secret)
			}
		}
		if strings.Contains(key, code) {
			t.Error("store key contains the code")
		}
	}
}
