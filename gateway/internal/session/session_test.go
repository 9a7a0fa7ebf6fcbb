package session_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/session"
)

var t0 = time.Date(2026, 11, 27, 4, 0, 0, 0, time.UTC)

func newKey(t testing.TB, state session.KeyState) session.Key {
	t.Helper()
	k, err := session.NewKey(state, t0)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newRing(t testing.TB, keys ...session.Key) *session.Ring {
	t.Helper()
	r, err := session.NewRing(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSealOpenRoundTrip(t *testing.T) {
	r := newRing(t, newKey(t, session.StateActive))
	for _, payload := range [][]byte{nil, {}, []byte("x"), bytes.Repeat([]byte{0xab}, 1000)} {
		tok, err := r.Seal(session.PurposeAccess, payload, t0.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if strings.ContainsAny(tok, "+/=") {
			t.Fatalf("token is not URL-safe: %q", tok)
		}
		got, err := r.Open(session.PurposeAccess, tok, t0)
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("Open = %q, %v", got, err)
		}
	}
}

func TestSealIsRandomized(t *testing.T) {
	r := newRing(t, newKey(t, session.StateActive))
	a, _ := r.Seal(session.PurposeAccess, []byte("same"), t0.Add(time.Hour))
	b, _ := r.Seal(session.PurposeAccess, []byte("same"), t0.Add(time.Hour))
	if a == b {
		t.Fatal("two seals of the same payload are equal (static nonce)")
	}
	ra, _ := base64.RawURLEncoding.DecodeString(a)
	rb, _ := base64.RawURLEncoding.DecodeString(b)
	// Header: version, kid length, kid, then the 12-byte nonce.
	off := 2 + int(ra[1])
	if bytes.Equal(ra[off:off+12], rb[off:off+12]) {
		t.Fatal("nonce repeated")
	}
}

func TestOpenFailures(t *testing.T) {
	active := newKey(t, session.StateActive)
	r := newRing(t, active)
	other := newRing(t, newKey(t, session.StateActive))
	tok, _ := r.Seal(session.PurposeAccess, []byte("payload"), t0.Add(time.Hour))
	otherTok, _ := other.Seal(session.PurposeAccess, []byte("payload"), t0.Add(time.Hour))
	cases := map[string]struct {
		purpose session.Purpose
		token   string
		now     time.Time
	}{
		"wrong purpose":      {session.PurposeRefresh, tok, t0},
		"expired":            {session.PurposeAccess, tok, t0.Add(time.Hour)},
		"long expired":       {session.PurposeAccess, tok, t0.Add(48 * time.Hour)},
		"unknown kid":        {session.PurposeAccess, otherTok, t0},
		"empty":              {session.PurposeAccess, "", t0},
		"bad base64":         {session.PurposeAccess, "!!!" + tok, t0},
		"padded base64":      {session.PurposeAccess, tok + "==", t0},
		"truncated":          {session.PurposeAccess, tok[:len(tok)-4], t0},
		"header only":        {session.PurposeAccess, tok[:20], t0},
		"appended":           {session.PurposeAccess, tok + "AAAA", t0},
		"too long":           {session.PurposeAccess, strings.Repeat("A", session.MaxTokenLen+4), t0},
		"apim-style cbc hex": {session.PurposeAccess, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 48)), t0},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := r.Open(c.purpose, c.token, c.now)
			if err != session.ErrInvalidToken || got != nil {
				t.Fatalf("Open = %q, %v; want nil, ErrInvalidToken", got, err)
			}
		})
	}
}

func TestTamperEveryByte(t *testing.T) {
	r := newRing(t, newKey(t, session.StateActive))
	tok, _ := r.Seal(session.PurposeAccess, []byte(`{"g":"grant","k":"datakey"}`), t0.Add(time.Hour))
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	for i := range raw {
		for _, bit := range []byte{0x01, 0x80} {
			mod := bytes.Clone(raw)
			mod[i] ^= bit
			if _, err := r.Open(session.PurposeAccess, base64.RawURLEncoding.EncodeToString(mod), t0); err != session.ErrInvalidToken {
				t.Fatalf("byte %d bit %#x flipped: %v", i, bit, err)
			}
		}
	}
}

