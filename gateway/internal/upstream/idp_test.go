package upstream

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc/oidctest"
	"golang.org/x/oauth2"
)

// fixtureEnv names the environment variable through which e2e/upstream_test.go hands a
// running oidc-provider fixture to these tests (the e2e module cannot import internal
// packages, so it runs this package's tests against the fixture it started).
const fixtureEnv = "MCPGATE_TEST_OIDC_FIXTURE"

type fixture struct {
	Issuer       string `json:"issuer"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	RedirectURI  string `json:"redirect_uri"`
	ControlToken string `json:"control_token"`
	// A client registered with private_key_jwt, for the client-assertion path.
	AssertionClientID string `json:"assertion_client_id"`
	AssertionKeyID    string `json:"assertion_key_id"`
	AssertionKeyPEM   string `json:"assertion_key_pem"`
}

func loadFixture(t *testing.T) fixture {
	t.Helper()
	raw := os.Getenv(fixtureEnv)
	if raw == "" {
		t.Skip("needs the oidc-provider fixture: run from e2e (go test ./e2e -run TestUpstream)")
	}
	var f fixture
	if err := json.Unmarshal([]byte(raw), &f); err != nil {
		t.Fatalf("%s: %v", fixtureEnv, err)
	}
	return f
}

func (f fixture) control(t *testing.T, method, path string, out any) {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), method, f.Issuer+path, nil)
	req.Header.Set("X-Control-Token", f.ControlToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("control %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("control %s: HTTP %d %s", path, resp.StatusCode, body)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("control %s: %v", path, err)
		}
	}
}

// login drives the fixture's sign-in for user (login_hint) from the authorization URL and
// returns the query of the redirect to our callback.
func (f fixture) login(t *testing.T, authURL, user string) url.Values {
	t.Helper()
	u, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("login_hint", user)
	u.RawQuery = q.Encode()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	next := u.String()
	for range 10 {
		if strings.HasPrefix(next, f.RedirectURI+"?") {
			cb, err := url.Parse(next)
			if err != nil {
				t.Fatal(err)
			}
			return cb.Query()
		}
		resp, err := c.Get(next)
		if err != nil {
			t.Fatalf("login: %v", err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if loc == "" {
			t.Fatalf("login: HTTP %d without redirect at %s: %s", resp.StatusCode, resp.Request.URL.Path, body)
		}
		l, err := resp.Request.URL.Parse(loc)
		if err != nil {
			t.Fatal(err)
		}
		next = l.String()
	}
	t.Fatal("login: too many redirects")
	return nil
}

func newFixtureProvider(t *testing.T, f fixture) *OIDC {
	t.Helper()
	o, err := New(t.Context(), Config{Issuer: f.Issuer, ClientID: f.ClientID, ClientSecret: f.ClientSecret,
		RedirectURL: f.RedirectURI, Scopes: []string{"email"}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return o
}

type flow struct{ state, nonce, verifier string }

func newFlow() flow {
	return flow{state: oauth2.GenerateVerifier(), nonce: oauth2.GenerateVerifier(), verifier: oauth2.GenerateVerifier()}
}

func asError(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not *upstream.Error", err, err)
	}
	return e
}

func TestIdPDiscoveryAndCodeFlow(t *testing.T) {
	f := loadFixture(t)
	o := newFixtureProvider(t, f)
	if o.Origin() != f.Issuer {
		t.Errorf("Origin() = %q, want %q", o.Origin(), f.Issuer)
	}
	fl := newFlow()
	authURL := o.AuthCodeURL(fl.state, fl.nonce, fl.verifier)
	if !strings.HasPrefix(authURL, f.Issuer+"/auth?") {
		t.Fatalf("auth URL %q is not the discovered authorization endpoint", authURL)
	}
	cb := f.login(t, authURL, "alice")
	if cb.Get("state") != fl.state || cb.Get("code") == "" || cb.Get("error") != "" {
		t.Fatalf("callback query %v: want our state and a code", cb)
	}
	if cb.Get("iss") != f.Issuer {
		t.Errorf("callback iss = %q, want %q", cb.Get("iss"), f.Issuer)
	}

	// The IdP saw exactly our authorization request: S256 challenge, nonce, our scopes, and
	// no `resource` (Entra rejects it).
	var auths []map[string]any
	f.control(t, http.MethodGet, "/__control/authorizations", &auths)
	last := auths[len(auths)-1]
	if _, ok := last["resource"]; ok {
		t.Errorf("authorization request carried resource: %v", last)
	}
	if last["code_challenge_method"] != "S256" || last["code_challenge"] != oauth2.S256ChallengeFromVerifier(fl.verifier) {
		t.Errorf("authorization request PKCE = %v / %v", last["code_challenge_method"], last["code_challenge"])
	}
	if last["nonce"] != fl.nonce || last["state"] != fl.state || last["response_type"] != "code" {
		t.Errorf("authorization request nonce/state/response_type wrong: %v", last)
	}
	if s, _ := last["scope"].(string); !slices.Equal(strings.Fields(s), []string{"openid", "profile", "offline_access", "email"}) {
		t.Errorf("scope = %q", s)
	}

	user, tok, err := o.Exchange(t.Context(), cb.Get("code"), fl.verifier, fl.nonce)
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	if user.Subject != "alice" || user.ObjectID != "alice" || user.Issuer != f.Issuer || user.Name != "Alice Example" ||
		user.Email != "alice@example.com" || user.Username != "alice@example.com" || !slices.Equal(user.Roles, []string{"Reader"}) {
		t.Errorf("user = %+v", user)
	}
	if tok.AccessToken == "" || tok.RefreshToken == "" || tok.IDToken == "" || tok.Expiry.Before(time.Now()) {
		t.Fatalf("tokens incomplete: at=%v rt=%v idt=%v exp=%v", tok.AccessToken != "", tok.RefreshToken != "", tok.IDToken != "", tok.Expiry)
	}
	if s := fmt.Sprintf("%v %+v %#v", tok, tok, tok); strings.Contains(s, tok.AccessToken) || strings.Contains(s, tok.RefreshToken) {
		t.Error("tokens printable with fmt")
	}

	// Refresh: new tokens (rotated refresh token), a re-verified ID token, same subject.
	// The old ID token is left out so that the identity can only come from the new,
	// re-verified one.
	noIDT := tok
	noIDT.IDToken = ""
	user2, tok2, err := o.Refresh(t.Context(), noIDT)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if user2.Subject != "alice" || user2.Name != "Alice Example" || !slices.Equal(user2.Roles, []string{"Reader"}) {
		t.Errorf("refreshed user = %+v", user2)
	}
	if tok2.AccessToken == "" || tok2.AccessToken == tok.AccessToken || tok2.RefreshToken == "" || tok2.RefreshToken == tok.RefreshToken {
		t.Error("refresh did not return new access and refresh tokens")
	}
	if tok2.IDToken == "" {
		t.Error("refresh did not return a new ID token")
	}
	// The rotated-away refresh token no longer works.
	if _, _, err := o.Refresh(t.Context(), tok); asError(t, err).Code != "invalid_grant" {
		t.Errorf("reused refresh token: %v", err)
	}

	// The code is single use at the IdP; replaying it revokes what it issued.
	if _, _, err := o.Exchange(t.Context(), cb.Get("code"), fl.verifier, fl.nonce); asError(t, err).Code != "invalid_grant" {
		t.Errorf("replayed code: %v", err)
	}
	if _, _, err := o.Refresh(t.Context(), tok2); asError(t, err).Code != "invalid_grant" {
		t.Errorf("refresh after code replay: %v", err)
	}

	var toks []struct {
		GrantType string   `json:"grant_type"`
		Params    []string `json:"params"`
	}
	f.control(t, http.MethodGet, "/__control/tokens", &toks)
	for _, tr := range toks {
		if slices.Contains(tr.Params, "resource") || slices.Contains(tr.Params, "client_secret") {
			t.Errorf("token request %s carried %v (resource never; secret only in Basic auth)", tr.GrantType, tr.Params)
		}
	}
}

func TestIdPWrongNonceAndVerifier(t *testing.T) {
	f := loadFixture(t)
	o := newFixtureProvider(t, f)

	fl := newFlow()
	cb := f.login(t, o.AuthCodeURL(fl.state, fl.nonce, fl.verifier), "alice")
	_, _, err := o.Exchange(t.Context(), cb.Get("code"), fl.verifier, "another-nonce-"+fl.nonce)
	if e := asError(t, err); e.Code != "invalid_id_token" || !strings.Contains(e.Description, "nonce") {
		t.Errorf("wrong nonce: %v", err)
	}

	fl = newFlow()
	cb = f.login(t, o.AuthCodeURL(fl.state, fl.nonce, fl.verifier), "alice")
	if _, _, err := o.Exchange(t.Context(), cb.Get("code"), oauth2.GenerateVerifier(), fl.nonce); asError(t, err).Code != "invalid_grant" {
		t.Errorf("wrong verifier: %v", err)
	}
}

func TestIdPDisabledUserLosesAccessAtRefresh(t *testing.T) {
	f := loadFixture(t)
	o := newFixtureProvider(t, f)
	fl := newFlow()
	cb := f.login(t, o.AuthCodeURL(fl.state, fl.nonce, fl.verifier), "bob")
	_, tok, err := o.Exchange(t.Context(), cb.Get("code"), fl.verifier, fl.nonce)
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	// Refresh works while bob is enabled …
	_, tok, err = o.Refresh(t.Context(), tok)
	if err != nil {
		t.Fatalf("Refresh of an enabled user: %v", err)
	}
	// … and fails once the IdP disables him.
	f.control(t, http.MethodPost, "/__control/users/bob/disable", nil)
	t.Cleanup(func() {
		f.control(t, http.MethodPost, "/__control/users/bob/enable", nil)
	})
	_, _, err = o.Refresh(t.Context(), tok)
	e := asError(t, err)
	if e.Code != "invalid_grant" {
		t.Fatalf("refresh of a disabled user: %v, want invalid_grant", err)
	}
	if title, _ := Explain(e); !strings.Contains(title, "no longer valid") {
		t.Errorf("Explain(invalid_grant) title = %q", title)
	}
}

func TestIdPErrorRedirect(t *testing.T) {
	f := loadFixture(t)
	o := newFixtureProvider(t, f)
	fl := newFlow()
	cb := f.login(t, o.AuthCodeURL(fl.state, fl.nonce, fl.verifier), "__deny")
	e := FromCallback(cb)
	if e == nil {
		t.Fatalf("callback %v has no error", cb)
	}
	if e.Code != "access_denied" || e.AADSTS != "AADSTS65004" || cb.Get("state") != fl.state {
		t.Errorf("callback error = %+v (state %q)", e, cb.Get("state"))
	}
	if title, hint := Explain(e); title == "" || hint == "" {
		t.Error("Explain gave nothing")
	}
}

func TestIdPDiscoveryFailure(t *testing.T) {
	f := loadFixture(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := New(ctx, Config{Issuer: f.Issuer + "/nope", ClientID: "x", ClientSecret: "y", RedirectURL: f.RedirectURI}); err == nil {
		t.Error("discovery of a wrong issuer succeeded")
	}
}

// TestIdPClientAssertion signs in with a client that authenticates by a signed assertion
// instead of a secret (as the federated credential does), through exchange and refresh.
func TestIdPClientAssertion(t *testing.T) {
	f := loadFixture(t)
	block, _ := pem.Decode([]byte(f.AssertionKeyPEM))
	if block == nil {
		t.Fatal("fixture has no assertion key")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	var calls int
	var o *OIDC
	assertion := func(context.Context) (string, error) {
		calls++
		now := time.Now()
		claims, _ := json.Marshal(map[string]any{"iss": f.AssertionClientID, "sub": f.AssertionClientID,
			"aud": o.oauth.Endpoint.TokenURL, "jti": oauth2.GenerateVerifier(), "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()})
		return oidctest.SignIDToken(key, f.AssertionKeyID, "RS256", string(claims)), nil
	}
	o, err = New(t.Context(), Config{Issuer: f.Issuer, ClientID: f.AssertionClientID, RedirectURL: f.RedirectURI,
		ClientAssertion: assertion})
	if err != nil {
		t.Fatal(err)
	}
	fl := newFlow()
	cb := f.login(t, o.AuthCodeURL(fl.state, fl.nonce, fl.verifier), "alice")
	user, tok, err := o.Exchange(t.Context(), cb.Get("code"), fl.verifier, fl.nonce)
	if err != nil {
		t.Fatalf("Exchange with assertion: %v", err)
	}
	if user.Subject != "alice" || tok.RefreshToken == "" {
		t.Fatalf("user %+v, refresh token %v", user, tok.RefreshToken != "")
	}
	if _, _, err := o.Refresh(t.Context(), tok); err != nil {
		t.Fatalf("Refresh with assertion: %v", err)
	}
	if calls != 2 {
		t.Errorf("assertion obtained %d times, want 2", calls)
	}
	var toks []struct {
		GrantType string   `json:"grant_type"`
		Params    []string `json:"params"`
		Status    int      `json:"status"`
	}
	f.control(t, http.MethodGet, "/__control/tokens", &toks)
	last := toks[len(toks)-1]
	if last.GrantType != "refresh_token" || last.Status != http.StatusOK || !slices.Contains(last.Params, "client_assertion") ||
		!slices.Contains(last.Params, "client_assertion_type") || slices.Contains(last.Params, "client_secret") {
		t.Errorf("last token request = %+v", last)
	}
}
