package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// OIDCUser is a test user of the fixture IdP.
type OIDCUser struct {
	ID     string   `json:"id"`
	Name   string   `json:"name,omitempty"`
	Email  string   `json:"email,omitempty"`
	Roles  []string `json:"roles,omitempty"`
	Groups []string `json:"groups,omitempty"`
}

// OIDCClient is a client registered at the fixture IdP. An empty Secret makes a public client
// (token_endpoint_auth_method none); AuthMethod defaults to client_secret_basic.
type OIDCClient struct {
	ID           string
	Secret       string
	RedirectURIs []string
	AuthMethod   string
	// JWKS is the client's public key set, for AuthMethod private_key_jwt (a client assertion,
	// as a federated credential sends).
	JWKS json.RawMessage
}

// OIDCOptions configure StartOIDCProvider.
type OIDCOptions struct {
	// Clients registered at the IdP. Default: one confidential client "mcpgate" with a random
	// secret and the redirect URI http://127.0.0.1:8000/oauth-callback.
	Clients []OIDCClient
	// Users who can sign in. Default: alice (role Reader) and bob.
	Users []OIDCUser
	// AutoLogin signs this user in without a form when the request has no login_hint.
	AutoLogin string
	// AccessTokenTTL and IDTokenTTL (default 5 minutes).
	AccessTokenTTL, IDTokenTTL time.Duration
}

// OIDC is a running oidc-provider fixture (e2e/fixtures/oidc/server.mjs).
type OIDC struct {
	*Process
	// Issuer is http://127.0.0.1:PORT, the discovery base.
	Issuer  string
	Port    int
	Clients []OIDCClient
	Users   []OIDCUser
	control string
}

// StartOIDCProvider starts the npm oidc-provider as a real upstream IdP on a free port of
// 127.0.0.1, with PKCE required, refresh tokens (offline_access, rotated) and the given
// clients and users. See server.mjs for how a headless test signs in (login_hint).
func StartOIDCProvider(t testing.TB, opts OIDCOptions) *OIDC {
	t.Helper()
	if len(opts.Clients) == 0 {
		opts.Clients = []OIDCClient{{ID: "mcpgate", Secret: RandomString(t, 24),
			RedirectURIs: []string{"http://127.0.0.1:8000/oauth-callback"}}}
	}
	if len(opts.Users) == 0 {
		opts.Users = []OIDCUser{
			{ID: "alice", Name: "Alice Example", Email: "alice@example.com", Roles: []string{"Reader"}},
			{ID: "bob", Name: "Bob Example", Email: "bob@example.org"},
		}
	}
	type clientJSON struct {
		ClientID     string          `json:"client_id"`
		ClientSecret string          `json:"client_secret,omitempty"`
		RedirectURIs []string        `json:"redirect_uris"`
		AuthMethod   string          `json:"token_endpoint_auth_method"`
		JWKS         json.RawMessage `json:"jwks,omitempty"`
	}
	var clients []clientJSON
	for _, c := range opts.Clients {
		m := c.AuthMethod
		if m == "" {
			m = "client_secret_basic"
			if c.Secret == "" {
				m = "none"
			}
		}
		clients = append(clients, clientJSON{c.ID, c.Secret, c.RedirectURIs, m, c.JWKS})
	}
	port := FreePort(t)
	control := RandomString(t, 16)
	cfg, err := json.Marshal(map[string]any{
		"port": port, "host": "127.0.0.1", "clients": clients, "users": opts.Users,
		"autoLogin": opts.AutoLogin, "controlToken": control,
		"accessTokenTTL": int(opts.AccessTokenTTL / time.Second), "idTokenTTL": int(opts.IDTokenTTL / time.Second),
	})
	if err != nil {
		t.Fatalf("harness: oidc config: %v", err)
	}
	NodeModules(t)
	script := filepath.Join(E2EDir(t), "fixtures", "oidc", "server.mjs")
	p := Start(t, Node22(t), []string{script}, Options{Dir: E2EDir(t), Env: []string{"OIDC_FIXTURE_CONFIG=" + string(cfg)}})
	issuer := "http://127.0.0.1:" + strconv.Itoa(port)
	WaitHTTP(t, p, issuer+"/.well-known/openid-configuration", 30*time.Second)
	return &OIDC{Process: p, Issuer: issuer, Port: port, Clients: opts.Clients, Users: opts.Users, control: control}
}

// RandomString returns n random bytes in hex.
func RandomString(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("harness: random: %v", err)
	}
	return hex.EncodeToString(b)
}

