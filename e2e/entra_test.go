package e2e

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/e2e/harness"
)

// The Entra end-to-end test runs `mcpgate serve` as a process against a loopback stand-in for
// Microsoft Entra ID (multi-tenant "organizations" v2.0 endpoints: discovery whose issuer is a
// {tenantid} template, keys, authorize, token) and a loopback managed-identity endpoint with
// the App Service / Container Apps contract (IDENTITY_ENDPOINT + IDENTITY_HEADER), which
// azidentity in the gateway reads at start. The stand-in checks the exact form the gateway
// posts on code exchange and refresh (federated client assertion = the managed identity's
// token, no secret, no resource) and answers scripted AADSTS errors.

const (
	entraAppID  = "0b6c2a61-6b55-4d1f-9a1e-5a0a3c9d7e11" // the gateway's app registration
	entraUAMI   = "9f1c7c2e-3a4b-4c5d-8e6f-7a8b9c0d1e2f" // the gateway's user-assigned identity (client id)
	tenantHome  = "11111111-1111-1111-1111-111111111111"
	tenantOther = "22222222-2222-2222-2222-222222222222"
	groupMCP    = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
	miHeader    = "identity-header-secret-value"
	jwtBearer   = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

type entraUser struct {
	tid, oid, upn string
	roles, groups []string
	overage       bool
}

type entraCode struct {
	user, challenge, nonce string
}

// fakeEntra is the loopback Entra ID.
type fakeEntra struct {
	srv      *httptest.Server
	key      *rsa.PrivateKey
	callback string
	mi       *miEndpoint

	mu         sync.Mutex
	users      map[string]*entraUser
	next       string    // who signs in at the next authorize
	authErr    [2]string // one-shot error redirect at authorize: error, description
	tokenErr   [2]string // one-shot token endpoint error
	codes      map[string]entraCode
	refresh    map[string]string // refresh token → user
	violations []string
	exchanges  int
	refreshes  int
}

func newFakeEntra(t *testing.T, mi *miEndpoint) *fakeEntra {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	e := &fakeEntra{key: key, mi: mi, users: map[string]*entraUser{}, codes: map[string]entraCode{}, refresh: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /organizations/v2.0/.well-known/openid-configuration", e.discovery)
	mux.HandleFunc("GET /common/discovery/v2.0/keys", e.keys)
	mux.HandleFunc("GET /organizations/oauth2/v2.0/authorize", e.authorize)
	mux.HandleFunc("POST /organizations/oauth2/v2.0/token", e.token)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

func (e *fakeEntra) issuer() string { return e.srv.URL + "/organizations/v2.0" }

func (e *fakeEntra) violate(format string, args ...any) {
	e.mu.Lock()
	e.violations = append(e.violations, fmt.Sprintf(format, args...))
	e.mu.Unlock()
}

func (e *fakeEntra) discovery(w http.ResponseWriter, _ *http.Request) {
	writeJSONReply(w, 200, map[string]any{
		"issuer":                                e.srv.URL + "/{tenantid}/v2.0",
		"authorization_endpoint":                e.srv.URL + "/organizations/oauth2/v2.0/authorize",
		"token_endpoint":                        e.srv.URL + "/organizations/oauth2/v2.0/token",
		"jwks_uri":                              e.srv.URL + "/common/discovery/v2.0/keys",
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
	})
}

func (e *fakeEntra) keys(w http.ResponseWriter, _ *http.Request) {
	enc := base64.RawURLEncoding.EncodeToString
	writeJSONReply(w, 200, map[string]any{"keys": []map[string]any{{"kty": "RSA", "use": "sig", "kid": "k1",
		"n": enc(e.key.N.Bytes()), "e": enc(big.NewInt(int64(e.key.E)).Bytes())}}})
}

func (e *fakeEntra) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	scopes := strings.Fields(q.Get("scope"))
	if q.Get("client_id") != entraAppID || q.Get("response_type") != "code" || q.Get("redirect_uri") != e.callback ||
		q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 || q.Get("state") == "" || q.Get("nonce") == "" ||
		!slices.Contains(scopes, "openid") || !slices.Contains(scopes, "offline_access") || q.Has("resource") || q.Has("client_secret") {
		e.violate("authorize query %v", q)
	}
	e.mu.Lock()
	authErr := e.authErr
	e.authErr = [2]string{}
	user := e.next
	back := url.Values{"state": {q.Get("state")}}
	if authErr[0] != "" {
		back.Set("error", authErr[0])
		back.Set("error_description", authErr[1])
	} else {
		code := randomB64(24)
		e.codes[code] = entraCode{user: user, challenge: q.Get("code_challenge"), nonce: q.Get("nonce")}
		back.Set("code", code)
		back.Set("session_state", "s1")
	}
	e.mu.Unlock()
	http.Redirect(w, r, q.Get("redirect_uri")+"?"+back.Encode(), http.StatusFound)
}

// token checks the exact form of a code exchange or refresh: the federated client assertion
// (the managed identity's token), no client secret, no resource.
func (e *fakeEntra) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	f := r.PostForm
	want := []string{"client_assertion", "client_assertion_type", "client_id", "grant_type"}
	switch f.Get("grant_type") {
	case "authorization_code":
		want = append(want, "code", "code_verifier", "redirect_uri")
	case "refresh_token":
		want = append(want, "refresh_token", "scope")
	}
	var keys []string
	for k, v := range f {
		keys = append(keys, k)
		if len(v) != 1 {
			e.violate("%s sent %d times", k, len(v))
		}
	}
	slices.Sort(keys)
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		e.violate("%s form has parameters %v, want exactly %v", f.Get("grant_type"), keys, want)
	}
	if _, _, ok := r.BasicAuth(); ok {
		e.violate("HTTP Basic client authentication sent")
	}
	if f.Get("client_id") != entraAppID || f.Get("client_assertion_type") != jwtBearer || !e.mi.issuedToken(f.Get("client_assertion")) {
		e.violate("client authentication: client_id %q, assertion type %q, assertion is an issued MI token: %v",
			f.Get("client_id"), f.Get("client_assertion_type"), e.mi.issuedToken(f.Get("client_assertion")))
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if te := e.tokenErr; te[0] != "" {
		e.tokenErr = [2]string{}
		num, _ := strconv.Atoi(strings.TrimPrefix(strings.SplitN(te[1], ":", 2)[0], "AADSTS"))
		writeJSONReply(w, http.StatusBadRequest, map[string]any{"error": te[0], "error_description": te[1] + "\r\nTrace ID: 0000\r\nCorrelation ID: 1111\r\nTimestamp: 2026-11-27 00:00:00Z",
			"error_codes": []int{num}, "timestamp": "2026-11-27 00:00:00Z", "trace_id": "0000", "correlation_id": "1111"})
		return
	}
	var user, nonce string
	switch f.Get("grant_type") {
	case "authorization_code":
		e.exchanges++
		c, ok := e.codes[f.Get("code")]
		delete(e.codes, f.Get("code"))
		sum := sha256.Sum256([]byte(f.Get("code_verifier")))
		if !ok || base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge || f.Get("redirect_uri") != e.callback {
			writeJSONReply(w, 400, map[string]any{"error": "invalid_grant", "error_description": "AADSTS70000: The provided value for the 'code' parameter is not valid."})
			return
		}
		user, nonce = c.user, c.nonce
	case "refresh_token":
		e.refreshes++
		var ok bool
		user, ok = e.refresh[f.Get("refresh_token")]
		delete(e.refresh, f.Get("refresh_token"))
		if sc := strings.Fields(f.Get("scope")); !ok || !slices.Contains(sc, "openid") || !slices.Contains(sc, "offline_access") {
			writeJSONReply(w, 400, map[string]any{"error": "invalid_grant", "error_description": "AADSTS9002313: Invalid request."})
			return
		}
	default:
		writeJSONReply(w, 400, map[string]any{"error": "unsupported_grant_type"})
		return
	}
	u := e.users[user]
	rt := "entra-rt-" + randomB64(16)
	e.refresh[rt] = user
	writeJSONReply(w, 200, map[string]any{"token_type": "Bearer", "scope": "openid profile offline_access User.Read", "expires_in": 3600,
		"ext_expires_in": 3600, "access_token": "entra-at-" + randomB64(16), "refresh_token": rt, "id_token": e.idToken(u, nonce)})
}

func (e *fakeEntra) idToken(u *entraUser, nonce string) string {
	now := time.Now()
	c := map[string]any{"ver": "2.0", "iss": e.srv.URL + "/" + u.tid + "/v2.0", "aud": entraAppID, "sub": "pairwise-" + u.oid,
		"oid": u.oid, "tid": u.tid, "name": "User " + u.oid, "preferred_username": u.upn,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	if nonce != "" {
		c["nonce"] = nonce
	}
	if len(u.roles) > 0 {
		c["roles"] = u.roles
	}
	if len(u.groups) > 0 {
		c["groups"] = u.groups
	}
	if u.overage {
		c["_claim_names"] = map[string]string{"groups": "src1"}
		c["_claim_sources"] = map[string]any{"src1": map[string]string{"endpoint": "https://graph.microsoft.com/v1.0/users/" + u.oid + "/getMemberObjects"}}
	}
	return signRS256(e.key, c)
}

func signRS256(key *rsa.PrivateKey, claims map[string]any) string {
	enc := base64.RawURLEncoding.EncodeToString
	h, _ := json.Marshal(map[string]string{"alg": "RS256", "kid": "k1", "typ": "JWT"})
	p, _ := json.Marshal(claims)
	in := enc(h) + "." + enc(p)
	sum := sha256.Sum256([]byte(in))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		panic(err)
	}
	return in + "." + enc(sig)
}

// miEndpoint is the loopback managed-identity endpoint (App Service contract, api-version
// 2019-08-01), issuing tokens for api://AzureADTokenExchange to the gateway's UAMI.
type miEndpoint struct {
	srv        *httptest.Server
	mu         sync.Mutex
	issued     map[string]bool
	violations []string
}

func newMIEndpoint(t *testing.T) *miEndpoint {
	m := &miEndpoint{issued: map[string]bool{}}
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if r.Method != http.MethodGet || r.URL.Path != "/msi/token" || r.Header.Get("X-IDENTITY-HEADER") != miHeader ||
			q.Get("api-version") != "2019-08-01" || q.Get("resource") != "api://AzureADTokenExchange" || q.Get("client_id") != entraUAMI {
			m.mu.Lock()
			m.violations = append(m.violations, fmt.Sprintf("MI request %s %v header ok %v", r.URL.Path, q, r.Header.Get("X-IDENTITY-HEADER") == miHeader))
			m.mu.Unlock()
			writeJSONReply(w, 400, map[string]any{"error": "invalid_request"})
			return
		}
		exp := time.Now().Add(time.Hour).Unix()
		tok := "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(`{"aud":"fb60f99c-7a34-4190-8149-302f77469936","sub":"uami-principal","exp":`+strconv.FormatInt(exp, 10)+`}`)) + "." + randomB64(32)
		m.mu.Lock()
		m.issued[tok] = true
		m.mu.Unlock()
		writeJSONReply(w, 200, map[string]any{"access_token": tok, "expires_on": strconv.FormatInt(exp, 10),
			"resource": "api://AzureADTokenExchange", "token_type": "Bearer", "client_id": entraUAMI})
	}))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *miEndpoint) issuedToken(tok string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return tok != "" && m.issued[tok]
}

