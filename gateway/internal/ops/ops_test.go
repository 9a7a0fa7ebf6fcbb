package ops

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/store"
)

type keyStatus struct {
	loaded bool
	fp     string
}

func (k keyStatus) Loaded() bool        { return k.loaded }
func (k keyStatus) Fingerprint() string { return k.fp }

type ringStatus []string

func (r ringStatus) KeyIDs() []string { return r }

// liveRing is a RingStatus whose key ids change while the registry runs.
type liveRing struct{ ids atomic.Pointer[[]string] }

func (l *liveRing) KeyIDs() []string { return *l.ids.Load() }

// TestRegistryPublishesChangesAtOnce: with an hour between heartbeats, a new ring key still
// reaches the registry within about a second (what a ring rotation waits on).
func TestRegistryPublishesChangesAtOnce(t *testing.T) {
	st := store.NewMemory()
	defer st.Close()
	ring := &liveRing{}
	ring.ids.Store(&[]string{"k1"})
	r, err := NewRegistry(st, "replica-a", keyStatus{true, "0a1b2c3d"}, RegistryOptions{Interval: time.Hour, Ring: ring})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	listed := func(want ...string) bool {
		reps, err := r.List(t.Context())
		return err == nil && len(reps) == 1 && slices.Equal(reps[0].RingKeyIDs, want)
	}
	waitUntil(t, func() bool { return listed("k1") })
	ring.ids.Store(&[]string{"k1", "k2"})
	waitUntil(t, func() bool { return listed("k1", "k2") })
}

// waitUntil polls cond for up to 5 s (a bound against hangs, not a timing assertion).
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type downStore struct{ store.Store }

func (downStore) Ping(context.Context) error { return errors.New("dial tcp: refused") }

func get(t *testing.T, h http.Handler, url string) (int, readyBody) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, url, nil))
	var b readyBody
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatalf("body %q: %v", rec.Body.String(), err)
	}
	return rec.Code, b
}

func TestReadyAndRegistry(t *testing.T) {
	st := store.NewMemory()
	defer st.Close()
	a, err := NewRegistry(st, "replica-a", keyStatus{true, "0a1b2c3d"}, RegistryOptions{Interval: time.Hour, TTL: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewRegistry(st, "replica-b", keyStatus{true, "ffffffff"}, RegistryOptions{Interval: time.Hour, Ring: ringStatus{"k1", "k2"}})
	if _, err := NewRegistry(st, "bad:id", keyStatus{}, RegistryOptions{}); err == nil {
		t.Fatal("accepted a replica id with ':'")
	}
	ctx := t.Context()
	if err := a.Beat(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Beat(ctx); err != nil {
		t.Fatal(err)
	}
	h := Ready(ReadyConfig{Store: st, Keys: keyStatus{true, "0a1b2c3d"}, Registry: a})
	code, body := get(t, h, "/readyz?replicas=1")
	if code != 200 || !body.Ready || len(body.Replicas) != 2 || body.Replicas[0].ID != "replica-a" || body.Replicas[0].KeyFingerprint != "0a1b2c3d" || body.Replicas[1].KeyFingerprint != "ffffffff" {
		t.Fatalf("%d %+v", code, body)
	}
	if got := body.Replicas[1].RingKeyIDs; len(got) != 2 || got[0] != "k1" || got[1] != "k2" || body.Replicas[0].RingKeyIDs != nil {
		t.Fatalf("ring key ids: a %v, b %v (want none, [k1 k2])", body.Replicas[0].RingKeyIDs, got)
	}
	time.Sleep(80 * time.Millisecond) // replica-a's record expires (its TTL), b's does not
	if reps, _ := a.List(ctx); len(reps) != 1 || reps[0].ID != "replica-b" {
		t.Fatalf("after expiry: %+v", reps)
	}
	code, body = get(t, h, "/readyz")
	if code != 200 || body.Replicas != nil {
		t.Fatalf("plain readyz: %d %+v", code, body)
	}
	code, body = get(t, Ready(ReadyConfig{Store: downStore{st}, Keys: keyStatus{}, Checks: []Check{{"session ring", func(context.Context) error { return errors.New("not loaded") }}}}), "/readyz")
	if code != 503 || body.Ready || len(body.Reasons) != 3 {
		t.Fatalf("not ready: %d %+v", code, body)
	}
	rec := httptest.NewRecorder()
	Health().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != 200 {
		t.Fatal(rec.Code)
	}
	// Run removes the record on shutdown.
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { b.Run(rctx); close(done) }()
	cancel()
	<-done
	if reps, _ := a.List(ctx); len(reps) != 0 {
		t.Fatalf("after shutdown: %+v", reps)
	}
}
