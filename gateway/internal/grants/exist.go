package grants

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"

	"github.com/mcpgate/mcpgate/gateway/internal/store"
)

// existBatch is how many grants one Redis round trip checks.
const existBatch = 500

// Exist reports, for each grant id, whether the grant still exists: neither revoked nor
// expired (a grant's record expires with the grant). It is meant for holders of long-lived
// connections (the legacy SSE streams) that check their grants now and then: on Redis it costs
// one pipelined round trip of EXISTS per 500 ids and reads no record; it bypasses the cache.
// A store failure returns ErrUnavailable (wrapped) and no answer.
func (m *Manager) Exist(ctx context.Context, ids []string) ([]bool, error) {
	out := make([]bool, 0, len(ids))
	if r, ok := m.st.(*store.Redis); ok {
		c := r.Client()
		for chunk := range slices.Chunk(ids, existBatch) {
			pipe := c.Pipeline()
			cmds := make([]*redis.IntCmd, len(chunk))
			for i, id := range chunk {
				cmds[i] = pipe.Exists(ctx, grantKey(id))
			}
			if _, err := pipe.Exec(ctx); err != nil {
				return nil, unavailable("check grants", err)
			}
			for _, cmd := range cmds {
				out = append(out, cmd.Val() > 0)
			}
		}
		return out, nil
	}
	for _, id := range ids {
		_, err := m.st.Get(ctx, grantKey(id))
		switch {
		case errors.Is(err, store.ErrNotFound):
			out = append(out, false)
		case err != nil:
			return nil, unavailable("check grants", fmt.Errorf("grant %s: %w", LogID(id), err))
		default:
			out = append(out, true)
		}
	}
	return out, nil
}
