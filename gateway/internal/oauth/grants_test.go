package oauth

import (
	"testing"

	"github.com/mcpgate/mcpgate/gateway/internal/grants"
	"github.com/mcpgate/mcpgate/gateway/internal/session"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
)

// newTestGrants is the real grants manager over the test's store and ring, on the test clock,
// without the per-replica cache (so that revocations show at once).
func newTestGrants(t testing.TB, st store.Store, keeper *session.Keeper, clock *testClock) GrantManager {
	t.Helper()
	return grants.New(st, keeper, grants.Options{Now: clock.Now, CacheTTL: -1, Logger: discard()})
}

// tokenValid reports whether an access token is accepted at resource (the MCP proxy's check).
func (e *env) tokenValid(at, resource string) bool {
	_, err := e.grants.(*grants.Manager).Verify(e.t.Context(), at, resource)
	return err == nil
}
