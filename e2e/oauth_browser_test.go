package e2e

import (
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/e2e/harness"
)

// TestOAuthConsentBrowser drives the consent page in headless Chromium against the real IdP:
// Allow (the CSP form-action lets the redirect chain through to the client, the __Host- cookies
// work on http://127.0.0.1, a remembered consent skips the page next time) and Deny
// (access_denied back to the client). Screenshots go to e2e/artifacts/.
func TestOAuthConsentBrowser(t *testing.T) {
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		t.Fatal("chromium is not installed: run `make deps`")
	}
	s := startOAuthStack(t, oauthStackOptions{autoLogin: "alice"})
	// The client's redirect URI: a loopback listener that records what it receives.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan url.Values, 8)
	cb := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.URL.Query()
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<!doctype html><title>done</title><p>You can close this window."))
	})}
	go func() { _ = cb.Serve(l) }()
	t.Cleanup(func() { _ = cb.Close() })
	redirect := "http://" + l.Addr().String() + "/callback"

	c := newCookieClient(t)
	resp, b := c.do(http.MethodPost, s.URL+"/register", strings.NewReader(`{"client_name":"Browser <e2e>","client_uri":"https://client.example/","redirect_uris":["`+redirect+`"],"token_endpoint_auth_method":"none"}`), "Content-Type", "application/json")
	expectStatus(t, resp, b, 201)
	clientID := decodeJSON(t, b)["client_id"].(string)
	artifacts := filepath.Join(harness.E2EDir(t), "artifacts")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	authorize := func(state string) (string, string) {
		v, ch := pkcePair()
		return s.URL + "/authorize?" + url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect},
			"code_challenge": {ch}, "code_challenge_method": {"S256"}, "state": {state}, "resource": {s.URL + "/mcp"}}.Encode(), v
	}
	run := func(cfg map[string]any) map[string]any {
		j, _ := json.Marshal(cfg)
		out := runNodeJSON(t, "consent_browser.mjs", string(j))
		if out["ok"] != true {
			t.Fatalf("browser: %v", out)
		}
		return out
	}

	t.Run("allow", func(t *testing.T) {
		first, verifier := authorize("allow-1")
		again, _ := authorize("allow-2")
		out := run(map[string]any{"authorize": first, "action": "allow", "redirectPrefix": redirect, "again": again,
			"screenshot": filepath.Join(artifacts, "consent.png")})
		t.Logf("browser: %v", out)
		if out["consentURL"] != "/consent" || out["clientName"] != "Browser <e2e>" || out["unverified"] != true || !strings.HasPrefix(out["redirectHost"].(string), l.Addr().String()) {
			t.Errorf("consent page: %v", out)
		}
		fc, _ := out["flowCookie"].([]any)
		cc, _ := out["consentCookie"].([]any)
		if len(fc) != 1 || len(cc) != 1 || cc[0].(map[string]any)["secure"] != true || cc[0].(map[string]any)["httpOnly"] != true || cc[0].(map[string]any)["sameSite"] != "Lax" {
			t.Errorf("cookies: flow %v consent %v", fc, cc)
		}
		if v, _ := out["cspViolations"].([]any); len(v) > 0 {
			t.Errorf("CSP violations: %v", v)
		}
		final, _ := url.Parse(out["final"].(string))
		q := final.Query()
		if q.Get("state") != "allow-1" || q.Get("iss") != s.URL || q.Get("code") == "" {
			t.Fatalf("landed on %s", final)
		}
		if out["againSawConsent"] != false {
			t.Error("remembered consent did not skip the page")
		}
		if a, _ := url.Parse(out["again"].(string)); a.Query().Get("state") != "allow-2" || a.Query().Get("code") == "" {
			t.Errorf("second authorization landed on %s", a)
		}
		// The code from the browser flow redeems.
		resp, b := newCookieClient(t).postForm(s.URL+"/token", url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")},
			"redirect_uri": {redirect}, "client_id": {clientID}, "code_verifier": {verifier}})
		expectStatus(t, resp, b, 200)
	})
	t.Run("deny", func(t *testing.T) {
		u, _ := authorize("deny-1")
		out := run(map[string]any{"authorize": u, "action": "deny", "redirectPrefix": redirect,
			"screenshot": filepath.Join(artifacts, "consent-deny.png")})
		final, _ := url.Parse(out["final"].(string))
		if q := final.Query(); q.Get("error") != "access_denied" || q.Get("state") != "deny-1" || q.Get("iss") != s.URL || q.Has("code") {
			t.Fatalf("deny landed on %s", final)
		}
		if cc, _ := out["consentCookie"].([]any); len(cc) != 0 {
			t.Error("deny set a consent cookie")
		}
	})
}
