package oauth

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/clients"
	"github.com/mcpgate/mcpgate/gateway/internal/identity"
	"github.com/mcpgate/mcpgate/gateway/internal/upstream"
)

// TestSessionTokens covers the session-token rows of the negative table through /token and the
// verifier the MCP proxy uses: tampered, expired and unknown-key tokens, refresh reuse inside
// and after the grace window, and a user disabled upstream.
func TestSessionTokens(t *testing.T) {
	e := newEnv(t)
	c := e.register(t, map[string]any{})
	refresh := func(rt string) (int, map[string]any) {
		resp, m := e.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {c.ID}})
		return resp.StatusCode, m
	}
	t.Run("tampered tokens", func(t *testing.T) {
		m := e.codeFlow(t, c)
		at, rt := m["access_token"].(string), m["refresh_token"].(string)
		for i := range []int{0, 1, 2} {
			pos := []int{5, len(rt) / 2, len(rt) - 3}[i]
			bad := []byte(rt)
			bad[pos] ^= 1
			if st, m := refresh(string(bad)); st != 400 || m["error"] != "invalid_grant" {
				t.Errorf("tampered refresh token at %d: %d %v", pos, st, m)
			}
			badAT := []byte(at)
			badAT[min(pos, len(at)-3)] ^= 1
			if e.tokenValid(string(badAT), testPublic+"/mcp") {
				t.Errorf("tampered access token at %d verifies", pos)
			}
		}
		if !e.tokenValid(at, testPublic+"/mcp") {
			t.Fatal("untampered token rejected")
		}
		// An access token is not a refresh token (purpose binding).
		if st, m := refresh(at); st != 400 || m["error"] != "invalid_grant" {
			t.Errorf("access token as refresh token: %d %v", st, m)
		}
	})
	t.Run("unknown key", func(t *testing.T) {
		other := newEnv(t)
		oc := other.register(t, map[string]any{})
		m := other.codeFlow(t, oc)
		if st, m2 := refresh(m["refresh_token"].(string)); st != 400 || m2["error"] != "invalid_grant" {
			t.Errorf("refresh token of another ring: %d %v", st, m2)
		}
		if e.tokenValid(m["access_token"].(string), testPublic+"/mcp") {
			t.Error("access token of another ring verifies")
		}
	})
	t.Run("expired access token", func(t *testing.T) {
		m := e.codeFlow(t, c)
		e.clock.Advance(2 * time.Hour)
		defer e.clock.Advance(-2 * time.Hour)
		if e.tokenValid(m["access_token"].(string), testPublic+"/mcp") {
			t.Error("expired access token verifies")
		}
		// The refresh token outlives it.
		if st, m2 := refresh(m["refresh_token"].(string)); st != 200 {
			t.Errorf("refresh after access expiry: %d %v", st, m2)
		}
	})
	t.Run("expired refresh token", func(t *testing.T) {
		m := e.codeFlow(t, c)
		e.clock.Advance(31 * 24 * time.Hour)
		defer e.clock.Advance(-31 * 24 * time.Hour)
		if st, m2 := refresh(m["refresh_token"].(string)); st != 400 || m2["error"] != "invalid_grant" {
			t.Errorf("expired refresh token: %d %v", st, m2)
		}
	})
	t.Run("token for another resource", func(t *testing.T) {
		m := e.codeFlow(t, c) // bound to /mcp
		if e.tokenValid(m["access_token"].(string), testPublic+"/mcp/sse") {
			t.Error("/mcp token accepted at /mcp/sse")
		}
	})
	t.Run("refresh retry within grace, reuse after grace", func(t *testing.T) {
		m := e.codeFlow(t, c)
		rt := m["refresh_token"].(string)
		st, first := refresh(rt)
		if st != 200 {
			t.Fatalf("refresh: %d %v", st, first)
		}
		st, retry := refresh(rt)
		if st != 200 || retry["access_token"] != first["access_token"] {
			t.Fatalf("retry within grace: %d %v", st, retry)
		}
		e.clock.Advance(time.Minute)
		defer e.clock.Advance(-time.Minute)
		st, reuse := refresh(rt)
		if st != 400 || reuse["error"] != "invalid_grant" {
			t.Fatalf("reuse after grace: %d %v", st, reuse)
		}
		// Reuse is a replay: the whole grant is gone, the rotated tokens too.
		if e.tokenValid(first["access_token"].(string), testPublic+"/mcp") {
			t.Error("tokens survive a refresh replay")
		}
		if st, m := refresh(first["refresh_token"].(string)); st != 400 {
			t.Errorf("rotated refresh token survives a replay: %d %v", st, m)
		}
	})
	t.Run("user disabled upstream loses access", func(t *testing.T) {
		m := e.codeFlow(t, c)
		e.idp.refreshErr = &upstream.Error{Code: "invalid_grant", AADSTS: "AADSTS50057"}
		st, m2 := refresh(m["refresh_token"].(string))
		e.idp.refreshErr = nil
		if st != 400 || m2["error"] != "invalid_grant" {
			t.Fatalf("disabled user refresh: %d %v", st, m2)
		}
		if e.tokenValid(m["access_token"].(string), testPublic+"/mcp") {
			t.Error("access token still valid after the IdP refused the user")
		}
	})
	t.Run("refresh keeps resource and scope", func(t *testing.T) {
		m := e.codeFlow(t, c)
		st, m2 := refresh(m["refresh_token"].(string))
		if st != 200 || m2["scope"] != "mcp:tools" || !e.tokenValid(m2["access_token"].(string), testPublic+"/mcp") {
			t.Fatalf("%d %v", st, m2)
		}
		rt := m2["refresh_token"].(string)
		resp, m3 := e.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {c.ID}, "resource": {testPublic + "/mcp/sse"}})
		wantOAuthError(t, resp, m3, 400, "invalid_target")
		// The refused request consumed nothing: long after the reuse grace, the same refresh
		// token still works (a rotation there would have made this a replay that ends the
		// session).
		e.clock.Advance(time.Minute)
		defer e.clock.Advance(-time.Minute)
		if st, m4 := refresh(rt); st != 200 || !e.tokenValid(m4["access_token"].(string), testPublic+"/mcp") {
			t.Fatalf("refresh after a refused resource: %d %v", st, m4)
		}
	})
}

