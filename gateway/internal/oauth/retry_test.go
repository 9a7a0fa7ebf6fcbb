package oauth

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestCodeSurvivesFailedIssue: a 503 at the code exchange (the grant could not be stored)
// invites a retry, so it must not burn the code; the client's own mistakes still do, and a
// code given back keeps its original deadline.
func TestCodeSurvivesFailedIssue(t *testing.T) {
	e, ts := newTestStoreEnv(t)
	c := e.register(t, map[string]any{})
	newCode := func() (string, string) {
		v, ch := pkce()
		res := e.authorize(t, newBrowser(e.h), c, ch, nil)
		return res.Redirect.Query().Get("code"), v
	}
	form := func(code, v string) url.Values {
		return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {c.Redirect},
			"client_id": {c.ID}, "code_verifier": {v}, "resource": {testPublic + "/mcp"}}
	}
	t.Run("identical retry after a 503 gets the tokens", func(t *testing.T) {
		code, v := newCode()
		ts.failGrantWrites(1)
		resp, m := e.token(t, form(code, v))
		wantOAuthError(t, resp, m, http.StatusServiceUnavailable, "temporarily_unavailable")
		resp, m = e.token(t, form(code, v))
		wantStatus(t, resp, http.StatusOK)
		at, _ := m["access_token"].(string)
		if !e.tokenValid(at, testPublic+"/mcp") || m["refresh_token"] == nil {
			t.Fatalf("retry answered %v", m)
		}
		// Still single use once redeemed.
		resp, m = e.token(t, form(code, v))
		wantOAuthError(t, resp, m, http.StatusBadRequest, "invalid_grant")
	})
	t.Run("a wrong PKCE verifier still burns the code", func(t *testing.T) {
		code, v := newCode()
		ts.failGrantWrites(1)
		resp, m := e.token(t, form(code, v))
		wantOAuthError(t, resp, m, http.StatusServiceUnavailable, "temporarily_unavailable")
		other, _ := pkce()
		resp, m = e.token(t, form(code, other))
		wantOAuthError(t, resp, m, http.StatusBadRequest, "invalid_grant")
		resp, m = e.token(t, form(code, v))
		wantOAuthError(t, resp, m, http.StatusBadRequest, "invalid_grant")
	})
	t.Run("a code given back keeps its deadline", func(t *testing.T) {
		code, v := newCode()
		e.clock.Advance(DefaultCodeTTL - time.Minute)
		ts.failGrantWrites(1)
		resp, m := e.token(t, form(code, v))
		wantOAuthError(t, resp, m, http.StatusServiceUnavailable, "temporarily_unavailable")
		// Past the code's original deadline (a fresh CodeTTL would still run).
		e.clock.Advance(2 * time.Minute)
		resp, m = e.token(t, form(code, v))
		wantOAuthError(t, resp, m, http.StatusBadRequest, "invalid_grant")
	})
}

// TestRefreshScope: a refresh cannot widen the grant. A known scope is within every grant
// (mcp:tools always, offline_access being what a refresh token is), so it is accepted and
// the response carries the grant's scope; an unknown scope is invalid_scope, refused before
// the rotation: the same refresh token still works long after the reuse grace.
func TestRefreshScope(t *testing.T) {
	e := newEnv(t)
	c := e.register(t, map[string]any{})
	refresh := func(rt, scope string) (*http.Response, map[string]any) {
		f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {c.ID}}
		if scope != "" {
			f.Set("scope", scope)
		}
		return e.token(t, f)
	}
	m := e.codeFlow(t, c) // granted scope: mcp:tools
	if m["scope"] != ScopeTools {
		t.Fatalf("granted scope %v", m["scope"])
	}
	rt := m["refresh_token"].(string)
	resp, m2 := refresh(rt, "mcp:tools admin")
	wantOAuthError(t, resp, m2, http.StatusBadRequest, "invalid_scope")
	e.clock.Advance(time.Minute)
	defer e.clock.Advance(-time.Minute)
	resp, m3 := refresh(rt, ScopeTools+" "+ScopeOffline)
	wantStatus(t, resp, http.StatusOK)
	if m3["scope"] != ScopeTools || !e.tokenValid(m3["access_token"].(string), testPublic+"/mcp") {
		t.Fatalf("refresh after a refused scope: %v", m3)
	}
}

