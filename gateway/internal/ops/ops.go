// Package ops serves the gateway's operational endpoints: /healthz (the process is alive),
// /readyz (the store is reachable and a function key is loaded, plus any extra checks) and
// /readyz?replicas=1 (the replica registry: each replica's function-key fingerprint and
// session-key ids, so a rotation can see when every replica uses the new key). The registry is a record per replica
// in the store, `mcpgate:replica:{id}`, refreshed by a heartbeat and expiring with a TTL.
package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/store"
)

// Store is the part of store.Store the registry uses.
type Store interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
	Del(ctx context.Context, keys ...string) error
	SAdd(ctx context.Context, key, member string, ttl time.Duration) error
	SRem(ctx context.Context, key, member string) error
	SMembers(ctx context.Context, key string) ([]string, error)
	Ping(ctx context.Context) error
}

// KeyStatus reports the function key's state (funckey.Keys satisfies it).
type KeyStatus interface {
	Loaded() bool
	Fingerprint() string
}

// RingStatus reports the session-key ring a replica holds (session.Keeper satisfies it).
type RingStatus interface {
	// KeyIDs returns the ids of the keys the replica can open tokens with.
	KeyIDs() []string
}

// Replica is one replica's registry record.
type Replica struct {
	ID             string    `json:"id"`
	KeyFingerprint string    `json:"key_fingerprint"`
	Time           time.Time `json:"time"`
	Ready          bool      `json:"ready"`
	// RingKeyIDs are the session-key ids this replica has loaded, so that a ring rotation
	// can promote a next key once every replica knows it (empty: not reported).
	RingKeyIDs []string `json:"ring_key_ids,omitempty"`
}

// Key names. The set lets List find records without scanning; members whose record expired
// are dropped by List.
var (
	replicaPrefix = store.Key("replica") + ":"
	replicaSet    = store.Key("replicas")
)

// Registry records this replica in the store and lists all replicas.
type Registry struct {
	st       Store
	id       string
	keys     KeyStatus
	ring     RingStatus
	interval time.Duration
	ttl      time.Duration
	log      *slog.Logger
}

// RegistryOptions tune the registry. Zero values take the defaults.
type RegistryOptions struct {
	// Interval between heartbeats (default 10 s).
	Interval time.Duration
	// TTL of a record (default 3×Interval): a replica that stops beating vanishes after it.
	TTL time.Duration
	// Logger for heartbeat failures (default: discard).
	Logger *slog.Logger
	// Ring, when set, adds the session-key ids the replica holds to its record.
	Ring RingStatus
}

// NewRegistry returns the registry for replica id.
func NewRegistry(st Store, id string, keys KeyStatus, opts RegistryOptions) (*Registry, error) {
	if id == "" || strings.ContainsAny(id, ": \t\r\n") || len(id) > 128 {
		return nil, fmt.Errorf("ops: replica id %q must be 1–128 characters without ':' or spaces", id)
	}
	if opts.Interval <= 0 {
		opts.Interval = 10 * time.Second
	}
	if opts.TTL <= 0 {
		opts.TTL = 3 * opts.Interval
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Registry{st: st, id: id, keys: keys, ring: opts.Ring, interval: opts.Interval, ttl: opts.TTL, log: opts.Logger}, nil
}

// ID is this replica's id.
func (r *Registry) ID() string { return r.id }

// record is this replica's record as of now.
func (r *Registry) record() Replica {
	rec := Replica{ID: r.id, KeyFingerprint: r.keys.Fingerprint(), Time: time.Now().UTC(), Ready: r.keys.Loaded()}
	if r.ring != nil {
		rec.RingKeyIDs = r.ring.KeyIDs()
	}
	return rec
}

// Beat writes this replica's record now.
func (r *Registry) Beat(ctx context.Context) error {
	_, err := r.beat(ctx, r.record())
	return err
}

// beat writes rec and returns it.
func (r *Registry) beat(ctx context.Context, rec Replica) (Replica, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return rec, fmt.Errorf("ops: encode replica record: %w", err)
	}
	if err := r.st.Set(ctx, replicaPrefix+r.id, b, r.ttl); err != nil {
		return rec, fmt.Errorf("ops: write replica record: %w", err)
	}
	if err := r.st.SAdd(ctx, replicaSet, r.id, 0); err != nil {
		return rec, fmt.Errorf("ops: add replica to set: %w", err)
	}
	return rec, nil
}

