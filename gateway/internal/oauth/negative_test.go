package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/clients"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
)

// TestAuthorizeRefusals: problems with the client or redirect URI give an error page and no
// Location; problems after that go back to the redirect URI with error, state and iss.
func TestAuthorizeRefusals(t *testing.T) {
	e := newEnv(t)
	c := e.register(t, map[string]any{})
	_, ch := pkce()
	pages := map[string]url.Values{
		"unknown client":          {"client_id": {"nope"}},
		"missing client_id":       {"client_id": nil},
		"missing redirect_uri":    {"redirect_uri": nil},
		"repeated redirect_uri":   {"redirect_uri": {c.Redirect, "http://127.0.0.1:3000/other"}},
		"repeated client_id":      {"client_id": {c.ID, c.ID}},
		"unregistered path":       {"redirect_uri": {"http://127.0.0.1:3000/callbackx"}},
		"dot segments":            {"redirect_uri": {"http://127.0.0.1:3000/callback/../evil"}},
		"userinfo":                {"redirect_uri": {"http://127.0.0.1:3000@evil.example/callback"}},
		"other host":              {"redirect_uri": {"http://evil.example/callback"}},
		"other scheme":            {"redirect_uri": {"https://127.0.0.1:3000/callback"}},
		"fragment":                {"redirect_uri": {"http://127.0.0.1:3000/callback#x"}},
		"extra query":             {"redirect_uri": {"http://127.0.0.1:3000/callback?next=https://evil.example"}},
		"scheme-relative":         {"redirect_uri": {"//evil.example/callback"}},
		"backslash":               {"redirect_uri": {`http://127.0.0.1:3000\@evil.example/callback`}},
		"javascript":              {"redirect_uri": {"javascript:alert(1)"}},
		"other loopback name":     {"redirect_uri": {"http://localhost:3000/callback"}},
		"CIMD on loopback":        {"client_id": {"https://loopback.example.test/client.json"}},
		"CIMD on private address": {"client_id": {"https://private.example.test/client.json"}},
		"CIMD on link-local":      {"client_id": {"https://linklocal.example.test/client.json"}},
		"CIMD over http":          {"client_id": {"http://loopback.example.test/client.json"}},
	}
	for name, extra := range pages {
		t.Run(name, func(t *testing.T) {
			resp := newBrowser(e.h).get(authorizeURL(c, ch, extra))
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", resp.StatusCode)
			}
			if loc := resp.Header.Get("Location"); loc != "" {
				t.Fatalf("redirected to %q", loc)
			}
			if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || resp.Header.Get("X-Frame-Options") != "DENY" {
				t.Fatalf("not an error page: %v", resp.Header)
			}
		})
	}
	redirects := map[string]struct {
		extra url.Values
		err   string
	}{
		"plain PKCE":             {url.Values{"code_challenge_method": {"plain"}}, "invalid_request"},
		"no PKCE method":         {url.Values{"code_challenge_method": nil}, "invalid_request"},
		"no PKCE challenge":      {url.Values{"code_challenge": nil}, "invalid_request"},
		"short challenge":        {url.Values{"code_challenge": {"abc"}}, "invalid_request"},
		"implicit":               {url.Values{"response_type": {"token"}}, "unsupported_response_type"},
		"no response_type":       {url.Values{"response_type": nil}, "invalid_request"},
		"foreign resource":       {url.Values{"resource": {"https://graph.microsoft.com"}}, "invalid_target"},
		"other resource path":    {url.Values{"resource": {testPublic + "/admin"}}, "invalid_target"},
		"two resources":          {url.Values{"resource": {testPublic, testPublic + "/mcp"}}, "invalid_target"},
		"localhost resource":     {url.Values{"resource": {"http://localhost:8000/mcp"}}, "invalid_target"},
		"unknown scope":          {url.Values{"scope": {"mcp:tools openid"}}, "invalid_scope"},
		"repeated scope":         {url.Values{"scope": {"mcp:tools", "mcp:tools"}}, "invalid_request"},
		"state injection":        {url.Values{"state": {"x&code=evil&iss=https://evil.example"}, "response_type": {"token"}}, "unsupported_response_type"},
		"loopback port may vary": {url.Values{"redirect_uri": {"http://127.0.0.1:4567/callback"}, "scope": {"bad"}}, "invalid_scope"},
	}
	for name, tc := range redirects {
		t.Run(name, func(t *testing.T) {
			au := authorizeURL(c, ch, tc.extra)
			sent, _ := url.ParseQuery(strings.SplitN(au, "?", 2)[1])
			resp := newBrowser(e.h).get(au)
			wantStatus(t, resp, http.StatusFound)
			loc := location(t, resp)
			redirect := sent.Get("redirect_uri")
			if !strings.HasPrefix(loc.String(), redirect+"?") {
				t.Fatalf("redirected to %s, want %s", loc, redirect)
			}
			q := loc.Query()
			if q.Get("error") != tc.err || q.Get("iss") != testPublic || q.Get("state") != sent.Get("state") || q.Has("code") || len(q["iss"]) != 1 {
				t.Fatalf("error redirect %v, want error=%s", q, tc.err)
			}
		})
	}
	t.Run("trailing-slash origin resource is the origin", func(t *testing.T) {
		resp := newBrowser(e.h).get(authorizeURL(c, ch, url.Values{"resource": {testPublic + "/"}}))
		wantStatus(t, resp, http.StatusFound)
		if location(t, resp).Path != "/consent" {
			t.Fatal(location(t, resp))
		}
	})
	t.Run("too long state", func(t *testing.T) {
		resp := newBrowser(e.h).get(authorizeURL(c, ch, url.Values{"state": {strings.Repeat("s", 2000)}}))
		wantStatus(t, resp, http.StatusFound)
		if q := location(t, resp).Query(); q.Get("error") != "invalid_request" || q.Has("state") {
			t.Fatal(q)
		}
	})
	t.Run("client not registered for authorization_code", func(t *testing.T) {
		// A registry that returns a client without the grant (pre-registered ones can be so).
		fake := &stubRegistry{ClientRegistry: e.reg, client: &clients.Client{ID: "cc", RedirectURIs: []string{"https://app.example/cb"}, GrantTypes: []string{"refresh_token"}}}
		srv, err := New(Config{PublicURL: testPublic, Clients: fake, Grants: e.grants, Keys: e.keeper, Store: e.st, Upstream: e.idp})
		if err != nil {
			t.Fatal(err)
		}
		resp := newBrowser(srv.Handler()).get(authorizeURL(testClient{ID: "cc", Redirect: "https://app.example/cb"}, ch, nil))
		wantStatus(t, resp, http.StatusFound)
		if q := location(t, resp).Query(); q.Get("error") != "unauthorized_client" {
			t.Fatal(q)
		}
	})
}

