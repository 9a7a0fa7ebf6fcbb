package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// pendingRetry is how often a Keeper without a ring retries.
const pendingRetry = 5 * time.Second

// DefaultReloadInterval is how often a Keeper reloads the ring when no interval is given.
const DefaultReloadInterval = time.Minute

// Keeper holds the current ring and reloads it periodically from a load function (a file or a
// Key Vault secret). A failed reload keeps the last good ring. It is safe for concurrent use.
type Keeper struct {
	load     func(context.Context) ([]byte, error)
	interval time.Duration
	logger   *slog.Logger
	ring     atomic.Pointer[Ring]
	lastErr  atomic.Pointer[error]
	failures atomic.Uint64 // failed reloads
	lastLoad atomic.Int64  // unix nanoseconds of the latest successful load
}

// NewKeeper loads the ring once (that load must succeed) and returns a Keeper. interval ≤ 0
// means DefaultReloadInterval; a nil logger discards logs. Call Run to keep it fresh.
func NewKeeper(ctx context.Context, load func(context.Context) ([]byte, error), interval time.Duration, logger *slog.Logger) (*Keeper, error) {
	if load == nil {
		return nil, errors.New("session keeper: nil load function")
	}
	if interval <= 0 {
		interval = DefaultReloadInterval
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	k := &Keeper{load: load, interval: interval, logger: logger}
	if err := k.Reload(ctx); err != nil {
		return nil, err
	}
	return k, nil
}

// NewPendingKeeper returns a Keeper with no ring yet, for a gateway that starts alive but not
// ready until its ring exists (Azure: the ring is created after provisioning). Run loads it:
// at once, then every 5 s (or interval, if shorter) until the first success, then every
// interval. Until then Ring returns nil and Loaded false; users must fail closed.
func NewPendingKeeper(load func(context.Context) ([]byte, error), interval time.Duration, logger *slog.Logger) (*Keeper, error) {
	if load == nil {
		return nil, errors.New("session keeper: nil load function")
	}
	if interval <= 0 {
		interval = DefaultReloadInterval
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Keeper{load: load, interval: interval, logger: logger}, nil
}

// NewStaticKeeper returns a Keeper that always holds r (for tests and fixed setups).
func NewStaticKeeper(r *Ring) *Keeper {
	k := &Keeper{interval: DefaultReloadInterval, logger: slog.New(slog.DiscardHandler)}
	k.ring.Store(r)
	k.load = func(context.Context) ([]byte, error) { return r.Marshal() }
	return k
}

// Ring returns the current ring: never nil from NewKeeper or NewStaticKeeper, nil from
// NewPendingKeeper until the first successful load.
func (k *Keeper) Ring() *Ring { return k.ring.Load() }

// Loaded reports whether a ring is loaded (readiness).
func (k *Keeper) Loaded() bool { return k.ring.Load() != nil }

// Reload loads and parses the ring now; on success it replaces the current ring, on failure
// it keeps the current one and returns the error (which never contains key material).
func (k *Keeper) Reload(ctx context.Context) error {
	doc, err := k.load(ctx)
	if err != nil {
		err = fmt.Errorf("load session key ring: %w", err)
		k.lastErr.Store(&err)
		k.failures.Add(1)
		return err
	}
	r, err := ParseRing(doc)
	if err != nil {
		k.lastErr.Store(&err)
		k.failures.Add(1)
		return err
	}
	old := k.ring.Swap(r)
	k.lastErr.Store(nil)
	k.lastLoad.Store(time.Now().UnixNano())
	if old == nil || old.ActiveID() != r.ActiveID() || len(old.keys) != len(r.keys) {
		k.logger.Info("session key ring loaded", "active_kid", r.ActiveID(), "keys", len(r.keys))
	}
	return nil
}

// Run reloads the ring every interval until ctx ends. Failures are logged (without secrets)
// and the last good ring stays in use.
func (k *Keeper) Run(ctx context.Context) {
	for !k.Loaded() {
		if err := k.Reload(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			k.logger.Warn("session key ring not available yet; not ready", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(min(k.interval, pendingRetry)):
			}
		}
	}
	t := time.NewTicker(k.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := k.Reload(ctx); err != nil && ctx.Err() == nil {
				k.logger.Warn("session key ring reload failed; keeping the last good ring", "err", err)
			}
		}
	}
}

// KeyIDs returns the ids of every key of the current ring (the keys this replica can open
// tokens with), or nil before the first load. Key ids are not secret: every token carries one.
func (k *Keeper) KeyIDs() []string {
	r := k.ring.Load()
	if r == nil {
		return nil
	}
	ids := make([]string, len(r.keys))
	for i, key := range r.keys {
		ids[i] = key.ID
	}
	return ids
}

// ReloadFailures counts the loads that failed (source unreachable or an invalid document).
func (k *Keeper) ReloadFailures() uint64 { return k.failures.Load() }

// LastLoad is when the ring was last loaded successfully (zero before the first load, and for
// NewStaticKeeper).
func (k *Keeper) LastLoad() time.Time {
	if n := k.lastLoad.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// LastError returns the error of the latest reload, or nil if it succeeded.
func (k *Keeper) LastError() error {
	if e := k.lastErr.Load(); e != nil {
		return *e
	}
	return nil
}