// changeCheck is how often Run looks for a change of the function key or the session-key
// ring between heartbeats: a change is written at once, so that a rotation waiting on
// /readyz?replicas=1 sees it within a second rather than a heartbeat interval.
const changeCheck = time.Second

// Run beats every Interval, and within changeCheck of a change of what the record reports,
// until ctx ends; then it removes this replica's record.
func (r *Registry) Run(ctx context.Context) {
	t := time.NewTicker(min(r.interval, changeCheck))
	defer t.Stop()
	var last Replica // the latest record written or attempted: a failure is retried when due
	for first := true; ; first = false {
		if now := r.record(); first || !sameState(last, now) || now.Time.Sub(last.Time) >= r.interval-changeCheck/2 {
			var err error
			last, err = r.beat(ctx, now)
			if err != nil && ctx.Err() == nil {
				r.log.Warn("replica heartbeat failed", "replica", r.id, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_ = r.st.Del(dctx, replicaPrefix+r.id)
			_ = r.st.SRem(dctx, replicaSet, r.id)
			cancel()
			return
		case <-t.C:
		}
	}
}

// sameState reports whether two records report the same key, readiness and ring.
func sameState(a, b Replica) bool {
	return a.KeyFingerprint == b.KeyFingerprint && a.Ready == b.Ready && slices.Equal(a.RingKeyIDs, b.RingKeyIDs)
}

// List returns the live replicas sorted by id, dropping set members whose record expired.
func (r *Registry) List(ctx context.Context) ([]Replica, error) {
	ids, err := r.st.SMembers(ctx, replicaSet)
	if err != nil {
		return nil, fmt.Errorf("ops: list replicas: %w", err)
	}
	out := make([]Replica, 0, len(ids))
	for _, id := range ids {
		b, err := r.st.Get(ctx, replicaPrefix+id)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				_ = r.st.SRem(ctx, replicaSet, id)
				continue
			}
			return nil, fmt.Errorf("ops: read replica %s: %w", id, err)
		}
		var rec Replica
		if json.Unmarshal(b, &rec) != nil {
			continue
		}
		out = append(out, rec)
	}
	slices.SortFunc(out, func(a, b Replica) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Check is an extra readiness check: nil error means ready.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// ReadyConfig configures the readiness handler.
type ReadyConfig struct {
	// Store is pinged (required).
	Store interface {
		Ping(ctx context.Context) error
	}
	// Keys must have a function key loaded (required).
	Keys KeyStatus
	// Registry, when set, serves ?replicas=1.
	Registry *Registry
	// Checks are extra checks (e.g. the session-key ring is loaded).
	Checks []Check
	// Timeout bounds each check (default 1 s).
	Timeout time.Duration
}

type readyBody struct {
	Ready    bool      `json:"ready"`
	Replica  string    `json:"replica,omitempty"`
	Reasons  []string  `json:"reasons,omitempty"`
	Replicas []Replica `json:"replicas,omitempty"`
}

// Ready returns the /readyz handler: 200 when the store answers a ping, a function key is
// loaded and every extra check passes, else 503 with the reasons. With ?replicas=1 it also
// lists the replica registry.
func Ready(cfg ReadyConfig) http.Handler {
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), cfg.Timeout)
		defer cancel()
		body := readyBody{Reasons: []string{}}
		if cfg.Registry != nil {
			body.Replica = cfg.Registry.id
		}
		storeOK := true
		if err := cfg.Store.Ping(ctx); err != nil {
			storeOK = false
			body.Reasons = append(body.Reasons, "store unreachable")
		}
		if !cfg.Keys.Loaded() {
			body.Reasons = append(body.Reasons, "no function key loaded")
		}
		for _, c := range cfg.Checks {
			if err := c.Fn(ctx); err != nil {
				body.Reasons = append(body.Reasons, c.Name+": "+err.Error())
			}
		}
		if r.URL.Query().Get("replicas") == "1" && cfg.Registry != nil && storeOK {
			reps, err := cfg.Registry.List(ctx)
			if err != nil {
				body.Reasons = append(body.Reasons, "replica registry unreadable")
			}
			body.Replicas = reps
		}
		body.Ready = len(body.Reasons) == 0
		status := http.StatusOK
		if !body.Ready {
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, body)
	})
}

// Health returns the /healthz handler: 200 while the process serves requests.
func Health() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