func TestKeyStates(t *testing.T) {
	next, active, retired := newKey(t, session.StateNext), newKey(t, session.StateActive), newKey(t, session.StateRetired)
	r := newRing(t, next, active, retired)
	for _, k := range []session.Key{next, retired} {
		// A ring in which k is active seals a token that r must open.
		k2 := k
		k2.State = session.StateActive
		sealer := newRing(t, k2)
		tok, err := sealer.Seal(session.PurposeAccess, []byte("p"), t0.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Open(session.PurposeAccess, tok, t0); err != nil {
			t.Fatalf("%s key does not open: %v", k.State, err)
		}
	}
	// Only the active key seals.
	tok, _ := r.Seal(session.PurposeAccess, []byte("p"), t0.Add(time.Minute))
	onlyActive := newRing(t, active)
	if _, err := onlyActive.Open(session.PurposeAccess, tok, t0); err != nil {
		t.Fatalf("token was not sealed by the active key: %v", err)
	}
	if r.ActiveID() != active.ID {
		t.Fatalf("ActiveID = %q", r.ActiveID())
	}
}

func TestParseRing(t *testing.T) {
	a, n := newKey(t, session.StateActive), newKey(t, session.StateNext)
	doc, err := newRing(t, a, n).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	r, err := session.ParseRing(doc)
	if err != nil {
		t.Fatal(err)
	}
	if ks := r.Keys(); len(ks) != 2 || ks[0].ID != a.ID || !bytes.Equal(ks[0].Secret, a.Secret) || !ks[0].Created.Equal(t0) {
		t.Fatalf("round trip lost data: %+v", ks)
	}
	secret := base64.StdEncoding.EncodeToString(a.Secret)
	key := func(kid, key, state string) string {
		return fmt.Sprintf(`{"kid":%q,"key":%q,"state":%q,"created":"2026-01-01T00:00:00Z"}`, kid, key, state)
	}
	short := base64.StdEncoding.EncodeToString(a.Secret[:16])
	bad := map[string]struct{ doc, want string }{
		"not json":       {`{"keys":`, "invalid JSON"},
		"no keys":        {`{"keys":[]}`, "no active key"},
		"no active":      {`{"keys":[` + key("a", secret, "next") + `]}`, "no active key"},
		"two active":     {`{"keys":[` + key("a", secret, "active") + `,` + key("b", secret, "active") + `]}`, "more than one active"},
		"dup kid":        {`{"keys":[` + key("a", secret, "active") + `,` + key("a", secret, "retired") + `]}`, "duplicate kid"},
		"short key":      {`{"keys":[` + key("a", short, "active") + `]}`, "16 bytes, want 32"},
		"bad base64":     {`{"keys":[` + key("a", "%%%%", "active") + `]}`, "not valid base64"},
		"bad state":      {`{"keys":[` + key("a", secret, "current") + `]}`, `state "current"`},
		"empty kid":      {`{"keys":[` + key("", secret, "active") + `]}`, "kid must be"},
		"kid chars":      {`{"keys":[` + key("a b", secret, "active") + `]}`, "only letters"},
		"unknown field":  {`{"keys":[],"extra":1}`, "unknown field"},
		"trailing data":  {`{"keys":[` + key("a", secret, "active") + `]} {}`, "trailing data"},
		"wrong key type": {`{"keys":[{"kid":1}]}`, "wrong type"},
	}
	for name, c := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := session.ParseRing([]byte(c.doc))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), short) {
				t.Fatalf("error leaks key material: %v", err)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	a := newKey(t, session.StateActive)
	r := newRing(t, a)
	old, _ := r.Seal(session.PurposeAccess, []byte("old"), t0.Add(time.Hour))

	n := newKey(t, session.StateNext)
	r2, err := r.WithKey(n)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.WithKey(newKey(t, session.StateActive)); err == nil {
		t.Fatal("WithKey accepted a second active key")
	}
	if _, err := r2.WithKey(n); err == nil {
		t.Fatal("WithKey accepted a duplicate kid")
	}
	if r2.ActiveID() != a.ID {
		t.Fatal("adding a next key changed the active key")
	}
	r3, err := r2.Promote(n.ID, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if r3.ActiveID() != n.ID {
		t.Fatalf("active after promote: %q", r3.ActiveID())
	}
	if _, err := r3.Open(session.PurposeAccess, old, t0); err != nil {
		t.Fatalf("token of the retired key no longer opens: %v", err)
	}
	if _, err := r3.Promote("nope", t0); err == nil {
		t.Fatal("promoted an unknown kid")
	}
	for _, k := range r3.Keys() {
		if k.ID == a.ID && (k.State != session.StateRetired || !k.Retired.Equal(t0.Add(time.Minute))) {
			t.Fatalf("old active key: %+v", k.State)
		}
	}
	r4, dropped, err := r3.DropRetired(t0)
	if err != nil || len(dropped) != 0 || len(r4.Keys()) != 2 {
		t.Fatalf("dropped too early: %v %v", dropped, err)
	}
	r5, dropped, err := r3.DropRetired(t0.Add(2 * time.Minute))
	if err != nil || len(dropped) != 1 || dropped[0] != a.ID || len(r5.Keys()) != 1 {
		t.Fatalf("DropRetired: %v %v", dropped, err)
	}
	if _, err := r5.Open(session.PurposeAccess, old, t0); err == nil {
		t.Fatal("dropped key still opens")
	}
	// The rotated ring survives a Marshal/ParseRing round trip, retirement time included.
	doc, _ := r3.Marshal()
	back, err := session.ParseRing(doc)
	if err != nil {
		t.Fatal(err)
	}
	if _, dropped, _ := back.DropRetired(t0.Add(2 * time.Minute)); len(dropped) != 1 {
		t.Fatal("retirement time lost in JSON")
	}
}

func TestMACKeys(t *testing.T) {
	a := newKey(t, session.StateActive)
	r := newRing(t, a)
	kid, k1 := r.MACKey("consent")
	if kid != a.ID || len(k1) != 32 {
		t.Fatalf("MACKey = %q, %d bytes", kid, len(k1))
	}
	_, k2 := r.MACKey("csrf")
	if bytes.Equal(k1, k2) {
		t.Fatal("labels derive the same key")
	}
	if bytes.Equal(k1, a.Secret) {
		t.Fatal("MAC key equals the ring key")
	}
	n := newKey(t, session.StateNext)
	r2, _ := r.WithKey(n)
	r3, _ := r2.Promote(n.ID, t0)
	got, ok := r3.MACKeyFor(kid, "consent")
	if !ok || !bytes.Equal(got, k1) {
		t.Fatal("MACKeyFor does not reproduce the old key's MAC key")
	}
	if _, ok := r3.MACKeyFor("unknown", "consent"); ok {
		t.Fatal("MACKeyFor found an unknown kid")
	}
	if kid3, k3 := r3.MACKey("consent"); kid3 != n.ID || bytes.Equal(k3, k1) {
		t.Fatal("MACKey did not follow the rotation")
	}
}

func TestWrapUnwrap(t *testing.T) {
	dk, err := session.NewDataKey()
	if err != nil || len(dk) != 32 {
		t.Fatal(dk, err)
	}
	ct, err := session.Wrap(dk, []byte("upstream token"), []byte("grant-1"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ct, []byte("upstream token")) {
		t.Fatal("plaintext visible")
	}
	ct2, _ := session.Wrap(dk, []byte("upstream token"), []byte("grant-1"))
	if bytes.Equal(ct, ct2) {
		t.Fatal("Wrap is deterministic")
	}
	pt, err := session.Unwrap(dk, ct, []byte("grant-1"))
	if err != nil || string(pt) != "upstream token" {
		t.Fatalf("Unwrap = %q, %v", pt, err)
	}
	other, _ := session.NewDataKey()
	for name, f := range map[string]func() ([]byte, error){
		"wrong ad":  func() ([]byte, error) { return session.Unwrap(dk, ct, []byte("grant-2")) },
		"wrong key": func() ([]byte, error) { return session.Unwrap(other, ct, []byte("grant-1")) },
		"short":     func() ([]byte, error) { return session.Unwrap(dk, ct[:10], []byte("grant-1")) },
		"tampered": func() ([]byte, error) {
			m := bytes.Clone(ct)
			m[len(m)-1] ^= 1
			return session.Unwrap(dk, m, []byte("grant-1"))
		},
	} {
		if _, err := f(); !errors.Is(err, session.ErrUnwrap) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := session.Wrap(dk[:16], nil, nil); err == nil {
		t.Fatal("Wrap accepted a 16-byte key")
	}
}

func TestKeeper(t *testing.T) {
	ctx := t.Context()
	r1 := newRing(t, newKey(t, session.StateActive))
	doc1, _ := r1.Marshal()
	var cur atomic.Pointer[[]byte]
	cur.Store(&doc1)
	fail := atomic.Bool{}
	load := func(context.Context) ([]byte, error) {
		if fail.Load() {
			return nil, errors.New("source down")
		}
		return *cur.Load(), nil
	}
	var logs bytes.Buffer
	k, err := session.NewKeeper(ctx, load, time.Millisecond, slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if !k.Loaded() || k.Ring().ActiveID() != r1.ActiveID() {
		t.Fatal("first ring not loaded")
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { k.Run(runCtx); close(done) }()

	if k.ReloadFailures() != 0 || k.LastLoad().IsZero() {
		t.Fatalf("after a good load: %d failures, last load %v", k.ReloadFailures(), k.LastLoad())
	}
	// A failing source keeps the last good ring, and counts.
	fail.Store(true)
	waitUntil(t, func() bool { return k.LastError() != nil && k.ReloadFailures() > 0 })
	stuck := k.LastLoad()
	if k.Ring().ActiveID() != r1.ActiveID() {
		t.Fatal("ring lost on failure")
	}
	// A bad document keeps the last good ring too.
	fail.Store(false)
	bad := []byte(`{"keys":[]}`)
	cur.Store(&bad)
	waitUntil(t, func() bool { e := k.LastError(); return e != nil && strings.Contains(e.Error(), "no active key") })
	if k.Ring().ActiveID() != r1.ActiveID() {
		t.Fatal("ring replaced by an invalid one")
	}
	if ids := k.KeyIDs(); len(ids) != 1 || ids[0] != r1.ActiveID() {
		t.Fatalf("KeyIDs = %v, want [%s]", ids, r1.ActiveID())
	}
	if !k.LastLoad().Equal(stuck) {
		t.Fatal("LastLoad moved without a successful load")
	}
	// A new ring is picked up, and KeyIDs follows it.
	next := newKey(t, session.StateNext)
	r2 := newRing(t, newKey(t, session.StateActive), next)
	doc2, _ := r2.Marshal()
	cur.Store(&doc2)
	waitUntil(t, func() bool { return k.Ring().ActiveID() == r2.ActiveID() })
	if ids := k.KeyIDs(); !slices.Contains(ids, next.ID) || !slices.Contains(ids, r2.ActiveID()) || len(ids) != 2 {
		t.Fatalf("KeyIDs = %v, want the active key and next key %s", ids, next.ID)
	}
	stop()
	<-done
	for _, key := range append(r1.Keys(), r2.Keys()...) {
		if strings.Contains(logs.String(), base64.StdEncoding.EncodeToString(key.Secret)) {
			t.Fatal("key material in logs")
		}
	}

	if p, _ := session.NewPendingKeeper(load, 0, nil); p.KeyIDs() != nil {
		t.Fatalf("a keeper with no ring lists key ids %v", p.KeyIDs())
	}
	if _, err := session.NewKeeper(ctx, func(context.Context) ([]byte, error) { return nil, errors.New("nope") }, 0, nil); err == nil {
		t.Fatal("NewKeeper succeeded with a failing first load")
	}
	if _, err := session.NewKeeper(ctx, func(context.Context) ([]byte, error) { return []byte("{}"), nil }, 0, nil); err == nil {
		t.Fatal("NewKeeper succeeded with an invalid first ring")
	}
}

func TestKeyJSON(t *testing.T) {
	k := newKey(t, session.StateActive)
	b, _ := json.Marshal(k)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	for _, f := range []string{"kid", "key", "state", "created"} {
		if _, ok := m[f]; !ok {
			t.Fatalf("JSON lacks %q: %s", f, b)
		}
	}
	if _, ok := m["retired"]; ok {
		t.Fatal("zero retired time serialised")
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func TestPendingKeeper(t *testing.T) {
	r := newRing(t, newKey(t, session.StateActive))
	doc, _ := r.Marshal()
	var ready atomic.Bool
	k, err := session.NewPendingKeeper(func(context.Context) ([]byte, error) {
		if !ready.Load() {
			return nil, errors.New("secret not found")
		}
		return doc, nil
	}, time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	if k.Loaded() || k.Ring() != nil {
		t.Fatal("pending keeper has a ring")
	}
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { k.Run(ctx); close(done) }()
	waitUntil(t, func() bool { return k.LastError() != nil })
	if k.Loaded() {
		t.Fatal("loaded without a ring")
	}
	ready.Store(true)
	waitUntil(t, k.Loaded)
	if k.Ring().ActiveID() != r.ActiveID() {
		t.Fatal("wrong ring")
	}
	stop()
	<-done
}
