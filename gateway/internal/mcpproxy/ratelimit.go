package mcpproxy

import (
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter holds one token bucket per user and client on this replica.
type limiter struct {
	limit  rate.Limit
	burst  int
	policy []string // RateLimit-Policy header value

	mu      sync.Mutex
	buckets map[limitKey]*bucket
}

type limitKey struct{ user, client string }

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiter(limit rate.Limit, burst int) *limiter {
	l := &limiter{limit: limit, burst: burst, buckets: map[limitKey]*bucket{}}
	if limit != rate.Inf {
		// Quota = burst; window = the time to refill it.
		window := max(1, int(float64(burst)/float64(limit)+0.5))
		l.policy = []string{`"mcp";q=` + strconv.Itoa(burst) + `;w=` + strconv.Itoa(window)}
	}
	return l
}

// allow takes one token for user+client. When none is left it returns the wait until one is.
func (l *limiter) allow(user, client string, now time.Time) (time.Duration, bool) {
	if l.limit == rate.Inf {
		return 0, true
	}
	k := limitKey{user, client}
	l.mu.Lock()
	b := l.buckets[k]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.buckets[k] = b
	}
	b.seen = now
	l.mu.Unlock()
	if b.lim.AllowN(now, 1) {
		return 0, true
	}
	missing := 1 - b.lim.TokensAt(now)
	return time.Duration(missing / float64(l.limit) * float64(time.Second)), false
}

// sweep drops buckets idle long enough to have refilled completely.
func (l *limiter) sweep(now time.Time) {
	if l.limit == rate.Inf {
		return
	}
	full := time.Duration(float64(l.burst)/float64(l.limit)*float64(time.Second)) + time.Minute
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, b := range l.buckets {
		if now.Sub(b.seen) > full {
			delete(l.buckets, k)
		}
	}
}
