package e2e

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/e2e/harness"
)

// TestUpstream runs gateway/internal/upstream's IdP tests against a real oidc-provider: the
// e2e module starts the IdP (it owns Node processes) and hands it to the package's tests,
// which it cannot import (internal), through MCPGATE_TEST_OIDC_FIXTURE.
func TestUpstream(t *testing.T) {
	redirect := "http://127.0.0.1:" + strconv.Itoa(harness.FreePort(t)) + "/oauth-callback"
	// A second client authenticates with a signed client assertion (private_key_jwt), the way
	// the gateway's federated credential does at Entra.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "kid": "assertion-1", "alg": "RS256", "use": "sig",
		"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
	}}})
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	idp := harness.StartOIDCProvider(t, harness.OIDCOptions{
		Clients: []harness.OIDCClient{
			{ID: "mcpgate-gateway", Secret: harness.RandomString(t, 24), RedirectURIs: []string{redirect}},
			{ID: "mcpgate-fic", AuthMethod: "private_key_jwt", JWKS: jwks, RedirectURIs: []string{redirect}},
		},
	})
	fx, _ := json.Marshal(map[string]string{
		"issuer": idp.Issuer, "client_id": idp.Clients[0].ID, "client_secret": idp.Clients[0].Secret,
		"redirect_uri": redirect, "control_token": idp.ControlToken(),
		"assertion_client_id": idp.Clients[1].ID, "assertion_key_id": "assertion-1",
		"assertion_key_pem": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
	})
	runGatewayTests(t, "./internal/upstream", "^TestIdP", "MCPGATE_TEST_OIDC_FIXTURE="+string(fx))
}

// runGatewayTests runs `go test` on a gateway package with extra environment and fails when
// the package's tests fail (or were all skipped).
func runGatewayTests(t *testing.T, pkg, run string, env ...string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "go", "test", "-count=1", "-v", "-run", run, pkg)
	cmd.Dir = filepath.Join(harness.RepoRoot(t), "gateway")
	cmd.Env = append(cmd.Environ(), env...)
	out, err := cmd.CombinedOutput()
	t.Logf("go test %s -run %s:\n%s", pkg, run, out)
	if err != nil {
		t.Fatalf("gateway tests failed: %v", err)
	}
	if !gatewayTestsPassed(string(out)) {
		t.Fatal("gateway tests did not run (all skipped?)")
	}
}

var (
	gatewayPassLine = regexp.MustCompile(`(?m)^\s*--- PASS: `)
	gatewaySkipLine = regexp.MustCompile(`(?m)^\s*--- SKIP: `)
)

// gatewayTestsPassed reports whether verbose go test output has passing tests and no skipped ones.
func gatewayTestsPassed(out string) bool {
	return gatewayPassLine.MatchString(out) && !gatewaySkipLine.MatchString(out)
}

// TestOIDCFixtureHarness checks the harness helpers other tests rely on: headless Login with
// login_hint, the __deny error redirect, the recorded requests and user disabling.
func TestOIDCFixtureHarness(t *testing.T) {
	idp := harness.StartOIDCProvider(t, harness.OIDCOptions{})
	c := idp.Clients[0]
	redirect := c.RedirectURIs[0]
	authURL := func(state string) string {
		q := url.Values{"response_type": {"code"}, "client_id": {c.ID}, "redirect_uri": {redirect},
			"scope": {"openid profile offline_access"}, "state": {state}, "nonce": {"n-" + state},
			"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
		return idp.Issuer + "/auth?" + q.Encode()
	}
	cb := idp.Login(t, nil, authURL("s1"), "alice", redirect)
	if cb.Query().Get("code") == "" || cb.Query().Get("state") != "s1" {
		t.Fatalf("callback = %s", cb.Redacted())
	}
	cb = idp.Login(t, nil, authURL("s2"), "__deny", redirect)
	if cb.Query().Get("error") != "access_denied" || cb.Query().Get("state") != "s2" {
		t.Fatalf("deny callback = %v", cb.Query())
	}
	idp.DisableUser(t, "bob")
	cb = idp.Login(t, nil, authURL("s3"), "bob", redirect)
	if cb.Query().Get("error") != "access_denied" {
		t.Fatalf("disabled user signed in: %v", cb.Query())
	}
	idp.EnableUser(t, "bob")
	cb = idp.Login(t, nil, authURL("s4"), "bob", redirect)
	if cb.Query().Get("code") == "" {
		t.Fatalf("re-enabled user: %v", cb.Query())
	}
	auths := idp.Authorizations(t)
	if len(auths) != 4 || auths[0].Get("state") != "s1" || auths[0].Get("login_hint") != "alice" || auths[0].Has("prompt") {
		t.Errorf("authorizations = %v", auths)
	}
	// Without PKCE the IdP refuses (PKCE required).
	q := url.Values{"response_type": {"code"}, "client_id": {c.ID}, "redirect_uri": {redirect}, "scope": {"openid"}, "state": {"s5"}}
	cb = idp.Login(t, nil, idp.Issuer+"/auth?"+q.Encode(), "alice", redirect)
	if cb.Query().Get("error") != "invalid_request" {
		t.Errorf("authorization without PKCE: %v", cb.Query())
	}
	// The form a browser sees: GET the interaction page, POST the chosen user.
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(authURL("s6"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	page, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err = hc.Get(page.String())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `id="signin"`) {
		t.Fatalf("interaction page %d: %s", resp.StatusCode, body)
	}
	resp, err = hc.PostForm(page.String()+"/login", url.Values{"login": {"alice"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	next, _ := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(next.String(), idp.Issuer+"/auth/") {
		t.Fatalf("form login: %d → %s", resp.StatusCode, next)
	}
	resp, err = hc.Get(next.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, redirect+"?code=") {
		t.Fatalf("after form login: %d %q", resp.StatusCode, loc)
	}

	if len(idp.TokenRequests(t)) != 0 {
		t.Error("token requests recorded without any")
	}
}
