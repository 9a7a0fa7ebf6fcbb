package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mcpgate/mcpgate/gateway/internal/clients"
	"github.com/mcpgate/mcpgate/gateway/internal/grants"
	"github.com/mcpgate/mcpgate/gateway/internal/identity"
)

// reasonRefusal is an Admit error that explains itself, like policy.Refusal.
type reasonRefusal struct{ reason string }

func (r reasonRefusal) Error() string                 { return "refused: " + r.reason }
func (r reasonRefusal) Reason() string                { return r.reason }
func (r reasonRefusal) Explain() (title, hint string) { return "No role for you", "Ask for the role." }
func withAdmit(f func(identity.User) error) envOption {
	return func(c *Config, _ *clients.Options) {
		c.Admit = func(_ context.Context, u identity.User) error { return f(u) }
	}
}

func TestAdmitAtCallback(t *testing.T) {
	var (
		mu     sync.Mutex
		refuse error
		seen   string
	)
	e := newEnv(t, withAdmit(func(u identity.User) error { mu.Lock(); defer mu.Unlock(); seen = u.ID(); return refuse }))
	c := e.register(t, map[string]any{})

	// Admitted: the flow goes on, Admit saw the upstream identity.
	e.codeFlow(t, c)
	mu.Lock()
	if seen != "alice-oid" {
		t.Fatalf("Admit saw %v", seen)
	}
	mu.Unlock()

	for _, tt := range []struct {
		err           error
		title, reason string
	}{
		{reasonRefusal{"role"}, "No role for you", "role"},
		{errors.New("plain error"), "You are not allowed to use this server", "policy"},
	} {
		mu.Lock()
		refuse = tt.err
		mu.Unlock()
		b := newBrowser(e.h)
		_, ch := pkce()
		au := authorizeURL(c, ch, url.Values{"state": {"s-" + tt.reason}})
		resp := b.get(au)
		loc := location(t, resp)
		if loc.Path == "/consent" {
			form := consentForm(t, b, loc)
			form.Set("action", "allow")
			loc = location(t, b.postForm(testPublic+"/consent", form, "Origin", testPublic, "Sec-Fetch-Site", "same-origin"))
		}
		resp = b.get(e.idp.login(t, loc.String()))
		wantStatus(t, resp, http.StatusForbidden)
		page := body(t, resp)
		if !strings.Contains(page, tt.title) || !strings.Contains(page, "error=access_denied") || !strings.Contains(page, "state=s-"+tt.reason) ||
			strings.Contains(page, "code=") || strings.Contains(page, "plain error") {
			t.Fatalf("refusal page:\n%s", page)
		}
		if got := testutil.ToFloat64(e.srv.m.refusals.WithLabelValues("callback", tt.reason)); got != 1 {
			t.Errorf("refusals{callback,%s} = %v", tt.reason, got)
		}
	}
	if counter(t, e.metrics, "callback", "refused") != 2 {
		t.Error("refusals not in the funnel")
	}
}

func TestAdmitAtRefresh(t *testing.T) {
	var refuse atomic.Bool
	e := newEnv(t, withAdmit(func(identity.User) error {
		if refuse.Load() {
			return reasonRefusal{"role"}
		}
		return nil
	}))
	c := e.register(t, map[string]any{})
	tok := e.codeFlow(t, c)
	rt, at := tok["refresh_token"].(string), tok["access_token"].(string)
	resp, m := e.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {c.ID}})
	wantStatus(t, resp, http.StatusOK)
	rt = m["refresh_token"].(string)

	refuse.Store(true)
	resp, m = e.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {c.ID}})
	wantOAuthError(t, resp, m, http.StatusBadRequest, "invalid_grant")
	if _, err := e.grants.(*grants.Manager).Verify(t.Context(), at, testPublic+"/mcp"); err == nil {
		t.Fatal("the session survived the refusal")
	}
	if got := testutil.ToFloat64(e.srv.m.refusals.WithLabelValues("refresh", "role")); got != 1 {
		t.Errorf("refusals{refresh,role} = %v", got)
	}
	// The refresh token is dead even once the user is admitted again.
	refuse.Store(false)
	resp, m = e.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {c.ID}})
	wantOAuthError(t, resp, m, http.StatusBadRequest, "invalid_grant")
}
