package keyrotation_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/keyrotation"
	"github.com/mcpgate/mcpgate/gateway/internal/ops"
	"github.com/mcpgate/mcpgate/gateway/internal/session"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
)

type loadedKey struct{}

func (loadedKey) Loaded() bool        { return true }
func (loadedKey) Fingerprint() string { return "0a1b2c3d" }

// TestRotateRingGatewayReplicas: with GatewayURL, promotion waits for what every replica
// reports through the real replica registry and /readyz?replicas=1, not for the clock. Replica
// b cannot re-read the ring (its source refuses it, as Key Vault does when access is lost):
// the next key is not promoted — which, by the clock alone, it would have been — until b
// reads the ring again.
func TestRotateRingGatewayReplicas(t *testing.T) {
	ctx := t.Context()
	s := memSecret(t)
	if _, err := keyrotation.GenerateRing(ctx, s, false, time.Now()); err != nil {
		t.Fatal(err)
	}
	var bDenied atomic.Bool
	bLoad := func(ctx context.Context) ([]byte, error) {
		if bDenied.Load() {
			return nil, errors.New("403 Forbidden")
		}
		return s.Get(ctx)
	}
	ka, err := session.NewKeeper(ctx, s.Get, 5*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := session.NewKeeper(ctx, bLoad, 5*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	bDenied.Store(true)
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	regOpts := func(k *session.Keeper) ops.RegistryOptions {
		return ops.RegistryOptions{Interval: 5 * time.Millisecond, Ring: k}
	}
	ra, _ := ops.NewRegistry(st, "replica-a", loadedKey{}, regOpts(ka))
	rb, _ := ops.NewRegistry(st, "replica-b", loadedKey{}, regOpts(kb))
	for _, run := range []func(context.Context){ka.Run, kb.Run, ra.Run, rb.Run} {
		go run(ctx)
	}
	gw := httptest.NewServer(ops.Ready(ops.ReadyConfig{Store: st, Keys: loadedKey{}, Registry: ra}))
	t.Cleanup(gw.Close)
	opts := keyrotation.RingRotateOptions{GatewayURL: gw.URL, ReloadInterval: time.Nanosecond, Poll: 5 * time.Millisecond}

	res, err := keyrotation.RotateRing(ctx, s, opts)
	if err != nil || res.Action != "added-next" || res.Added == "" {
		t.Fatalf("step 1: %v %+v", err, res)
	}
	next := res.Added
	time.Sleep(50 * time.Millisecond) // many reload intervals and heartbeats: a has it, b cannot
	res, err = keyrotation.RotateRing(ctx, s, opts)
	if !errors.Is(err, keyrotation.ErrTooEarly) || res.Action != "waiting" || !strings.Contains(err.Error(), "replica-b (holds ") || strings.Contains(err.Error(), "replica-a") {
		t.Fatalf("promote while b lacks the next key: %v %+v", err, res)
	}
	wait := opts
	wait.Wait, wait.Timeout = true, 2*time.Second // always runs out: room for slow probes
	if _, err := keyrotation.RotateRing(ctx, s, wait); err == nil || !strings.Contains(err.Error(), "not promoted") || !strings.Contains(err.Error(), "replica-b") {
		t.Fatalf("wait with b stuck: %v", err)
	}
	if r := ringOf(t, s); r.ActiveID() == next {
		t.Fatal("promoted a key that replica b does not hold")
	}

	bDenied.Store(false) // b's access comes back: it reloads, beats, and the wait ends
	wait.Timeout = 10 * time.Second
	res, err = keyrotation.RotateRing(ctx, s, wait)
	if err != nil || res.Action != "promoted" || res.Promoted != next {
		t.Fatalf("promote once b holds the key: %v %+v", err, res)
	}
	if !slices.Contains(kb.KeyIDs(), next) {
		t.Fatal("promoted before replica b held the key")
	}

	gw.Close()
	if _, err := keyrotation.RotateRing(ctx, s, opts); err == nil || !strings.Contains(err.Error(), "cannot tell") {
		t.Fatalf("gateway unreachable: %v", err)
	}
}

func ringOf(t *testing.T, s interface {
	Get(context.Context) ([]byte, error)
}) *session.Ring {
	t.Helper()
	doc, err := s.Get(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r, err := session.ParseRing(doc)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