// stubRegistry returns one fixed client (edge cases a real registry refuses to hold).
type stubRegistry struct {
	ClientRegistry
	client *clients.Client
	err    error
}

func (s *stubRegistry) Get(ctx context.Context, id string) (*clients.Client, error) {
	if s.err != nil {
		return nil, s.err
	}
	if id == s.client.ID {
		c := *s.client
		return &c, nil
	}
	return nil, clients.ErrNotFound
}

func TestConsentRefusals(t *testing.T) {
	e := newEnv(t)
	c := e.register(t, map[string]any{})
	// pending starts a flow in b and returns the consent form.
	pending := func(b *browser) url.Values {
		_, ch := pkce()
		resp := b.get(authorizeURL(c, ch, nil))
		return consentForm(t, b, location(t, resp))
	}
	post := func(b *browser, form url.Values, hdr ...string) *http.Response {
		if form.Get("action") == "" {
			form.Set("action", "allow")
		}
		return b.postForm(testPublic+"/consent", form, hdr...)
	}
	check := func(t *testing.T, resp *http.Response, status int) {
		t.Helper()
		wantStatus(t, resp, status)
		if loc := resp.Header.Get("Location"); loc != "" {
			t.Fatalf("refused consent redirected to %q", loc)
		}
		for _, ck := range resp.Cookies() {
			if ck.Name == "__Host-mcpgate-consent" {
				t.Fatal("refused consent set the consent cookie")
			}
		}
	}
	t.Run("missing CSRF", func(t *testing.T) {
		b := newBrowser(e.h)
		f := pending(b)
		f.Del("csrf")
		check(t, post(b, f, "Origin", testPublic), http.StatusForbidden)
	})
	t.Run("forged CSRF", func(t *testing.T) {
		b := newBrowser(e.h)
		f := pending(b)
		kid, _, _ := strings.Cut(f.Get("csrf"), ".")
		f.Set("csrf", kid+"."+b64.EncodeToString(make([]byte, 32)))
		check(t, post(b, f, "Origin", testPublic), http.StatusForbidden)
	})
	t.Run("CSRF of another request", func(t *testing.T) {
		b := newBrowser(e.h)
		f1, f2 := pending(b), pending(b)
		f1.Set("csrf", f2.Get("csrf"))
		check(t, post(b, f1, "Origin", testPublic), http.StatusForbidden)
	})
	t.Run("CSRF under an unknown key", func(t *testing.T) {
		b := newBrowser(e.h)
		f := pending(b)
		f.Set("csrf", csrfToken(newTestRing(t), f.Get("request")))
		check(t, post(b, f, "Origin", testPublic), http.StatusForbidden)
	})
	for name, hdr := range map[string][]string{
		"cross-origin":          {"Origin", "https://evil.example"},
		"null origin":           {"Origin", "null"},
		"other port":            {"Origin", "http://127.0.0.1:8001"},
		"cross-site fetch":      {"Sec-Fetch-Site", "cross-site"},
		"same-site fetch":       {"Sec-Fetch-Site", "same-site"},
		"cross-site, origin ok": {"Origin", testPublic, "Sec-Fetch-Site", "cross-site"},
	} {
		t.Run(name, func(t *testing.T) {
			b := newBrowser(e.h)
			f := pending(b)
			check(t, post(b, f, hdr...), http.StatusForbidden)
			// The refusal did not use up the request: the real page can still answer.
			wantStatus(t, post(b, f, "Origin", testPublic), http.StatusSeeOther)
		})
	}
	t.Run("no Origin, no fetch metadata (old browser)", func(t *testing.T) {
		b := newBrowser(e.h)
		wantStatus(t, post(b, pending(b)), http.StatusSeeOther)
	})
	t.Run("another browser posts a stolen form", func(t *testing.T) {
		f := pending(newBrowser(e.h))
		check(t, post(newBrowser(e.h), f, "Origin", testPublic), http.StatusForbidden)
	})
	t.Run("another browser opens the consent page", func(t *testing.T) {
		b := newBrowser(e.h)
		_, ch := pkce()
		loc := location(t, b.get(authorizeURL(c, ch, nil)))
		wantStatus(t, newBrowser(e.h).get(testPublic+loc.RequestURI()), http.StatusForbidden)
	})
	t.Run("replayed form", func(t *testing.T) {
		b := newBrowser(e.h)
		f := pending(b)
		wantStatus(t, post(b, f, "Origin", testPublic), http.StatusSeeOther)
		check(t, post(b, f, "Origin", testPublic), http.StatusBadRequest)
	})
	t.Run("bad action", func(t *testing.T) {
		b := newBrowser(e.h)
		f := pending(b)
		f.Set("action", "<script>alert(1)</script>")
		resp := post(b, f, "Origin", testPublic)
		check(t, resp, http.StatusBadRequest)
		if strings.Contains(body(t, resp), "<script>") {
			t.Fatal("action reflected unescaped")
		}
	})
	t.Run("unknown or forged request id", func(t *testing.T) {
		b := newBrowser(e.h)
		for _, q := range []string{"", "?request=nope", "?request=https://evil.example", "?request=a&request=b"} {
			resp := b.get(testPublic + "/consent" + q)
			check(t, resp, http.StatusBadRequest)
		}
	})
	t.Run("JSON body", func(t *testing.T) {
		b := newBrowser(e.h)
		req := httptest.NewRequest(http.MethodPost, testPublic+"/consent", strings.NewReader(`{"action":"allow"}`))
		req.Header.Set("Content-Type", "application/json")
		check(t, b.do(req), http.StatusUnsupportedMediaType)
	})
	t.Run("oversized form", func(t *testing.T) {
		b := newBrowser(e.h)
		f := pending(b)
		f.Set("pad", strings.Repeat("x", 10000))
		check(t, post(b, f, "Origin", testPublic), http.StatusBadRequest)
	})
}