func randomB64(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func writeJSONReply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// entraStack is the gateway with its Entra stand-in, identity endpoint, Redis and a stub
// function app.
type entraStack struct {
	URL, Metrics string
	Entra        *fakeEntra
	MI           *miEndpoint
	Gateway      *harness.Gateway
	Redis        *harness.Redis
	clientID     string
	redirect     string
}

func startEntraStack(t *testing.T) *entraStack {
	t.Helper()
	mi := newMIEndpoint(t)
	entra := newFakeEntra(t, mi)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("x-functions-key") == "" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"stub","version":"1"}}}`)
	}))
	t.Cleanup(backend.Close)
	rds := harness.StartRedis(t)
	port := harness.FreePort(t)
	public := "http://127.0.0.1:" + strconv.Itoa(port)
	entra.callback = public + "/oauth-callback"
	g := harness.StartGateway(t, harness.GatewayOptions{
		Port: port, BackendURL: backend.URL, FunctionKey: harness.NewFunctionKey(t), RedisURL: rds.URL(),
		Args: []string{"--upstream-issuer", entra.issuer(), "--upstream-client-id", entraAppID, "--upstream-fic-client-id", entraUAMI,
			"--upstream-scopes", "User.Read", "--allowed-tenants", tenantHome, "--required-roles", "MCP.User," + groupMCP,
			"--allowed-email-domains", "contoso.com"},
		Env: []string{"IDENTITY_ENDPOINT=" + mi.srv.URL + "/msi/token", "IDENTITY_HEADER=" + miHeader,
			"MCPGATE_UPSTREAM_CLIENT_SECRET=", "AZURE_CLIENT_ID="},
	})
	harness.WaitHTTP(t, g.Process, public+"/.well-known/oauth-authorization-server", 20*time.Second)
	s := &entraStack{URL: public, Metrics: g.Metrics, Entra: entra, MI: mi, Gateway: g, Redis: rds,
		redirect: "http://127.0.0.1:" + strconv.Itoa(harness.FreePort(t)) + "/callback"}
	c := newCookieClient(t)
	resp, b := c.do(http.MethodPost, public+"/register", strings.NewReader(`{"client_name":"entra e2e","redirect_uris":["`+s.redirect+`"],"token_endpoint_auth_method":"none"}`), "Content-Type", "application/json")
	expectStatus(t, resp, b, 201)
	s.clientID, _ = decodeJSON(t, b)["client_id"].(string)
	return s
}

func (s *entraStack) addUser(name string, u entraUser) {
	s.Entra.mu.Lock()
	s.Entra.users[name] = &u
	s.Entra.mu.Unlock()
}

// signIn runs /authorize → consent → the IdP → /oauth-callback as user and returns the
// callback's response, its body, the client state and the PKCE verifier.
func (s *entraStack) signIn(t *testing.T, user string) (*http.Response, string, string, string) {
	t.Helper()
	s.Entra.mu.Lock()
	s.Entra.next = user
	s.Entra.mu.Unlock()
	c := newCookieClient(t)
	verifier, challenge := pkcePair()
	state := "st-" + randomB64(6)
	q := url.Values{"response_type": {"code"}, "client_id": {s.clientID}, "redirect_uri": {s.redirect}, "code_challenge": {challenge},
		"code_challenge_method": {"S256"}, "state": {state}, "resource": {s.URL + "/mcp"}, "scope": {"mcp:tools offline_access"}}
	resp, b := c.get(s.URL + "/authorize?" + q.Encode())
	expectStatus(t, resp, b, 302)
	resp, b = c.get(locationOf(t, resp).String())
	expectStatus(t, resp, b, 200)
	form := url.Values{"request": {unescapeAttr(formRequest.FindStringSubmatch(b)[1])}, "csrf": {unescapeAttr(formCSRF.FindStringSubmatch(b)[1])}, "action": {"allow"}}
	resp, b = c.postForm(s.URL+"/consent", form, "Origin", s.URL, "Sec-Fetch-Site", "same-origin")
	expectStatus(t, resp, b, 303)
	idp := locationOf(t, resp)
	if !strings.HasPrefix(idp.String(), s.Entra.srv.URL+"/organizations/oauth2/v2.0/authorize?") {
		t.Fatalf("consent → %s", idp)
	}
	resp, b = c.get(idp.String())
	expectStatus(t, resp, b, 302)
	cb := locationOf(t, resp)
	if !strings.HasPrefix(cb.String(), s.URL+"/oauth-callback?") {
		t.Fatalf("IdP → %s", cb)
	}
	resp, b = c.get(cb.String())
	return resp, b, state, verifier
}

// login signs user in and redeems the code: access and refresh token.
func (s *entraStack) login(t *testing.T, user string) (string, string) {
	t.Helper()
	resp, b, state, verifier := s.signIn(t, user)
	expectStatus(t, resp, b, 302)
	back := locationOf(t, resp)
	if back.Query().Get("state") != state || back.Query().Get("code") == "" {
		t.Fatalf("callback → %s", back)
	}
	resp, b = newCookieClient(t).postForm(s.URL+"/token", url.Values{"grant_type": {"authorization_code"}, "code": {back.Query().Get("code")},
		"redirect_uri": {s.redirect}, "client_id": {s.clientID}, "code_verifier": {verifier}, "resource": {s.URL + "/mcp"}})
	expectStatus(t, resp, b, 200)
	tok := decodeJSON(t, b)
	at, _ := tok["access_token"].(string)
	rt, _ := tok["refresh_token"].(string)
	if at == "" || rt == "" {
		t.Fatalf("token response %v", tok)
	}
	return at, rt
}

func (s *entraStack) refresh(t *testing.T, rt string) (int, map[string]any) {
	t.Helper()
	resp, b := newCookieClient(t).postForm(s.URL+"/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {s.clientID}})
	return resp.StatusCode, decodeJSON(t, b)
}

func (s *entraStack) mcp(t *testing.T, token string) int {
	t.Helper()
	return (&oauthStack{URL: s.URL}).mcpStatus(t, token)
}

// metric returns the value of the sample of name whose labels include all of labels
// ("k=v" pairs), or 0.
func (s *entraStack) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get(s.Metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			k, v, _ := strings.Cut(l, "=")
			ok = ok && strings.Contains(line, k+`="`+v+`"`)
		}
		if ok {
			f, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			return f
		}
	}
	return 0
}

func (s *entraStack) checkForms(t *testing.T) {
	t.Helper()
	s.Entra.mu.Lock()
	defer s.Entra.mu.Unlock()
	s.MI.mu.Lock()
	defer s.MI.mu.Unlock()
	if len(s.Entra.violations) > 0 || len(s.MI.violations) > 0 {
		t.Fatalf("requests the real services would refuse:\n%s", strings.Join(append(s.Entra.violations, s.MI.violations...), "\n"))
	}
}

func TestEntraFederatedCredentialPolicyAndErrors(t *testing.T) {
	s := startEntraStack(t)
	s.addUser("ann", entraUser{tid: tenantHome, oid: "a0000000-0000-0000-0000-0000000000a1", upn: "ann@contoso.com", roles: []string{"MCP.User"}})

	var annAT string // a live session of ann's, for the sessions command at the end
	t.Run("federated credential on exchange and refresh", func(t *testing.T) {
		at, rt := s.login(t, "ann")
		if st := s.mcp(t, at); st != 200 {
			t.Fatalf("/mcp = %d", st)
		}
		st, tok := s.refresh(t, rt)
		if st != 200 || tok["access_token"] == nil {
			t.Fatalf("refresh = %d %v", st, tok)
		}
		annAT, _ = tok["access_token"].(string)
		s.checkForms(t)
		s.Entra.mu.Lock()
		ex, rf := s.Entra.exchanges, s.Entra.refreshes
		s.Entra.mu.Unlock()
		if ex < 1 || rf < 1 || len(s.MI.issued) < 1 {
			t.Fatalf("exchanges %d refreshes %d MI tokens %d", ex, rf, len(s.MI.issued))
		}
	})

	t.Run("policy at the callback", func(t *testing.T) {
		users := map[string]entraUser{
			"by-group":     {tid: tenantHome, oid: "b0000000-0000-0000-0000-0000000000b1", upn: "bo@contoso.com", groups: []string{"x", groupMCP}},
			"other-tenant": {tid: tenantOther, oid: "c0000000-0000-0000-0000-0000000000c1", upn: "cy@contoso.com", roles: []string{"MCP.User"}},
			"no-role":      {tid: tenantHome, oid: "d0000000-0000-0000-0000-0000000000d1", upn: "di@contoso.com", roles: []string{"Reader"}},
			"overage":      {tid: tenantHome, oid: "e0000000-0000-0000-0000-0000000000e1", upn: "ed@contoso.com", overage: true},
			"other-domain": {tid: tenantHome, oid: "f0000000-0000-0000-0000-0000000000f1", upn: "fay@fabrikam.com", roles: []string{"MCP.User"}},
		}
		for name, u := range users {
			s.addUser(name, u)
		}
		rows := []struct {
			user, reason, title string
		}{
			{"by-group", "", ""},
			{"other-tenant", "tenant", "Your organization is not allowed here"},
			{"no-role", "role", "You do not have the required role"},
			{"overage", "groups_overage", "Your group memberships could not be checked"},
			{"other-domain", "domain", "Your e-mail domain is not allowed here"},
		}
		for _, r := range rows {
			t.Run(r.user, func(t *testing.T) {
				resp, b, state, _ := s.signIn(t, r.user)
				if r.reason == "" {
					expectStatus(t, resp, b, 302)
					if locationOf(t, resp).Query().Get("code") == "" {
						t.Fatalf("admitted user got %s", locationOf(t, resp))
					}
					return
				}
				expectStatus(t, resp, b, 403)
				if !strings.Contains(b, r.title) || !strings.Contains(b, users[r.user].upn) || !strings.Contains(b, "error=access_denied") ||
					!strings.Contains(b, "state="+state) || strings.Contains(b, "code=") {
					t.Fatalf("refusal page:\n%s", b)
				}
				if s.metric(t, "mcpgate_oauth_admission_refusals_total", "step=callback", "reason="+r.reason) < 1 ||
					s.metric(t, "mcpgate_policy_decisions_total", "outcome=refused", "reason="+r.reason) < 1 {
					t.Error("refusal not counted")
				}
				if !strings.Contains(s.Gateway.Output(), `"reason":"`+r.reason+`"`) {
					t.Error("refusal not logged with its reason")
				}
			})
		}
	})

	t.Run("role removed before refresh", func(t *testing.T) {
		s.addUser("gil", entraUser{tid: tenantHome, oid: "90000000-0000-0000-0000-000000000091", upn: "gil@contoso.com", roles: []string{"MCP.User"}})
		at, rt := s.login(t, "gil")
		if st := s.mcp(t, at); st != 200 {
			t.Fatalf("/mcp = %d", st)
		}
		s.Entra.mu.Lock()
		s.Entra.users["gil"].roles = nil
		s.Entra.mu.Unlock()
		st, tok := s.refresh(t, rt)
		if st != 400 || tok["error"] != "invalid_grant" {
			t.Fatalf("refresh without the role = %d %v", st, tok)
		}
		if !waitStatus(t, s, at, 401) {
			t.Fatal("session survived the refused refresh")
		}
		if s.metric(t, "mcpgate_oauth_admission_refusals_total", "step=refresh", "reason=role") < 1 {
			t.Error("refresh refusal not counted")
		}
		if st, _ := s.refresh(t, rt); st != 400 {
			t.Fatalf("second refresh = %d", st)
		}
	})

	t.Run("upstream errors at refresh", func(t *testing.T) {
		at, rt := s.login(t, "ann")
		// The gateway's own credential is refused: not the user's fault, the session stays.
		s.Entra.mu.Lock()
		s.Entra.tokenErr = [2]string{"invalid_client", "AADSTS700027: Client assertion failed signature validation."}
		s.Entra.mu.Unlock()
		st, tok := s.refresh(t, rt)
		if st != 503 || tok["error"] != "temporarily_unavailable" {
			t.Fatalf("refresh with a broken credential = %d %v", st, tok)
		}
		if s.mcp(t, at) != 200 {
			t.Fatal("session ended by the gateway's own misconfiguration")
		}
		if s.metric(t, "mcpgate_oauth_upstream_errors_total", "step=refresh", "error=invalid_client", "aadsts=AADSTS700027") < 1 {
			t.Error("refresh error not counted")
		}
		// The user is disabled: the session ends.
		s.Entra.mu.Lock()
		s.Entra.tokenErr = [2]string{"invalid_grant", "AADSTS50057: The user account is disabled."}
		s.Entra.mu.Unlock()
		st, tok = s.refresh(t, rt)
		if st != 400 || tok["error"] != "invalid_grant" {
			t.Fatalf("refresh of a disabled user = %d %v", st, tok)
		}
		if !waitStatus(t, s, at, 401) {
			t.Fatal("disabled user's session survived")
		}
	})

	t.Run("AADSTS error table at the callback", func(t *testing.T) {
		rows := []struct {
			at, code, desc string
			status         int
			client, text   string
		}{
			{"authorize", "access_denied", "AADSTS50105: Your administrator has configured the application to block users unless they are specifically granted ('assigned') access to the application.", 403, "access_denied", "not assigned"},
			{"authorize", "access_denied", "AADSTS53003: Access has been blocked by Conditional Access policies.", 403, "access_denied", "Conditional Access"},
			{"authorize", "interaction_required", "AADSTS50076: Due to a configuration change made by your administrator, you must use multi-factor authentication.", 403, "access_denied", "multi-factor"},
			{"authorize", "interaction_required", "AADSTS50079: Due to a configuration change made by your administrator, you are required to enroll in multi-factor authentication.", 403, "access_denied", "aka.ms/mfasetup"},
			{"authorize", "consent_required", "AADSTS65001: The user or administrator has not consented to use the application.", 403, "access_denied", "admin consent"},
			{"authorize", "access_denied", "AADSTS90094: The grant requires admin permission.", 403, "access_denied", "admin consent"},
			{"authorize", "invalid_request", "AADSTS50011: The redirect URI specified in the request does not match the redirect URIs configured for the application.", 502, "server_error", "/oauth-callback"},
			{"authorize", "unauthorized_client", "AADSTS700016: Application with identifier was not found in the directory.", 502, "server_error", "MCPGATE_UPSTREAM_CLIENT_ID"},
			{"authorize", "invalid_request", "AADSTS9010010: The resource parameter provided in the request doesn't match with the requested scopes.", 502, "server_error", "resource"},
			{"authorize", "invalid_request", "AADSTS50020: User account from identity provider does not exist in tenant.", 403, "access_denied", "guest"},
			{"authorize", "temporarily_unavailable", "AADSTS90033: A transient error has occurred. Please try again.", 503, "temporarily_unavailable", "Try again"},
			{"authorize", "access_denied", "AADSTS9999999: Something new.", 403, "access_denied", "AADSTS9999999"},
			{"token", "invalid_client", "AADSTS700027: Client assertion failed signature validation.", 502, "server_error", "api://AzureADTokenExchange"},
			{"token", "invalid_client", "AADSTS70021: No matching federated identity record found for presented assertion.", 502, "server_error", "principal (object) id"},
			{"token", "invalid_client", "AADSTS700024: Client assertion is not within its valid time range.", 502, "server_error", "clock"},
			{"token", "invalid_client", "AADSTS7000215: Invalid client secret provided.", 502, "server_error", "MCPGATE_UPSTREAM_CLIENT_SECRET"},
			{"token", "invalid_client", "AADSTS7000222: The provided client secret keys are expired.", 502, "server_error", "does not expire"},
			{"token", "invalid_grant", "AADSTS50057: The user account is disabled.", 403, "access_denied", "disabled"},
			{"token", "invalid_grant", "AADSTS50034: The user account does not exist in the directory.", 403, "access_denied", "does not exist"},
			{"token", "invalid_grant", "AADSTS70008: The provided authorization code or refresh token has expired due to inactivity.", 502, "server_error", "Connect again"},
			{"token", "invalid_grant", "AADSTS50173: The provided grant has expired due to it being revoked.", 502, "server_error", "revoked"},
		}
		for _, r := range rows {
			aadsts := strings.SplitN(r.desc, ":", 2)[0]
			t.Run(r.at+" "+aadsts, func(t *testing.T) {
				s.Entra.mu.Lock()
				if r.at == "authorize" {
					s.Entra.authErr = [2]string{r.code, r.desc}
				} else {
					s.Entra.tokenErr = [2]string{r.code, r.desc}
				}
				s.Entra.mu.Unlock()
				resp, b, state, _ := s.signIn(t, "ann")
				expectStatus(t, resp, b, r.status)
				if !strings.Contains(b, aadsts) || !strings.Contains(b, r.text) || !strings.Contains(b, "error="+r.client) ||
					!strings.Contains(b, "state="+state) || !strings.Contains(b, `id="return"`) {
					t.Fatalf("page for %s:\n%s", aadsts, b)
				}
				label := aadsts
				if aadsts == "AADSTS9999999" {
					label = "other"
				}
				if s.metric(t, "mcpgate_oauth_upstream_errors_total", "step=callback", "error="+r.code, "aadsts="+label) < 1 {
					t.Errorf("no metric for %s", aadsts)
				}
				if !strings.Contains(s.Gateway.Output(), `"aadsts":"`+aadsts+`"`) {
					t.Errorf("no log field for %s", aadsts)
				}
			})
		}
		// A user who declined consent goes straight back to the client.
		s.Entra.mu.Lock()
		s.Entra.authErr = [2]string{"access_denied", "AADSTS65004: User declined to consent to access the app."}
		s.Entra.mu.Unlock()
		resp, b, state, _ := s.signIn(t, "ann")
		expectStatus(t, resp, b, 302)
		if back := locationOf(t, resp); back.Query().Get("error") != "access_denied" || back.Query().Get("state") != state {
			t.Fatalf("declined → %s", back)
		}
	})

	t.Run("sessions revoke ends sessions everywhere", func(t *testing.T) {
		// (No new sign-in: /authorize allows 30 a minute per address, and the table used them.)
		at := annAT
		if s.mcp(t, at) != 200 {
			t.Fatal("/mcp before revoke")
		}
		bin := harness.BuildBinary(t, "github.com/mcpgate/mcpgate/gateway/cmd/mcpgate")
		out, err := exec.Command(bin, "sessions", "list", "--redis-url", s.Redis.URL(), "--user", "a0000000-0000-0000-0000-0000000000a1", "--json").CombinedOutput()
		if err != nil || !strings.Contains(string(out), `"client_id": "`+s.clientID+`"`) || strings.Contains(string(out), at) {
			t.Fatalf("sessions list: %v\n%s", err, out)
		}
		out, err = exec.Command(bin, "sessions", "revoke", "--redis-url", s.Redis.URL(), "--user", "a0000000-0000-0000-0000-0000000000a1").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "revoked") {
			t.Fatalf("sessions revoke: %v\n%s", err, out)
		}
		if !waitStatus(t, s, at, 401) {
			t.Fatal("revoked session still works")
		}
	})
	s.checkForms(t)
	// Nothing secret reached the logs: no managed-identity token, no Entra token.
	logs := s.Gateway.Output()
	s.MI.mu.Lock()
	defer s.MI.mu.Unlock()
	for tok := range s.MI.issued {
		if strings.Contains(logs, tok) {
			t.Error("a managed identity token was logged")
		}
	}
	if strings.Contains(logs, "entra-at-") || strings.Contains(logs, "entra-rt-") || strings.Contains(logs, "eyJ") {
		t.Error("an Entra token was logged")
	}
}

// waitStatus polls /mcp until it answers want (revocations reach the gateway's cache within a
// second by design; the bound here is generous for a loaded CI machine).
func waitStatus(t *testing.T, s *entraStack, token string, want int) bool {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if s.mcp(t, token) == want {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}
