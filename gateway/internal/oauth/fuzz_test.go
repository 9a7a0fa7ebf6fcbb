package oauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzConsentCookie: parsing never panics, only signed values parse, and what parses
// re-encodes to something that parses to the same entries.
func FuzzConsentCookie(f *testing.F) {
	ring := newTestRing(f)
	now := time.Now()
	good := encodeConsent(ring, addConsent(nil, consentKey("c", "http://127.0.0.1:3000/cb"), now, time.Hour))
	for _, s := range []string{good, "", ".", "1...", "1.kid.AAAA.BBBB", good + "x", strings.Repeat("A", 2000), "1." + ring.ActiveID() + "..", csrfToken(ring, "req")} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		entries, ok := parseConsent(ring, v)
		if !ok {
			if len(entries) != 0 {
				t.Fatal("entries from an invalid cookie")
			}
		} else {
			again, ok := parseConsent(ring, encodeConsent(ring, entries))
			if !ok || len(again) != len(entries) {
				t.Fatal("round trip failed")
			}
		}
		_ = checkCSRF(ring, "req", v)
	})
}

// FuzzRegister sends arbitrary bodies through POST /register: never a 5xx, always JSON, and
// a 201 only with a client id.
func FuzzRegister(f *testing.F) {
	e := newEnvWithStore(f, newMemStore())
	for _, s := range []string{
		`{"redirect_uris":["http://127.0.0.1:3000/cb"],"token_endpoint_auth_method":"none"}`,
		`{"redirect_uris":["https://a.example/cb"],"application_type":"web","grant_types":["authorization_code"]}`,
		`{"redirect_uris":["com.example.app:/cb"],"client_name":"\u0000"}`,
		`[]`, `null`, `{`, `{"redirect_uris":[1]}`, `{"redirect_uris":["javascript:x"]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b string) {
		req := httptest.NewRequest(http.MethodPost, testPublic+"/register", strings.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		var m map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
			t.Fatalf("%d: not JSON: %s", rec.Code, rec.Body)
		}
		switch rec.Code {
		case http.StatusCreated:
			if id, _ := m["client_id"].(string); id == "" {
				t.Fatalf("201 without client_id: %s", rec.Body)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if m["error"] == nil {
				t.Fatalf("%d without error: %s", rec.Code, rec.Body)
			}
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	})
}

// FuzzTokenForm sends arbitrary form bodies to POST /token: never a 5xx, always a JSON OAuth
// error (no code exists, so nothing can succeed).
func FuzzTokenForm(f *testing.F) {
	e := newEnvWithStore(f, newMemStore())
	c := e.register(f, map[string]any{})
	for _, s := range []string{
		"grant_type=authorization_code&code=x&redirect_uri=http%3A%2F%2F127.0.0.1%3A3000%2Fcallback&client_id=" + c.ID + "&code_verifier=" + strings.Repeat("a", 43),
		"grant_type=refresh_token&refresh_token=x&client_id=" + c.ID,
		"grant_type=refresh_token&refresh_token=x&client_id=" + c.ID + "&resource=http%3A%2F%2F127.0.0.1%3A8000&scope=mcp%3Atools",
		"grant_type=client_credentials", "%zz", "a=b&a=c", "",
	} {
		f.Add(s, "")
		f.Add(s, "Basic "+b64.EncodeToString([]byte(c.ID+":x")))
	}
	f.Fuzz(func(t *testing.T, b, authz string) {
		req := httptest.NewRequest(http.MethodPost, testPublic+"/token", strings.NewReader(b))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if authz != "" && !strings.ContainsAny(authz, "\r\n") {
			req.Header.Set("Authorization", authz)
		}
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		var m oauthError
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil || m.Error == "" {
			t.Fatalf("%d: not an OAuth error: %s", rec.Code, rec.Body)
		}
		if rec.Code != 400 && rec.Code != 401 && rec.Code != 413 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	})
}

// FuzzAuthorizeQuery sends arbitrary query strings to /authorize: never a 5xx, and every
// redirect goes either to our consent page or to the registered redirect URI (no open
// redirect through any parameter).
func FuzzAuthorizeQuery(f *testing.F) {
	e := newEnvWithStore(f, newMemStore())
	c := e.register(f, map[string]any{"redirect_uris": []string{"http://127.0.0.1:3000/callback", "https://app.example/cb?x=1"}})
	_, ch := pkce()
	for _, extra := range []url.Values{nil, {"redirect_uri": {"https://app.example/cb?x=1"}}, {"state": {"a&b=c"}}, {"code_challenge_method": {"plain"}}, {"resource": {"https://evil.example"}}} {
		f.Add(strings.SplitN(authorizeURL(c, ch, extra), "?", 2)[1])
	}
	f.Add("client_id=" + c.ID + "&redirect_uri=http://127.0.0.1:9/callback%23@evil.example")
	f.Fuzz(func(t *testing.T, q string) {
		if strings.ContainsAny(q, " #\r\n\x00") {
			return // not a request line a server can receive
		}
		req := httptest.NewRequest(http.MethodGet, testPublic+"/authorize?x=1", nil)
		req.URL.RawQuery = q
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusFound:
			loc := rec.Header().Get("Location")
			ok := strings.HasPrefix(loc, "/consent?request=") || strings.HasPrefix(loc, "https://idp.example.test/authorize?") ||
				strings.HasPrefix(loc, "http://127.0.0.1:3000/callback?") || strings.HasPrefix(loc, "https://app.example/cb?x=1&")
			if !ok {
				t.Fatalf("open redirect to %q from %q", loc, q)
			}
			if strings.HasPrefix(loc, "http://127.0.0.1:3000/callback?") || strings.HasPrefix(loc, "https://app.example/cb?x=1&") {
				u, err := url.Parse(loc)
				if err != nil || u.Query().Get("iss") != testPublic || u.Query().Get("error") == "" || u.Host == "" {
					t.Fatalf("bad error redirect %q", loc)
				}
			}
		case http.StatusBadRequest, http.StatusRequestURITooLong:
			if rec.Header().Get("Location") != "" {
				t.Fatal("error page with Location")
			}
		default:
			t.Fatalf("status %d for %q", rec.Code, q)
		}
	})
}