func TestConsentCookieRefusals(t *testing.T) {
	e := newEnv(t)
	c := e.register(t, map[string]any{})
	b := newBrowser(e.h)
	_, ch := pkce()
	e.authorize(t, b, c, ch, nil) // consents
	good := b.cookies["__Host-mcpgate-consent"].Value
	skips := func(value string) bool {
		b2 := newBrowser(e.h)
		b2.cookies["__Host-mcpgate-consent"] = &http.Cookie{Name: "__Host-mcpgate-consent", Value: value}
		return location(t, b2.get(authorizeURL(c, ch, nil))).Host == "idp.example.test"
	}
	if !skips(good) {
		t.Fatal("valid consent cookie not honoured")
	}
	last := len(good) - 1
	flip := func(s string, i int) string {
		r := []byte(s)
		if r[i] == 'A' {
			r[i] = 'B'
		} else {
			r[i] = 'A'
		}
		return string(r)
	}
	parts := strings.Split(good, ".")
	other := encodeConsent(newTestRing(t), []consentEntry{{key: consentKey(c.ID, c.Redirect), at: time.Now().Unix()}})
	for name, v := range map[string]string{
		"tampered MAC":        flip(good, last),
		"tampered entries":    flip(good, len(parts[0])+len(parts[1])+3),
		"unsigned":            parts[0] + "." + parts[1] + "." + parts[2],
		"other key":           other,
		"unknown kid":         "1.nokid." + parts[2] + "." + parts[3],
		"other version":       "2" + good[1:],
		"other client":        encodeConsent(e.ring, []consentEntry{{key: consentKey("someone-else", c.Redirect), at: time.Now().Unix()}}),
		"expired entry":       encodeConsent(e.ring, []consentEntry{{key: consentKey(c.ID, c.Redirect), at: time.Now().Add(-31 * 24 * time.Hour).Unix()}}),
		"future entry":        encodeConsent(e.ring, []consentEntry{{key: consentKey(c.ID, c.Redirect), at: time.Now().Add(24 * time.Hour).Unix()}}),
		"sample's plain list": "WyJjbGllbnQ6aHR0cDovLzEyNy4wLjAuMTozMDAwL2NhbGxiYWNrIl0",
		"garbage":             "%%%...",
	} {
		if skips(v) {
			t.Errorf("%s: consent skipped", name)
		}
	}
}

