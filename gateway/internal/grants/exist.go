package grants

import "context"

// Exist reports, for each grant id, whether the grant still exists: neither revoked nor
// expired (a grant's record expires with the grant). It is meant for holders of long-lived
// connections (the legacy SSE streams) that check their grants now and then: it reads no
// record and bypasses the cache (on Redis, pipelined EXISTS). A store failure returns
// ErrUnavailable (wrapped) and no answer.
func (m *Manager) Exist(ctx context.Context, ids []string) ([]bool, error) {
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = grantKey(id)
	}
	out, err := m.st.Exists(ctx, keys...)
	if err != nil {
		return nil, unavailable("check grants", err)
	}
	return out, nil
}
