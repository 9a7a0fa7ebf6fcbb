package store

import (
	"context"
	"time"
)

// Limit is a rate: Rate events per Period with bursts up to Burst.
type Limit struct {
	Rate   int
	Burst  int
	Period time.Duration
}

// PerMinute returns a limit of n events per minute with a burst of n.
func PerMinute(n int) Limit { return Limit{Rate: n, Burst: n, Period: time.Minute} }

// Result is the outcome of one Allow call.
type Result struct {
	// Allowed reports whether the event may proceed.
	Allowed bool
	// RetryAfter is how long to wait before retrying when not allowed.
	RetryAfter time.Duration
	// Remaining is how many more events are allowed right now.
	Remaining int
}

// Limiter decides whether one more event for key is allowed under limit. key is built with Key
// (hash any client-controlled part such as an IP address if you need to; IPs are fine as is).
type Limiter interface {
	Allow(ctx context.Context, key string, limit Limit) (Result, error)
}