func TestConsentCookieBounded(t *testing.T) {
	ring := newTestRing(t)
	now := time.Now()
	var entries []consentEntry
	for i := range 50 {
		entries = addConsent(entries, consentKey("client-"+strings.Repeat("x", i), "https://app.example/"+strings.Repeat("y", 1500)), now, DefaultConsentTTL)
	}
	if len(entries) != maxConsentEntries {
		t.Fatalf("%d entries kept", len(entries))
	}
	v := encodeConsent(ring, entries)
	if len(v) > 400 {
		t.Fatalf("cookie value is %d bytes", len(v))
	}
	got, ok := parseConsent(ring, v)
	if !ok || len(got) != maxConsentEntries || !hasConsent(got, consentKey("client-"+strings.Repeat("x", 49), "https://app.example/"+strings.Repeat("y", 1500)), now, DefaultConsentTTL) {
		t.Fatal("newest consent lost")
	}
	if hasConsent(got, consentKey("client-", "https://app.example/"+strings.Repeat("y", 1500)), now, DefaultConsentTTL) {
		t.Fatal("oldest consent kept beyond the bound")
	}
	// Loopback redirect ports do not matter for consent; paths and hosts do.
	if consentKey("c", "http://127.0.0.1:3000/cb") != consentKey("c", "http://127.0.0.1:4000/cb") ||
		consentKey("c", "http://[::1]:3000/cb") != consentKey("c", "http://[::1]/cb") ||
		consentKey("c", "http://127.0.0.1:3000/cb") == consentKey("c", "http://127.0.0.1:3000/cb2") ||
		consentKey("c", "https://a.example:3000/cb") == consentKey("c", "https://a.example:4000/cb") {
		t.Fatal("consent key normalisation wrong")
	}
}

