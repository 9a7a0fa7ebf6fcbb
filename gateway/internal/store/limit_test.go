package store_test

import (
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/store"
	"github.com/mcpgate/mcpgate/gateway/internal/store/redistest"
)

func TestLimiters(t *testing.T) {
	run := func(t *testing.T, l store.Limiter) {
		ctx := t.Context()
		lim := store.Limit{Rate: 3, Burst: 3, Period: time.Hour}
		key := store.Key("rl", "test", t.Name())
		for i := range 3 {
			r, err := l.Allow(ctx, key, lim)
			if err != nil || !r.Allowed {
				t.Fatalf("event %d: %+v, %v", i, r, err)
			}
			if r.Remaining != 2-i {
				t.Fatalf("event %d: remaining %d, want %d", i, r.Remaining, 2-i)
			}
		}
		r, err := l.Allow(ctx, key, lim)
		if err != nil || r.Allowed {
			t.Fatalf("4th event allowed: %+v, %v", r, err)
		}
		if r.RetryAfter <= 0 || r.RetryAfter > 20*time.Minute+time.Second {
			t.Fatalf("RetryAfter = %v, want about 20m", r.RetryAfter)
		}
		// Other keys are independent.
		if r, _ := l.Allow(ctx, key+"x", lim); !r.Allowed {
			t.Fatal("independent key limited")
		}
		if _, err := l.Allow(ctx, key, store.Limit{}); err == nil {
			t.Fatal("zero limit accepted")
		}
	}
	t.Run("memory", func(t *testing.T) { run(t, store.NewMemoryLimiter(100)) })
	t.Run("redis", func(t *testing.T) {
		srv := redistest.Start(t)
		st, err := store.NewRedis(t.Context(), store.RedisOptions{URL: srv.URL()})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		run(t, store.NewRedisLimiter(st))
	})
}

func TestMemoryLimiterBounded(t *testing.T) {
	l := store.NewMemoryLimiter(10)
	lim := store.Limit{Rate: 1, Burst: 1, Period: time.Hour}
	for i := range 1000 {
		if r, _ := l.Allow(t.Context(), store.Key("rl", string(rune('a'+i%26)), string(rune(i))), lim); !r.Allowed {
			t.Fatalf("fresh key %d limited", i)
		}
	}
	if n := l.Len(); n > 10 {
		t.Fatalf("limiter holds %d keys, bound is 10", n)
	}
}