// refusePolicy refuses users whose object id is in the set.
type refusePolicy struct{ refused map[string]bool }

type refusal struct{}

func (refusal) Error() string { return "policy: role: missing" }
func (refusal) Explain() (title, hint string) {
	return "You do not have the required role", "Ask an administrator."
}

func (p *refusePolicy) Admit(_ context.Context, u identity.User) error {
	if p.refused[u.ID()] {
		return refusal{}
	}
	return nil
}

func TestPolicy(t *testing.T) {
	pol := &refusePolicy{refused: map[string]bool{}}
	e := newEnv(t, func(c *Config, _ *clients.Options) { c.Admit = pol.Admit })
	c := e.register(t, map[string]any{})
	m := e.codeFlow(t, c) // admitted
	t.Run("refused at the callback", func(t *testing.T) {
		pol.refused["alice-oid"] = true
		defer delete(pol.refused, "alice-oid")
		b := newBrowser(e.h)
		_, ch := pkce()
		resp := b.get(authorizeURL(c, ch, url.Values{"state": {"pst"}}))
		form := consentForm(t, b, location(t, resp))
		form.Set("action", "allow")
		idp := location(t, b.postForm(testPublic+"/consent", form, "Origin", testPublic))
		resp = b.get(e.idp.login(t, idp.String()))
		wantStatus(t, resp, http.StatusForbidden)
		page := body(t, resp)
		if resp.Header.Get("Location") != "" || !strings.Contains(page, "You do not have the required role") || !strings.Contains(page, "error=access_denied") {
			t.Fatalf("refusal page:\n%s", page)
		}
	})
	t.Run("refused at refresh", func(t *testing.T) {
		pol.refused["alice-oid"] = true
		defer delete(pol.refused, "alice-oid")
		resp, m2 := e.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {m["refresh_token"].(string)}, "client_id": {c.ID}})
		wantOAuthError(t, resp, m2, 400, "invalid_grant")
		if e.tokenValid(m["access_token"].(string), testPublic+"/mcp") {
			t.Error("access token survives a policy refusal")
		}
	})
}