func TestTokenRefusals(t *testing.T) {
	e := newEnv(t)
	c := e.register(t, map[string]any{})
	c2 := e.register(t, map[string]any{"redirect_uris": []string{"http://127.0.0.1:3000/callback"}})
	// newCode runs a browser flow and returns a fresh code and its verifier.
	newCode := func() (string, string) {
		v, ch := pkce()
		res := e.authorize(t, newBrowser(e.h), c, ch, nil)
		return res.Redirect.Query().Get("code"), v
	}
	form := func(code, v string) url.Values {
		return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {c.Redirect}, "client_id": {c.ID}, "code_verifier": {v}}
	}
	t.Run("wrong verifier burns the code", func(t *testing.T) {
		code, v := newCode()
		other, _ := pkce()
		resp, m := e.token(t, form(code, other))
		wantOAuthError(t, resp, m, 400, "invalid_grant")
		resp, m = e.token(t, form(code, v))
		wantOAuthError(t, resp, m, 400, "invalid_grant")
	})
	t.Run("verifier too short", func(t *testing.T) {
		code, _ := newCode()
		short := "abc"
		resp, m := e.token(t, form(code, short))
		wantOAuthError(t, resp, m, 400, "invalid_grant")
	})
	t.Run("challenge as verifier (plain)", func(t *testing.T) {
		v, ch := pkce()
		res := e.authorize(t, newBrowser(e.h), c, ch, nil)
		resp, m := e.token(t, form(res.Redirect.Query().Get("code"), ch))
		wantOAuthError(t, resp, m, 400, "invalid_grant")
		_ = v
	})
	t.Run("missing verifier", func(t *testing.T) {
		code, _ := newCode()
		f := form(code, "")
		f.Del("code_verifier")
		resp, m := e.token(t, f)
		wantOAuthError(t, resp, m, 400, "invalid_request")
	})
	t.Run("replayed code revokes the first tokens", func(t *testing.T) {
		code, v := newCode()
		resp, first := e.token(t, form(code, v))
		wantStatus(t, resp, 200)
		at := first["access_token"].(string)
		if !e.tokenValid(at, testPublic+"/mcp") {
			t.Fatal("first token invalid")
		}
		resp, m := e.token(t, form(code, v))
		wantOAuthError(t, resp, m, 400, "invalid_grant")
		if e.tokenValid(at, testPublic+"/mcp") {
			t.Fatal("first token still valid after the code was replayed")
		}
		resp, m = e.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first["refresh_token"].(string)}, "client_id": {c.ID}})
		wantOAuthError(t, resp, m, 400, "invalid_grant")
		if counter(t, e.metrics, "token", "code_replay") < 1 {
			t.Error("replay not counted")
		}
	})
	t.Run("code used by another client", func(t *testing.T) {
		code, v := newCode()
		f := form(code, v)
		f.Set("client_id", c2.ID)
		resp, m := e.token(t, f)
		wantOAuthError(t, resp, m, 400, "invalid_grant")
		resp, m = e.token(t, form(code, v))
		wantOAuthError(t, resp, m, 400, "invalid_grant")
	})
	for name, tc := range map[string]struct {
		key, val string
		status   int
		err      string
	}{
		"redirect_uri on another port": {"redirect_uri", "http://127.0.0.1:3001/callback", 400, "invalid_grant"},
		"redirect_uri with a slash":    {"redirect_uri", c.Redirect + "/", 400, "invalid_grant"},
		"redirect_uri missing":         {"redirect_uri", "", 400, "invalid_request"},
		"resource mismatch":            {"resource", testPublic + "/mcp/sse", 400, "invalid_target"},
		"scope beyond the grant":       {"scope", "mcp:tools offline_access", 400, "invalid_scope"},
		"unknown client":               {"client_id", "nope", 401, "invalid_client"},
	} {
		t.Run(name, func(t *testing.T) {
			code, v := newCode()
			f := form(code, v)
			f.Set(tc.key, tc.val)
			resp, m := e.token(t, f)
			wantOAuthError(t, resp, m, tc.status, tc.err)
			if resp.Header.Get("WWW-Authenticate") != "" {
				t.Error("WWW-Authenticate without Basic")
			}
		})
	}
	t.Run("unknown and forged codes", func(t *testing.T) {
		for _, code := range []string{"nope", randomToken(32), strings.Repeat("a", 5000)} {
			resp, m := e.token(t, form(code, randomToken(32)))
			wantOAuthError(t, resp, m, 400, "invalid_grant")
		}
	})
	t.Run("expired code", func(t *testing.T) {
		e2 := newEnv(t, func(cfg *Config, _ *clients.Options) { cfg.CodeTTL = 50 * time.Millisecond })
		c := e2.register(t, map[string]any{})
		v, ch := pkce()
		res := e2.authorize(t, newBrowser(e2.h), c, ch, nil)
		time.Sleep(120 * time.Millisecond)
		resp, m := e2.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {res.Redirect.Query().Get("code")}, "redirect_uri": {c.Redirect}, "client_id": {c.ID}, "code_verifier": {v}})
		wantOAuthError(t, resp, m, 400, "invalid_grant")
	})
	t.Run("form problems", func(t *testing.T) {
		send := func(ct, b string, method string) (*http.Response, map[string]any) {
			req := httptest.NewRequest(method, testPublic+"/token", strings.NewReader(b))
			if ct != "" {
				req.Header.Set("Content-Type", ct)
			}
			rec := httptest.NewRecorder()
			e.h.ServeHTTP(rec, req)
			var m map[string]any
			_ = jsonUnmarshal(rec.Body.Bytes(), &m)
			return rec.Result(), m
		}
		resp, m := send("application/json", `{"grant_type":"authorization_code"}`, http.MethodPost)
		wantOAuthError(t, resp, m, 400, "invalid_request")
		resp, m = send("", "grant_type=authorization_code", http.MethodPost)
		wantOAuthError(t, resp, m, 400, "invalid_request")
		resp, m = send("application/x-www-form-urlencoded", "grant_type=x&"+strings.Repeat("p=1&", 5000), http.MethodPost)
		wantOAuthError(t, resp, m, 413, "invalid_request")
		resp, m = send("application/x-www-form-urlencoded", "grant_type=authorization_code&grant_type=refresh_token&client_id="+c.ID, http.MethodPost)
		wantOAuthError(t, resp, m, 400, "invalid_request")
		resp, m = send("application/x-www-form-urlencoded", "grant_type=password&client_id="+c.ID, http.MethodPost)
		wantOAuthError(t, resp, m, 400, "unsupported_grant_type")
		resp, m = send("application/x-www-form-urlencoded", "client_id="+c.ID, http.MethodPost)
		wantOAuthError(t, resp, m, 400, "invalid_request")
		resp, m = send("application/x-www-form-urlencoded", "%zz", http.MethodPost)
		wantOAuthError(t, resp, m, 400, "invalid_request")
		resp, m = send("", "", http.MethodGet)
		wantOAuthError(t, resp, m, 405, "invalid_request")
		// Query parameters are not token parameters.
		req := httptest.NewRequest(http.MethodPost, testPublic+"/token?grant_type=refresh_token&client_id="+c.ID+"&refresh_token=x", strings.NewReader(""))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		if rec.Code != 401 {
			t.Errorf("query parameters used: %d %s", rec.Code, rec.Body)
		}
	})
	t.Run("refresh token of another client", func(t *testing.T) {
		m := e.codeFlow(t, c)
		resp, m2 := e.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {m["refresh_token"].(string)}, "client_id": {c2.ID}})
		wantOAuthError(t, resp, m2, 400, "invalid_grant")
	})
	t.Run("tampered refresh token", func(t *testing.T) {
		m := e.codeFlow(t, c)
		rt := m["refresh_token"].(string)
		resp, m2 := e.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt[:len(rt)-2] + "xx"}, "client_id": {c.ID}})
		wantOAuthError(t, resp, m2, 400, "invalid_grant")
	})
	t.Run("refresh for a client without the grant", func(t *testing.T) {
		c3 := e.register(t, map[string]any{"grant_types": []string{"authorization_code"}})
		resp, m := e.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}, "client_id": {c3.ID}})
		wantOAuthError(t, resp, m, 400, "unauthorized_client")
	})
}

