package grants

import (
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/session"
)

// Ring exposes the current ring to tests.
func (m *Manager) Ring() *session.Ring { return m.keeper.Ring() }

// SetCacheTTL overrides the cache lifetime beyond its maximum, for tests that must tell
// pub/sub invalidation apart from expiry.
func (m *Manager) SetCacheTTL(d time.Duration) { m.cacheTTL = d }

// DataKeyOf returns the data key sealed inside an access token.
func (m *Manager) DataKeyOf(tok string) []byte {
	pt, err := m.Ring().Open(session.PurposeAccess, tok, m.now())
	if err != nil {
		return nil
	}
	c, err := parseAccess(pt)
	if err != nil {
		return nil
	}
	return c.dataKey
}