// ControlToken is the secret for the fixture's /__control endpoints (header X-Control-Token).
func (o *OIDC) ControlToken() string { return o.control }

func (o *OIDC) controlRequest(t testing.TB, method, path string, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, o.Issuer+path, nil)
	req.Header.Set("X-Control-Token", o.control)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("harness: oidc control %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("harness: oidc control %s: HTTP %d %s", path, resp.StatusCode, body)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("harness: oidc control %s: %v", path, err)
		}
	}
}

// DisableUser makes the user unable to sign in; refreshing their tokens fails (invalid_grant).
func (o *OIDC) DisableUser(t testing.TB, id string) {
	t.Helper()
	o.controlRequest(t, http.MethodPost, "/__control/users/"+url.PathEscape(id)+"/disable", nil)
}

// EnableUser undoes DisableUser.
func (o *OIDC) EnableUser(t testing.TB, id string) {
	t.Helper()
	o.controlRequest(t, http.MethodPost, "/__control/users/"+url.PathEscape(id)+"/enable", nil)
}

// Authorizations returns the query parameters of every authorization request the IdP received.
func (o *OIDC) Authorizations(t testing.TB) []url.Values {
	t.Helper()
	var raw []map[string]any
	o.controlRequest(t, http.MethodGet, "/__control/authorizations", &raw)
	out := make([]url.Values, 0, len(raw))
	for _, m := range raw {
		v := url.Values{}
		for k, x := range m {
			switch x := x.(type) {
			case string:
				v.Add(k, x)
			case []any:
				for _, s := range x {
					v.Add(k, fmt.Sprint(s))
				}
			}
		}
		out = append(out, v)
	}
	return out
}

// TokenRequest is what the IdP recorded about one token request: the grant type, the names
// (never the values) of the form parameters, and the HTTP status it answered.
type TokenRequest struct {
	GrantType string   `json:"grant_type"`
	Params    []string `json:"params"`
	Status    int      `json:"status"`
}

// TokenRequests returns every token request the IdP received.
func (o *OIDC) TokenRequests(t testing.TB) []TokenRequest {
	t.Helper()
	var out []TokenRequest
	o.controlRequest(t, http.MethodGet, "/__control/tokens", &out)
	return out
}

// Login follows the redirect chain that starts at startURL with a fresh cookie jar, signing in
// as user at the fixture (login_hint is added to the fixture's authorization request; "__deny"
// makes the IdP answer access_denied). It stops at the first redirect whose URL starts with
// stopPrefix and returns that URL (e.g. the gateway's /oauth-callback or a client redirect URI).
// client may be nil; its Jar is replaced by a fresh one on a copy.
func (o *OIDC) Login(t testing.TB, client *http.Client, startURL, user, stopPrefix string) *url.URL {
	t.Helper()
	u, err := o.FollowLogin(client, startURL, user, stopPrefix)
	if err != nil {
		t.Fatalf("harness: oidc login: %v", err)
	}
	return u
}

// FollowLogin is Login returning an error instead of failing the test.
func (o *OIDC) FollowLogin(client *http.Client, startURL, user, stopPrefix string) (*url.URL, error) {
	var c http.Client
	if client != nil {
		c = *client
	}
	jar, _ := cookiejar.New(nil)
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	next := startURL
	for range 20 {
		if strings.HasPrefix(next, stopPrefix) {
			return url.Parse(next)
		}
		if strings.HasPrefix(next, o.Issuer+"/auth?") && user != "" {
			u, err := url.Parse(next)
			if err != nil {
				return nil, err
			}
			q := u.Query()
			q.Set("login_hint", user)
			u.RawQuery = q.Encode()
			next = u.String()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, next, nil)
		resp, err := c.Do(req)
		if err != nil {
			cancel()
			return nil, err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		cancel()
		loc := resp.Header.Get("Location")
		if resp.StatusCode < 300 || resp.StatusCode > 399 || loc == "" {
			return nil, fmt.Errorf("GET %s: HTTP %d without redirect: %s", redact(next), resp.StatusCode, body)
		}
		lu, err := resp.Request.URL.Parse(loc)
		if err != nil {
			return nil, err
		}
		next = lu.String()
	}
	return nil, fmt.Errorf("too many redirects from %s", redact(startURL))
}

// redact drops the query of a URL for error messages (it may hold codes).
func redact(s string) string {
	if i := strings.IndexByte(s, '?'); i >= 0 {
		return s[:i] + "?…"
	}
	return s
}
