package upstream

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

func TestNewDevLoginLoopbackOnly(t *testing.T) {
	ok := [][2]string{
		{"http://127.0.0.1:8000", "127.0.0.1:8000"},
		{"http://[::1]:8000", "[::1]:8000"},
		{"http://localhost:8000", "localhost:8000"},
	}
	for _, c := range ok {
		if _, err := NewDevLogin(c[0], c[1]); err != nil {
			t.Errorf("NewDevLogin(%s, %s): %v", c[0], c[1], err)
		}
	}
	bad := [][2]string{
		{"http://127.0.0.1:8000", ":8000"},
		{"http://127.0.0.1:8000", "0.0.0.0:8000"},
		{"http://127.0.0.1:8000", "10.0.0.5:8000"},
		{"http://127.0.0.1:8000", "[::]:8000"},
		{"http://127.0.0.1:8000", "gateway.example:8000"},
		{"http://127.0.0.1:8000", "127.0.0.1"},
		{"https://mcp.example.com", "127.0.0.1:8000"},
		{"not a url", "127.0.0.1:8000"},
	}
	for _, c := range bad {
		if _, err := NewDevLogin(c[0], c[1]); err == nil {
			t.Errorf("NewDevLogin(%s, %s) allowed", c[0], c[1])
		}
	}
}

func TestDevLoginFlow(t *testing.T) {
	d, err := NewDevLogin("http://127.0.0.1:8000", "127.0.0.1:8000")
	if err != nil {
		t.Fatal(err)
	}
	h := d.Handler()
	verifier, nonce := oauth2.GenerateVerifier(), oauth2.GenerateVerifier()
	authURL := d.AuthCodeURL("state-1", nonce, verifier)
	if !strings.HasPrefix(authURL, "http://127.0.0.1:8000/dev-login?") {
		t.Fatalf("AuthCodeURL = %s", authURL)
	}

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, authURL, nil))
	body := rec.Body.String()
	if rec.Code != 200 || !strings.Contains(body, "DEVELOPMENT LOGIN") || !strings.Contains(body, "no real identity provider") {
		t.Fatalf("page %d: %s", rec.Code, body)
	}
	if rec.Header().Get("X-Frame-Options") != "DENY" || !strings.Contains(rec.Header().Get("Content-Security-Policy"), "frame-ancestors 'none'") ||
		rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("headers = %v", rec.Header())
	}

	// A missing state is refused.
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/dev-login?nonce=x&code_challenge=y", nil))
	if rec.Code != http.StatusBadRequest {
		t.Errorf("GET without state = %d", rec.Code)
	}

	u, _ := url.Parse(authURL)
	form := url.Values{"state": {"state-1"}, "nonce": {nonce}, "code_challenge": {u.Query().Get("code_challenge")},
		"name": {"Dana Dev"}, "email": {"dana@example.com"}}
	post := func(f url.Values, hdr map[string]string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/dev-login", strings.NewReader(f.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	// Cross-site posts are refused.
	for _, hdr := range []map[string]string{{"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}, {"Origin": "http://evil.example"}} {
		if rec := post(form, hdr); rec.Code != http.StatusForbidden {
			t.Errorf("POST with %v = %d", hdr, rec.Code)
		}
	}
	// Bad input re-renders the form, HTML-escaped.
	bad := url.Values{}
	for k, v := range form {
		bad[k] = v
	}
	bad.Set("name", "")
	if rec := post(bad, nil); rec.Code != http.StatusBadRequest {
		t.Errorf("empty name = %d", rec.Code)
	}
	bad.Set("name", "x")
	bad.Set("email", `"><script>alert(1)</script>`)
	if rec := post(bad, nil); rec.Code != http.StatusBadRequest || strings.Contains(rec.Body.String(), "<script>alert") {
		t.Errorf("bad email = %d %s", rec.Code, rec.Body.String())
	}

	rec = post(form, map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1:8000"})
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("POST = %d %s", rec.Code, rec.Body.String())
	}
	loc, _ := url.Parse(rec.Header().Get("Location"))
	if loc.Path != "/oauth-callback" || loc.Query().Get("state") != "state-1" || loc.Query().Get("code") == "" {
		t.Fatalf("redirect = %s", loc)
	}
	code := loc.Query().Get("code")

	// Wrong verifier fails and burns the code.
	if _, _, err := d.Exchange(t.Context(), code, oauth2.GenerateVerifier(), nonce); asError(t, err).Code != "invalid_grant" {
		t.Errorf("wrong verifier: %v", err)
	}
	if _, _, err := d.Exchange(t.Context(), code, verifier, nonce); asError(t, err).Code != "invalid_grant" {
		t.Errorf("reused code: %v", err)
	}

	// A fresh sign-in exchanges; same name → same stable id.
	rec = post(form, nil)
	loc, _ = url.Parse(rec.Header().Get("Location"))
	if _, _, err := d.Exchange(t.Context(), loc.Query().Get("code"), verifier, "other"); asError(t, err).Code != "invalid_id_token" {
		t.Errorf("wrong nonce: %v", err)
	}
	rec = post(form, nil)
	loc, _ = url.Parse(rec.Header().Get("Location"))
	user, tok, err := d.Exchange(t.Context(), loc.Query().Get("code"), verifier, nonce)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(user.ObjectID, "dev-") || user.Subject != user.ObjectID || user.Email != "dana@example.com" ||
		user.Name != "Dana Dev" || user.Issuer != "http://127.0.0.1:8000/dev-login" || tok.RefreshToken == "" {
		t.Errorf("user = %+v", user)
	}
	if devUser(d.Issuer(), "dana dev", "").ObjectID != user.ObjectID {
		t.Error("dev id not stable across sign-ins")
	}
	user2, tok2, err := d.Refresh(t.Context(), tok)
	if err != nil || user2.ObjectID != user.ObjectID || tok2.AccessToken == tok.AccessToken {
		t.Errorf("Refresh = %+v, %v", user2, err)
	}
	noID := tok
	noID.IDToken = ""
	if _, _, err := d.Refresh(t.Context(), noID); err == nil {
		t.Error("refresh without identity succeeded")
	}

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPut, "/dev-login", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("PUT = %d", rec.Code)
	}
}
