package grants_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/grants"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
)

// TestExist: live grants exist; revoked, expired and unknown ones do not; more ids than one
// Redis batch keep their order.
func TestExist(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		ctx := t.Context()
		m := grants.New(st, newKeeper(t), grants.Options{})
		short := grants.New(st, newKeeper(t), grants.Options{AccessTTL: 50 * time.Millisecond, RefreshTTL: 100 * time.Millisecond})
		live, revoked, expiring := issue(t, m, sseRes), issue(t, m, sseRes), issue(t, short, sseRes)
		if err := m.Revoke(ctx, revoked.GrantID); err != nil {
			t.Fatal(err)
		}
		ids := []string{live.GrantID, revoked.GrantID, expiring.GrantID}
		got, err := m.Exist(ctx, ids)
		if err != nil || !slices.Equal(got, []bool{true, false, true}) {
			t.Fatalf("Exist = %v, %v; want [true false true]", got, err)
		}
		time.Sleep(150 * time.Millisecond)
		// 1,200 unknown ids around the live one: three Redis batches, order kept.
		many := make([]string, 1201)
		for i := range many {
			many[i] = fmt.Sprintf("unknown-%d", i)
		}
		many[700] = live.GrantID
		many[1200] = expiring.GrantID
		got, err = m.Exist(ctx, many)
		if err != nil || len(got) != len(many) {
			t.Fatalf("Exist(1201 ids): %d answers, %v", len(got), err)
		}
		for i, ok := range got {
			if ok != (i == 700) {
				t.Fatalf("Exist: id %d (%s) = %v", i, many[i], ok)
			}
		}
		if got, err := m.Exist(ctx, nil); err != nil || len(got) != 0 {
			t.Fatalf("Exist(nil) = %v, %v", got, err)
		}
	})
}

func TestExistStoreDown(t *testing.T) {
	srv, st := startRedis(t)
	m := grants.New(st, newKeeper(t), grants.Options{})
	ts := issue(t, m, sseRes)
	srv.Kill()
	if got, err := m.Exist(t.Context(), []string{ts.GrantID}); !errors.Is(err, grants.ErrUnavailable) || got != nil {
		t.Fatalf("Exist with Redis down = %v, %v; want ErrUnavailable", got, err)
	}
	mem := store.NewMemory()
	mm := grants.New(mem, newKeeper(t), grants.Options{})
	_ = mem.Close()
	if _, err := mm.Exist(t.Context(), []string{ts.GrantID}); !errors.Is(err, grants.ErrUnavailable) {
		t.Fatalf("Exist on a closed memory store: %v", err)
	}
}

// BenchmarkExist10k is the periodic grant check of a replica holding 10,000 SSE streams of
// distinct grants (real redis-server on loopback): 20 pipelined round trips.
func BenchmarkExist10k(b *testing.B) {
	_, st := startRedis(b)
	m := grants.New(st, newKeeper(b), grants.Options{})
	ids := make([]string, 10_000)
	for i := range ids {
		ids[i] = issue(b, m, sseRes).GrantID
	}
	for b.Loop() {
		got, err := m.Exist(b.Context(), ids)
		if err != nil || !got[len(got)-1] {
			b.Fatal(got[len(got)-1], err)
		}
	}
}