// TestFlowDeadline: the flow cookie (Max-Age = StateTTL, set at /authorize) and every record
// of the flow share one deadline, so that no step of a flow can outlive its cookie. The test
// browser does not expire cookies, so the records are checked instead: the upstream state
// written at consent must expire when the cookie does, not StateTTL after the consent.
func TestFlowDeadline(t *testing.T) {
	e, ts := newTestStoreEnv(t)
	c := e.register(t, map[string]any{})
	// start runs /authorize and returns the consent form and the flow cookie's deadline.
	start := func(b *browser) (url.Values, time.Time) {
		t.Helper()
		_, ch := pkce()
		resp := b.get(authorizeURL(c, ch, nil))
		wantStatus(t, resp, http.StatusFound)
		var cookieDeadline time.Time
		for _, ck := range resp.Cookies() {
			if strings.HasPrefix(ck.Name, "__Host-mcpgate-flow-") {
				cookieDeadline = e.clock.Now().Add(time.Duration(ck.MaxAge) * time.Second)
			}
		}
		if cookieDeadline.IsZero() {
			t.Fatal("no flow cookie")
		}
		form := consentForm(t, b, location(t, resp))
		form.Set("action", "allow")
		return form, cookieDeadline
	}
	consent := func(b *browser, form url.Values) *url.URL {
		t.Helper()
		resp := b.postForm(testPublic+"/consent", form, "Origin", testPublic, "Sec-Fetch-Site", "same-origin")
		wantStatus(t, resp, http.StatusSeeOther)
		return location(t, resp)
	}
	t.Run("a late consent cannot stretch the flow past its cookie", func(t *testing.T) {
		b := newBrowser(e.h)
		form, cookieDeadline := start(b)
		e.clock.Advance(DefaultStateTTL - time.Minute)
		idp := consent(b, form)
		states := ts.recordDeadlines(kindState)
		if len(states) != 1 || states[0].After(cookieDeadline) {
			t.Fatalf("upstream state lives until %v, the flow cookie until %v", states, cookieDeadline)
		}
		// Past the flow cookie's Max-Age: a real browser no longer sends it, and the flow is
		// over (an expired sign-in, not "started in another browser").
		e.clock.Advance(2 * time.Minute)
		resp := b.get(e.idp.login(t, idp.String()))
		wantStatus(t, resp, http.StatusBadRequest)
		if resp.Header.Get("Location") != "" || !strings.Contains(body(t, resp), "expired") {
			t.Fatal("an expired flow was completed or not reported as expired")
		}
	})
	t.Run("a flow within StateTTL completes", func(t *testing.T) {
		b := newBrowser(e.h)
		form, _ := start(b)
		e.clock.Advance(DefaultStateTTL - time.Minute)
		idp := consent(b, form)
		e.clock.Advance(50 * time.Second)
		resp := b.get(e.idp.login(t, idp.String()))
		wantStatus(t, resp, http.StatusFound)
		if location(t, resp).Query().Get("code") == "" {
			t.Fatal("no code")
		}
	})
	t.Run("a consent after the deadline is refused", func(t *testing.T) {
		b := newBrowser(e.h)
		form, _ := start(b)
		e.clock.Advance(DefaultStateTTL + time.Second)
		resp := b.postForm(testPublic+"/consent", form, "Origin", testPublic, "Sec-Fetch-Site", "same-origin")
		wantStatus(t, resp, http.StatusBadRequest)
	})
}

// TestRefusedStepsKeepTheFlow: a consent POST refused for want of the flow cookie (another
// browser, or a forged cookie) does not use the flow up: the browser that started it can
// still finish it; a concurrent use between the checks and the GETDEL wins once only. A
// refused callback, on the contrary, burns the flow (see the subtest).
func TestRefusedStepsKeepTheFlow(t *testing.T) {
	e, ts := newTestStoreEnv(t)
	c := e.register(t, map[string]any{})
	post := func(b *browser, form url.Values) *http.Response {
		return b.postForm(testPublic+"/consent", form, "Origin", testPublic, "Sec-Fetch-Site", "same-origin")
	}
	// forger is a browser holding b's flow cookies with wrong values.
	forger := func(b *browser) *browser {
		f := newBrowser(e.h)
		for name := range b.cookies {
			if strings.HasPrefix(name, "__Host-mcpgate-flow-") {
				f.cookies[name] = &http.Cookie{Name: name, Value: randomToken(32)}
			}
		}
		return f
	}
	// start opens a flow in a new browser and returns it with its PKCE verifier and the
	// filled-in consent form (Allow).
	start := func() (*browser, string, url.Values) {
		b := newBrowser(e.h)
		v, ch := pkce()
		form := consentForm(t, b, location(t, b.get(authorizeURL(c, ch, nil))))
		form.Set("action", "allow")
		return b, v, form
	}
	t.Run("refused consent, then the real browser finishes", func(t *testing.T) {
		b, v, form := start()
		var resp *http.Response

		for name, other := range map[string]*browser{"no flow cookie": newBrowser(e.h), "wrong flow cookie": forger(b)} {
			resp := post(other, form)
			wantStatus(t, resp, http.StatusForbidden)
			if resp.Header.Get("Location") != "" {
				t.Fatalf("%s: consent POST redirected", name)
			}
		}
		resp = post(b, form)
		wantStatus(t, resp, http.StatusSeeOther)
		cb := e.idp.login(t, location(t, resp).String())
		resp = b.get(cb)
		wantStatus(t, resp, http.StatusFound)
		code := location(t, resp).Query().Get("code")
		tresp, m := e.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {c.Redirect},
			"client_id": {c.ID}, "code_verifier": {v}, "resource": {testPublic + "/mcp"}})
		wantStatus(t, tresp, http.StatusOK)
		if m["access_token"] == nil {
			t.Fatal(m)
		}
		// And each step stays single use.
		wantStatus(t, post(b, form), http.StatusBadRequest)
		wantStatus(t, b.get(cb), http.StatusBadRequest)
	})
	t.Run("a refused callback burns the flow", func(t *testing.T) {
		// A victim who finishes at the IdP a sign-in somebody else started reaches the callback
		// without the flow cookie: refused, and the flow is gone, so the callback URL cannot be
		// replayed from the browser that started it.
		b, _, form := start()
		resp := post(b, form)
		wantStatus(t, resp, http.StatusSeeOther)
		cb := e.idp.login(t, location(t, resp).String())
		wantStatus(t, newBrowser(e.h).get(cb), http.StatusForbidden)
		resp = b.get(cb)
		wantStatus(t, resp, http.StatusBadRequest)
		if resp.Header.Get("Location") != "" {
			t.Fatal("a burnt flow went on")
		}
	})
	t.Run("a use between the checks and the take wins", func(t *testing.T) {
		b, _, form := start()
		ts.stealAfterRead(kindPending)
		resp := post(b, form)
		wantStatus(t, resp, http.StatusBadRequest)
		if resp.Header.Get("Location") != "" {
			t.Fatal("consent taken by another request went on")
		}
	})
}
