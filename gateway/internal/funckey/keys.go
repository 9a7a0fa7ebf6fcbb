package funckey

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrNeverLoaded is returned by Current while no key has ever loaded (the gateway fails closed).
var ErrNeverLoaded = errors.New("funckey: no function key has been loaded")

// Options tune Keys. The zero value is usable.
type Options struct {
	// PollInterval is how often Run reloads the source (default: 2 s for a file, 5 min for
	// Key Vault, never for a static value). Negative disables polling.
	PollInterval time.Duration
	// MinRefreshInterval is the shortest time between two on-demand refreshes (default 5 s):
	// a storm of backend 401s causes at most one source read per interval.
	MinRefreshInterval time.Duration
	// Logger receives load failures and key changes (by fingerprint only). Default: discard.
	Logger *slog.Logger
	// Registerer, when set, receives mcpgate_function_key_refreshes_total{trigger,result}
	// and mcpgate_function_key_loaded.
	Registerer prometheus.Registerer
}

type current struct {
	value       string
	fingerprint string
}

// Keys caches the current function key of a Source. It is safe for concurrent use; Current
// is a lock-free load on the hot path.
type Keys struct {
	src    Source
	poll   time.Duration
	minInt time.Duration
	log    *slog.Logger

	cur atomic.Pointer[current]

	mu       sync.Mutex // guards flight and last
	flight   *flight
	last     time.Time // end of the last completed on-demand refresh
	refreshC *prometheus.CounterVec
}

type flight struct {
	done chan struct{}
	err  error
}

// New returns Keys over src. It does not load yet: call Refresh (or Run) to load.
func New(src Source, opts Options) *Keys {
	k := &Keys{src: src, poll: opts.PollInterval, minInt: opts.MinRefreshInterval, log: opts.Logger}
	if k.poll == 0 {
		if iv, ok := src.(intervaler); ok {
			k.poll = iv.pollInterval()
		}
	}
	if k.minInt <= 0 {
		k.minInt = 5 * time.Second
	}
	if k.log == nil {
		k.log = slog.New(slog.DiscardHandler)
	}
	k.refreshC = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mcpgate_function_key_refreshes_total",
		Help: "Function-key reloads by trigger (start, lazy, poll, demand) and result (changed, unchanged, error, skipped).",
	}, []string{"trigger", "result"})
	if opts.Registerer != nil {
		loaded := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mcpgate_function_key_loaded",
			Help: "1 when a function key is loaded, else 0.",
		}, func() float64 {
			if k.Loaded() {
				return 1
			}
			return 0
		})
		for _, c := range []prometheus.Collector{k.refreshC, loaded} {
			if err := opts.Registerer.Register(c); err != nil {
				k.log.Warn("funckey: register metric", "err", err)
			}
		}
	}
	return k
}

// Describe names the key source (never the key).
func (k *Keys) Describe() string { return k.src.Describe() }

// Current returns the cached key. Only when no key has ever loaded does it try the source
// (single-flight) and, if that fails, return an error wrapping ErrNeverLoaded.
func (k *Keys) Current(ctx context.Context) (string, error) {
	if c := k.cur.Load(); c != nil {
		return c.value, nil
	}
	// Lazy first load: at most one source read per MinRefreshInterval while nothing loads.
	err := k.refresh(ctx, "lazy", false)
	if c := k.cur.Load(); c != nil {
		return c.value, nil
	}
	if err == nil {
		err = ErrNoKey
	}
	return "", fmt.Errorf("%w: %w", ErrNeverLoaded, err)
}

// Loaded reports whether a key has ever loaded.
func (k *Keys) Loaded() bool { return k.cur.Load() != nil }

// Fingerprint is the first 8 hex digits of the SHA-256 of the current key, or "" when none
// is loaded. It identifies the key in logs and in the replica registry.
func (k *Keys) Fingerprint() string {
	if c := k.cur.Load(); c != nil {
		return c.fingerprint
	}
	return ""
}

// Fingerprint returns the first 8 hex digits of the SHA-256 of key.
func Fingerprint(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:4])
}

// Refresh reloads the key on demand (after a backend 401). Concurrent callers share one load;
// a call within MinRefreshInterval of the previous on-demand refresh returns at once without
// reading the source. A failed load keeps the previous key.
func (k *Keys) Refresh(ctx context.Context) error { return k.refresh(ctx, "demand", false) }

func (k *Keys) refresh(ctx context.Context, trigger string, force bool) error {
	k.mu.Lock()
	if f := k.flight; f != nil {
		k.mu.Unlock()
		select {
		case <-f.done:
			return f.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if !force && !k.last.IsZero() && time.Since(k.last) < k.minInt {
		k.mu.Unlock()
		k.refreshC.WithLabelValues(trigger, "skipped").Inc()
		return nil
	}
	f := &flight{done: make(chan struct{})}
	k.flight = f
	k.mu.Unlock()

	// The load is detached from the first caller's cancellation so that waiters get a result.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	f.err = k.load(lctx, trigger)
	cancel()

	k.mu.Lock()
	k.flight = nil
	if trigger == "demand" || trigger == "lazy" { // periodic loads never delay a demand
		k.last = time.Now()
	}
	k.mu.Unlock()
	close(f.done)
	return f.err
}

// load reads the source and swaps the cached key when it changed.
func (k *Keys) load(ctx context.Context, trigger string) error {
	var v string
	var err error
	if fl, ok := k.src.(freshLoader); ok && trigger == "demand" {
		v, err = fl.LoadFresh(ctx)
	} else {
		v, err = k.src.Load(ctx)
	}
	if err != nil {
		k.refreshC.WithLabelValues(trigger, "error").Inc()
		k.log.Warn("function key load failed", "source", k.src.Describe(), "trigger", trigger,
			"loaded", k.Loaded(), "err", err)
		return err
	}
	old := k.cur.Load()
	if old != nil && old.value == v {
		k.refreshC.WithLabelValues(trigger, "unchanged").Inc()
		return nil
	}
	n := &current{value: v, fingerprint: Fingerprint(v)}
	k.cur.Store(n)
	k.refreshC.WithLabelValues(trigger, "changed").Inc()
	prev := ""
	if old != nil {
		prev = old.fingerprint
	}
	k.log.Info("function key loaded", "source", k.src.Describe(), "trigger", trigger,
		"fingerprint", n.fingerprint, "previous", prev)
	return nil
}

// Run loads the key now and then every PollInterval until ctx ends. It returns when ctx is
// done. Use it in a goroutine; Current works without it (loading lazily once).
func (k *Keys) Run(ctx context.Context) {
	_ = k.refresh(ctx, "start", true)
	if k.poll <= 0 {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(k.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = k.refresh(ctx, "poll", true)
		}
	}
}
