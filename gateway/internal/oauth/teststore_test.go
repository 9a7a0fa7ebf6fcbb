package oauth

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/store"
)

// testStore wraps the in-memory store for tests that need more than it offers:
//   - the oauth records (pending authorizations, upstream states, codes) expire on the test
//     clock (the in-memory store's own clock is the wall clock), so that a test can let a flow
//     or a code run out with e.clock.Advance, and their deadlines can be inspected;
//   - the next grant writes can be made to fail (the store failing under grants.Issue);
//   - a record can be taken by "someone else" right after a request has read it (a concurrent
//     use between a read and the GETDEL that follows).
type testStore struct {
	store.Store
	mu         sync.Mutex
	now        func() time.Time
	deadlines  map[string]time.Time // oauth record key → deadline on the test clock
	failGrants int                  // grant writes (SetNX) left to fail
	stealNext  string               // record kind whose next read is followed by a theft
}

var oauthKeyPrefix = store.Key("oauth", "")

// newTestStoreEnv is newEnv over a testStore whose TTLs follow e.clock.
func newTestStoreEnv(t *testing.T, opts ...envOption) (*env, *testStore) {
	t.Helper()
	ts := &testStore{Store: store.NewMemory(), now: time.Now, deadlines: map[string]time.Time{}}
	e := newEnvWithStore(t, ts, opts...)
	ts.mu.Lock()
	ts.now = e.clock.Now
	ts.mu.Unlock()
	return e, ts
}

// failGrantWrites makes the next n grant writes fail as if the store were down.
func (s *testStore) failGrantWrites(n int) {
	s.mu.Lock()
	s.failGrants = n
	s.mu.Unlock()
}

// stealAfterRead makes the next read (Get) of a record of this kind be followed at once by
// another request taking it (GETDEL).
func (s *testStore) stealAfterRead(kind string) {
	s.mu.Lock()
	s.stealNext = kind
	s.mu.Unlock()
}

// recordDeadlines returns the deadlines of the live oauth records of this kind.
func (s *testStore) recordDeadlines(kind string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []time.Time
	for k, d := range s.deadlines {
		if strings.HasPrefix(k, oauthKeyPrefix+kind+":") && s.now().Before(d) {
			out = append(out, d)
		}
	}
	return out
}

// expired reports (and forgets) an oauth record past its deadline on the test clock.
func (s *testStore) expired(ctx context.Context, key string) bool {
	s.mu.Lock()
	d, ok := s.deadlines[key]
	gone := ok && !s.now().Before(d)
	if gone {
		delete(s.deadlines, key)
	}
	s.mu.Unlock()
	if gone {
		_ = s.Store.Del(ctx, key)
	}
	return gone
}

func (s *testStore) track(key string, ttl time.Duration) {
	if !strings.HasPrefix(key, oauthKeyPrefix) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ttl > 0 {
		s.deadlines[key] = s.now().Add(ttl)
	} else {
		delete(s.deadlines, key)
	}
}

func (s *testStore) Get(ctx context.Context, key string) ([]byte, error) {
	if s.expired(ctx, key) {
		return nil, store.ErrNotFound
	}
	v, err := s.Store.Get(ctx, key)
	s.mu.Lock()
	steal := s.stealNext != "" && strings.HasPrefix(key, oauthKeyPrefix+s.stealNext+":")
	if steal {
		s.stealNext = ""
	}
	s.mu.Unlock()
	if steal && err == nil {
		_, _ = s.Store.GetDel(ctx, key)
	}
	return v, err
}

func (s *testStore) GetDel(ctx context.Context, key string) ([]byte, error) {
	if s.expired(ctx, key) {
		return nil, store.ErrNotFound
	}
	return s.Store.GetDel(ctx, key)
}

func (s *testStore) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if err := s.Store.Set(ctx, key, val, ttl); err != nil {
		return err
	}
	s.track(key, ttl)
	return nil
}

func (s *testStore) SetNX(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error) {
	s.mu.Lock()
	fail := s.failGrants > 0 && strings.HasPrefix(key, store.Key("grant", ""))
	if fail {
		s.failGrants--
	}
	s.mu.Unlock()
	if fail {
		return false, errDown
	}
	s.expired(ctx, key)
	ok, err := s.Store.SetNX(ctx, key, val, ttl)
	if ok {
		s.track(key, ttl)
	}
	return ok, err
}