func TestRevokeEndpoint(t *testing.T) {
	e := newEnv(t)
	c := e.register(t, map[string]any{})
	send := func(form url.Values) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, testPublic+"/revoke", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		return rec
	}
	if rec := send(url.Values{"token": {"unknown"}, "client_id": {c.ID}}); rec.Code != 200 {
		t.Errorf("unknown token: %d", rec.Code)
	}
	if rec := send(url.Values{"token": {"unknown"}, "client_id": {"nope"}}); rec.Code != 401 {
		t.Errorf("unknown client: %d", rec.Code)
	}
	if rec := send(url.Values{"client_id": {c.ID}}); rec.Code != 400 {
		t.Errorf("no token: %d", rec.Code)
	}
	m := e.codeFlow(t, c)
	other := e.register(t, map[string]any{})
	if rec := send(url.Values{"token": {m["refresh_token"].(string)}, "client_id": {other.ID}}); rec.Code != 200 || !e.tokenValid(m["access_token"].(string), testPublic+"/mcp") {
		t.Errorf("another client revoked the token: %d", rec.Code)
	}
	if rec := send(url.Values{"token": {m["refresh_token"].(string)}, "client_id": {c.ID}, "token_type_hint": {"refresh_token"}}); rec.Code != 200 || e.tokenValid(m["access_token"].(string), testPublic+"/mcp") {
		t.Errorf("revocation by refresh token failed: %d", rec.Code)
	}
}

