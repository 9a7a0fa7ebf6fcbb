package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/e2e/harness"
)

func pkcePair() (verifier, challenge string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	verifier = base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

// TestOAuthFlow runs the whole authorization-code flow against a real oidc-provider and a real
// redis-server, asserting each step's status, headers and body; then refresh, an upstream
// account disabled mid-session, code replay and revocation.
func TestOAuthFlow(t *testing.T) {
	s := startOAuthStack(t, oauthStackOptions{})
	c := newCookieClient(t)
	redirect := "http://127.0.0.1:" + strconv.Itoa(harness.FreePort(t)) + "/callback"

	// Discovery.
	resp, b := c.get(s.URL+"/.well-known/oauth-protected-resource/mcp", "Origin", "https://inspector.example")
	expectStatus(t, resp, b, 200)
	prm := decodeJSON(t, b)
	if prm["resource"] != s.URL+"/mcp" || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("PRM %v", prm)
	}
	resp, b = c.get(s.URL + "/.well-known/oauth-authorization-server")
	expectStatus(t, resp, b, 200)
	meta := decodeJSON(t, b)
	if meta["issuer"] != s.URL || meta["authorization_response_iss_parameter_supported"] != true {
		t.Fatalf("AS metadata %v", meta)
	}
	resp, b = c.get(s.URL + "/.well-known/openid-configuration")
	expectStatus(t, resp, b, 404)

	// Registration.
	resp, b = c.do(http.MethodPost, s.URL+"/register", strings.NewReader(`{"client_name":"e2e","redirect_uris":["`+redirect+`"],"token_endpoint_auth_method":"none"}`), "Content-Type", "application/json")
	expectStatus(t, resp, b, 201)
	reg := decodeJSON(t, b)
	clientID, _ := reg["client_id"].(string)
	if clientID == "" || reg["application_type"] != "native" {
		t.Fatalf("registration %v", reg)
	}

	// Authorization request → consent.
	verifier, challenge := pkcePair()
	q := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect}, "code_challenge": {challenge},
		"code_challenge_method": {"S256"}, "state": {"e2e state/&?"}, "resource": {s.URL + "/mcp"}, "scope": {"mcp:tools offline_access"}}
	resp, b = c.get(s.URL + "/authorize?" + q.Encode())
	expectStatus(t, resp, b, 302)
	consent := locationOf(t, resp)
	if consent.Path != "/consent" || consent.Host != "127.0.0.1:"+strconv.Itoa(mustPort(t, s.URL)) {
		t.Fatalf("authorize → %s", consent)
	}
	resp, b = c.get(consent.String())
	expectStatus(t, resp, b, 200)
	csp := resp.Header.Get("Content-Security-Policy")
	if resp.Header.Get("X-Frame-Options") != "DENY" || !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, s.IdP.Issuer) || !strings.Contains(csp, "http://127.0.0.1:"+strings.Split(strings.TrimPrefix(redirect, "http://127.0.0.1:"), "/")[0]) {
		t.Fatalf("consent headers: XFO %q CSP %q", resp.Header.Get("X-Frame-Options"), csp)
	}
	if !strings.Contains(b, "Unverified — self-registered") || !strings.Contains(b, "offline_access") {
		t.Fatalf("consent page:\n%s", b)
	}
	form := url.Values{"request": {unescapeAttr(formRequest.FindStringSubmatch(b)[1])}, "csrf": {unescapeAttr(formCSRF.FindStringSubmatch(b)[1])}, "action": {"allow"}}
	resp, b = c.postForm(s.URL+"/consent", form, "Origin", s.URL, "Sec-Fetch-Site", "same-origin")
	expectStatus(t, resp, b, 303)
	idpURL := locationOf(t, resp)
	iq := idpURL.Query()
	if !strings.HasPrefix(idpURL.String(), s.IdP.Issuer+"/") || iq.Has("resource") || iq.Get("state") == "e2e state/&?" ||
		len(iq.Get("state")) < 43 || iq.Get("code_challenge_method") != "S256" || !strings.Contains(iq.Get("scope"), "offline_access") ||
		iq.Get("redirect_uri") != s.URL+"/oauth-callback" || iq.Get("nonce") == "" {
		t.Fatalf("upstream authorization request %s", idpURL)
	}

	// Sign in at the real IdP; its redirect comes back to our callback.
	cb := s.IdP.Login(t, nil, idpURL.String(), "alice", s.URL+"/oauth-callback")
	resp, b = c.get(cb.String())
	expectStatus(t, resp, b, 302)
	back := locationOf(t, resp)
	bq := back.Query()
	if !strings.HasPrefix(back.String(), redirect+"?") || bq.Get("state") != "e2e state/&?" || bq.Get("iss") != s.URL || len(bq.Get("code")) < 43 {
		t.Fatalf("client redirect %s", back)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Error("callback redirect cacheable")
	}

	// Token.
	tokenForm := url.Values{"grant_type": {"authorization_code"}, "code": {bq.Get("code")}, "redirect_uri": {redirect}, "client_id": {clientID},
		"code_verifier": {verifier}, "resource": {s.URL + "/mcp"}}
	tc := newCookieClient(t)
	resp, b = tc.postForm(s.URL+"/token", tokenForm)
	expectStatus(t, resp, b, 200)
	tok := decodeJSON(t, b)
	if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Pragma") != "no-cache" || tok["token_type"] != "Bearer" ||
		tok["scope"] != "mcp:tools offline_access" || tok["refresh_token"] == nil || tok["expires_in"] == nil {
		t.Fatalf("token response %v %v", resp.Header, tok)
	}
	at, rt := tok["access_token"].(string), tok["refresh_token"].(string)
	if st := s.mcpStatus(t, at); st != 200 {
		t.Fatalf("MCP call with the issued token: %d", st)
	}

	// A dump of Redis reveals no upstream token (oidc-provider's ID token is a JWT) and no
	// token of ours.
	for k, v := range redisValues(t, s.Redis) {
		if strings.Contains(v, "eyJ") || strings.Contains(v, at) || strings.Contains(v, rt) || strings.Contains(k, bq.Get("code")) {
			t.Errorf("Redis key %s reveals a token", k)
		}
	}

	// Refresh: rotates ours and refreshes upstream.
	resp, b = tc.postForm(s.URL+"/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {clientID}, "resource": {s.URL + "/mcp"}})
	expectStatus(t, resp, b, 200)
	tok2 := decodeJSON(t, b)
	if tok2["refresh_token"] == rt || tok2["access_token"] == at {
		t.Fatal("refresh did not rotate")
	}
	upRefreshes := 0
	for _, tr := range s.IdP.TokenRequests(t) {
		if tr.GrantType == "refresh_token" && tr.Status == 200 {
			upRefreshes++
		}
	}
	if upRefreshes != 1 {
		t.Fatalf("upstream refreshes: %d", upRefreshes)
	}

	// Code replay: invalid_grant, and the tokens of the first use are revoked.
	resp, b = tc.postForm(s.URL+"/token", tokenForm)
	expectStatus(t, resp, b, 400)
	if decodeJSON(t, b)["error"] != "invalid_grant" {
		t.Fatal(b)
	}
	if !s.mcpRefused(t, tok2["access_token"].(string)) {
		t.Fatal("token of a replayed code still works")
	}

	// A second sign-in in the same browser skips consent (remembered) and works.
	_, challenge2 := pkcePair()
	q.Set("code_challenge", challenge2)
	resp, b = c.get(s.URL + "/authorize?" + q.Encode())
	expectStatus(t, resp, b, 302)
	idp2 := locationOf(t, resp)
	if !strings.HasPrefix(idp2.String(), s.IdP.Issuer+"/") || idp2.Query().Get("state") == iq.Get("state") {
		t.Fatalf("second authorize → %s", idp2)
	}
	cb2 := s.IdP.Login(t, nil, idp2.String(), "alice", s.URL+"/oauth-callback")
	resp, b = c.get(cb2.String())
	expectStatus(t, resp, b, 302)
	if locationOf(t, resp).Query().Get("code") == "" {
		t.Fatal("second sign-in gave no code")
	}

	// The user is disabled at the IdP: the next refresh fails and ends the session.
	resp, b = tc.postForm(s.URL+"/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {clientID}})
	expectStatus(t, resp, b, 400) // rt was rotated and its grant revoked by the replay above
	verifier3, challenge3 := pkcePair()
	q.Set("code_challenge", challenge3)
	resp, _ = c.get(s.URL + "/authorize?" + q.Encode())
	cb3 := s.IdP.Login(t, nil, locationOf(t, resp).String(), "alice", s.URL+"/oauth-callback")
	resp, _ = c.get(cb3.String())
	tokenForm.Set("code", locationOf(t, resp).Query().Get("code"))
	tokenForm.Set("code_verifier", verifier3)
	resp, b = tc.postForm(s.URL+"/token", tokenForm)
	expectStatus(t, resp, b, 200)
	tok3 := decodeJSON(t, b)
	s.IdP.DisableUser(t, "alice")
	resp, b = tc.postForm(s.URL+"/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok3["refresh_token"].(string)}, "client_id": {clientID}})
	expectStatus(t, resp, b, 400)
	if decodeJSON(t, b)["error"] != "invalid_grant" {
		t.Fatal(b)
	}
	if !s.mcpRefused(t, tok3["access_token"].(string)) {
		t.Fatal("access token of a disabled user still works")
	}
	s.IdP.EnableUser(t, "alice")

	// Revocation (RFC 7009): 200, also for unknown tokens.
	resp, b = tc.postForm(s.URL+"/revoke", url.Values{"token": {"unknown"}, "client_id": {clientID}})
	expectStatus(t, resp, b, 200)

	// The IdP saw no resource parameter and never our client's state.
	for _, a := range s.IdP.Authorizations(t) {
		if a.Has("resource") || a.Get("state") == "e2e state/&?" {
			t.Errorf("IdP authorization request %v", a)
		}
	}
	// Auth-funnel metrics.
	_, b = tc.get(s.Metrics + "/metrics")
	for _, want := range []string{`outcome="ok",step="register"`, `outcome="allow",step="consent"`, `outcome="ok",step="callback"`, `outcome="ok",step="token"`, `outcome="ok",step="refresh"`, `outcome="code_replay",step="token"`} {
		if !strings.Contains(b, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestOAuthUpstreamDenied: the user refuses at the IdP; the client gets access_denied with its
// state and our iss.
func TestOAuthUpstreamDenied(t *testing.T) {
	s := startOAuthStack(t, oauthStackOptions{})
	c := newCookieClient(t)
	redirect := "http://127.0.0.1:" + strconv.Itoa(harness.FreePort(t)) + "/cb"
	resp, b := c.do(http.MethodPost, s.URL+"/register", strings.NewReader(`{"redirect_uris":["`+redirect+`"],"token_endpoint_auth_method":"none"}`), "Content-Type", "application/json")
	expectStatus(t, resp, b, 201)
	clientID := decodeJSON(t, b)["client_id"].(string)
	_, challenge := pkcePair()
	resp, _ = c.get(s.URL + "/authorize?" + url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "state": {"st"}}.Encode())
	resp, b = c.get(locationOf(t, resp).String())
	expectStatus(t, resp, b, 200)
	resp, b = c.postForm(s.URL+"/consent", url.Values{"request": {unescapeAttr(formRequest.FindStringSubmatch(b)[1])}, "csrf": {unescapeAttr(formCSRF.FindStringSubmatch(b)[1])}, "action": {"allow"}}, "Origin", s.URL)
	expectStatus(t, resp, b, 303)
	cb := s.IdP.Login(t, nil, locationOf(t, resp).String(), "__deny", s.URL+"/oauth-callback")
	resp, b = c.get(cb.String())
	expectStatus(t, resp, b, 302)
	back := locationOf(t, resp)
	if !strings.HasPrefix(back.String(), redirect+"?") || back.Query().Get("error") != "access_denied" || back.Query().Get("state") != "st" || back.Query().Get("iss") != s.URL {
		t.Fatalf("→ %s", back)
	}
	// The state is used up: the same callback again is an error page.
	resp, b = c.get(cb.String())
	expectStatus(t, resp, b, 400)
}

func mustPort(t *testing.T, u string) int {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(pu.Port())
	return p
}
