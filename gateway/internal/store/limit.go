package store

import (
	"context"
	"errors"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limit is a rate: Rate events per Period with bursts up to Burst.
type Limit struct {
	Rate   int
	Burst  int
	Period time.Duration
}

// PerMinute returns a limit of n events per minute with a burst of n.
func PerMinute(n int) Limit { return Limit{Rate: n, Burst: n, Period: time.Minute} }

// PerSecond returns a limit of n events per second with a burst of n.
func PerSecond(n int) Limit { return Limit{Rate: n, Burst: n, Period: time.Second} }

func (l Limit) validate() error {
	if l.Rate <= 0 || l.Burst <= 0 || l.Period <= 0 {
		return errors.New("store: rate limit needs a positive rate, burst and period")
	}
	return nil
}

// Result is the outcome of one Allow call.
type Result struct {
	// Allowed reports whether the event may proceed.
	Allowed bool
	// RetryAfter is how long to wait before retrying when not allowed.
	RetryAfter time.Duration
	// Remaining is how many more events are allowed right now.
	Remaining int
}

// Limiter decides whether one more event for key is allowed under limit. Build key with Key;
// an IP address or a validated client id is fine as a part, arbitrary client text is not.
type Limiter interface {
	Allow(ctx context.Context, key string, limit Limit) (Result, error)
}

// MemoryLimiter is the in-memory Limiter: a golang.org/x/time/rate token bucket per key, in a
// map bounded to maxKeys (idle keys are evicted first).
type MemoryLimiter struct {
	mu      sync.Mutex
	maxKeys int
	m       map[string]*memLimit
	now     func() time.Time
}

type memLimit struct {
	lim   *rate.Limiter
	limit Limit
	last  time.Time
}

// NewMemoryLimiter returns a limiter that tracks at most maxKeys keys (≤ 0: 10000).
func NewMemoryLimiter(maxKeys int) *MemoryLimiter {
	if maxKeys <= 0 {
		maxKeys = 10000
	}
	return &MemoryLimiter{maxKeys: maxKeys, m: map[string]*memLimit{}, now: time.Now}
}

// Allow implements Limiter.
func (l *MemoryLimiter) Allow(ctx context.Context, key string, limit Limit) (Result, error) {
	if err := limit.validate(); err != nil {
		return Result{}, err
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.m[key]
	if !ok || e.limit != limit {
		if !ok && len(l.m) >= l.maxKeys {
			l.evict(now)
		}
		e = &memLimit{lim: rate.NewLimiter(rate.Limit(float64(limit.Rate)/limit.Period.Seconds()), limit.Burst), limit: limit}
		l.m[key] = e
	}
	e.last = now
	r := e.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return Result{Allowed: false, RetryAfter: d, Remaining: 0}, nil
	}
	return Result{Allowed: true, Remaining: int(e.lim.TokensAt(now))}, nil
}

// evict drops keys idle for longer than their period (their bucket is full again, so
// forgetting them changes nothing); if that frees too little, it drops arbitrary keys down to
// 90% of the bound, so that a flood of new keys costs amortized constant time.
// Caller holds l.mu.
func (l *MemoryLimiter) evict(now time.Time) {
	for k, e := range l.m {
		if now.Sub(e.last) > e.limit.Period {
			delete(l.m, k)
		}
	}
	target := l.maxKeys * 9 / 10
	for k := range l.m {
		if len(l.m) <= target {
			break
		}
		delete(l.m, k)
	}
}

// Len reports how many keys the limiter currently tracks.
func (l *MemoryLimiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}