func TestRegisterRefusals(t *testing.T) {
	e := newEnv(t)
	send := func(ct, b string) (*http.Response, map[string]any) {
		req := httptest.NewRequest(http.MethodPost, testPublic+"/register", strings.NewReader(b))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		var m map[string]any
		_ = jsonUnmarshal(rec.Body.Bytes(), &m)
		return rec.Result(), m
	}
	for name, tc := range map[string]struct {
		ct, body string
		status   int
		err      string
	}{
		"not JSON":           {"application/json", "client_name=x", 400, "invalid_client_metadata"},
		"array":              {"application/json", `[{"redirect_uris":["https://a.example/cb"]}]`, 400, "invalid_client_metadata"},
		"null":               {"application/json", `null`, 400, "invalid_client_metadata"},
		"truncated":          {"application/json", `{"redirect_uris":["https://a.example/cb"]`, 400, "invalid_client_metadata"},
		"wrong type":         {"application/json", `{"redirect_uris":"https://a.example/cb"}`, 400, "invalid_client_metadata"},
		"no redirect":        {"application/json", `{"client_name":"x"}`, 400, "invalid_redirect_uri"},
		"http non-loopback":  {"application/json", `{"redirect_uris":["http://a.example/cb"]}`, 400, "invalid_redirect_uri"},
		"javascript":         {"application/json", `{"redirect_uris":["javascript:alert(1)"]}`, 400, "invalid_redirect_uri"},
		"form content type":  {"application/x-www-form-urlencoded", `{"redirect_uris":["https://a.example/cb"]}`, 400, "invalid_client_metadata"},
		"oversized":          {"application/json", `{"client_name":"` + strings.Repeat("x", 20000) + `","redirect_uris":["https://a.example/cb"]}`, 413, "invalid_client_metadata"},
		"too many redirects": {"application/json", `{"redirect_uris":[` + strings.Repeat(`"https://a.example/cb",`, 11) + `"https://a.example/cb"]}`, 400, "invalid_redirect_uri"},
	} {
		resp, m := send(tc.ct, tc.body)
		if resp.StatusCode != tc.status || m["error"] != tc.err {
			t.Errorf("%s: %d %v, want %d %s", name, resp.StatusCode, m, tc.status, tc.err)
		}
	}
	req := httptest.NewRequest(http.MethodGet, testPublic+"/register", nil)
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	if rec.Code != 405 {
		t.Errorf("GET /register: %d", rec.Code)
	}
}

func TestRateLimits(t *testing.T) {
	e := newEnv(t, func(cfg *Config, _ *clients.Options) {
		cfg.Limiter = store.NewMemoryLimiter(100)
		cfg.Limits = Limits{Register: store.PerMinute(2), Authorize: store.PerMinute(2), Token: store.PerMinute(2)}
	})
	c := e.register(t, map[string]any{})
	e.register(t, map[string]any{})
	req := httptest.NewRequest(http.MethodPost, testPublic+"/register", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	if rec.Code != 429 || rec.Header().Get("Retry-After") == "" {
		t.Errorf("register: %d %v", rec.Code, rec.Header())
	}
	b := newBrowser(e.h)
	_, ch := pkce()
	b.get(authorizeURL(c, ch, nil))
	b.get(authorizeURL(c, ch, nil))
	resp := b.get(authorizeURL(c, ch, nil))
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || resp.Header.Get("Location") != "" {
		t.Errorf("authorize: %d %v", resp.StatusCode, resp.Header)
	}
	// Another address is not limited.
	req = httptest.NewRequest(http.MethodGet, authorizeURL(c, ch, nil), nil)
	req.RemoteAddr = "198.51.100.9:1"
	rec = httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	if rec.Code != 302 {
		t.Errorf("authorize from another IP: %d", rec.Code)
	}
	for range 2 {
		e.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}, "client_id": {c.ID}})
	}
	tresp, m := e.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}, "client_id": {c.ID}})
	if tresp.StatusCode != 429 || tresp.Header.Get("Retry-After") == "" || m["error"] == nil {
		t.Errorf("token: %d %v", tresp.StatusCode, m)
	}
}

// failingStore fails every operation (Redis down).
type failingStore struct{ store.Store }

var errDown = errors.New("store down")

func (failingStore) Get(context.Context, string) ([]byte, error)              { return nil, errDown }
func (failingStore) GetDel(context.Context, string) ([]byte, error)           { return nil, errDown }
func (failingStore) Set(context.Context, string, []byte, time.Duration) error { return errDown }
func (failingStore) SetNX(context.Context, string, []byte, time.Duration) (bool, error) {
	return false, errDown
}

type failingLimiter struct{}

func (failingLimiter) Allow(context.Context, string, store.Limit) (store.Result, error) {
	return store.Result{}, errDown
}

func TestFailsClosed(t *testing.T) {
	e := newEnv(t)
	c := e.register(t, map[string]any{})
	srv, err := New(Config{PublicURL: testPublic, Clients: e.reg, Grants: e.grants, Keys: e.keeper, Store: failingStore{e.st}, Upstream: e.idp})
	if err != nil {
		t.Fatal(err)
	}
	_, ch := pkce()
	resp := newBrowser(srv.Handler()).get(authorizeURL(c, ch, nil))
	if resp.StatusCode != 503 || resp.Header.Get("Location") != "" {
		t.Errorf("authorize with the store down: %d %v", resp.StatusCode, resp.Header)
	}
	e2 := &env{h: srv.Handler()}
	tresp, m := e2.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "redirect_uri": {c.Redirect}, "client_id": {c.ID}, "code_verifier": {randomToken(32)}})
	wantOAuthError(t, tresp, m, 503, "temporarily_unavailable")

	srv, _ = New(Config{PublicURL: testPublic, Clients: e.reg, Grants: e.grants, Keys: e.keeper, Store: e.st, Upstream: e.idp, Limiter: failingLimiter{}})
	resp = newBrowser(srv.Handler()).get(authorizeURL(c, ch, nil))
	if resp.StatusCode != 503 {
		t.Errorf("authorize with the limiter down: %d", resp.StatusCode)
	}
	reg := &stubRegistry{ClientRegistry: e.reg, client: &clients.Client{}, err: errDown}
	srv, _ = New(Config{PublicURL: testPublic, Clients: reg, Grants: e.grants, Keys: e.keeper, Store: e.st, Upstream: e.idp})
	resp = newBrowser(srv.Handler()).get(authorizeURL(c, ch, nil))
	if resp.StatusCode != 503 || resp.Header.Get("Location") != "" {
		t.Errorf("authorize with the registry down: %d", resp.StatusCode)
	}
}

func TestFlowCookiesBounded(t *testing.T) {
	e := newEnv(t)
	c := e.register(t, map[string]any{})
	b := newBrowser(e.h)
	_, ch := pkce()
	for range 30 {
		wantStatus(t, b.get(authorizeURL(c, ch, nil)), http.StatusFound)
	}
	n := 0
	for name := range b.cookies {
		if strings.HasPrefix(name, "__Host-mcpgate-flow-") {
			n++
		}
	}
	if n > maxFlowCookies {
		t.Fatalf("%d flow cookies accumulated", n)
	}
	// The newest flow still works.
	e.authorize(t, b, c, ch, nil)
}
