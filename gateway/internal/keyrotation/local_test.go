package keyrotation_test

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/keyrotation"
	"github.com/mcpgate/mcpgate/gateway/internal/secretsrc"
	"github.com/mcpgate/mcpgate/gateway/internal/secretsrc/kvtest"
	"github.com/mcpgate/mcpgate/gateway/internal/session"
)

const hostJSON = `{
  "masterKey": {"name": "master", "value": "MASTERVALUE", "encrypted": false},
  "functionKeys": [{"name": "gateway", "value": "OLDVALUE", "encrypted": false}, {"name": "other", "value": "OTHERVALUE", "encrypted": false}],
  "systemKeys": [],
  "hostName": "localhost", "instanceId": "abc", "source": "runtime", "decryptionKeyId": ""
}`

func writeHost(t *testing.T, doc string) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "host.json"), []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestLocalHostFile: create/list/delete keep the other fields and keys, mode 0600.
func TestLocalHostFile(t *testing.T) {
	dir := writeHost(t, hostJSON)
	h := keyrotation.NewLocalHostFile(dir)
	if h.Path() != filepath.Join(dir, "host.json") || keyrotation.NewLocalHostFile(h.Path()).Path() != h.Path() {
		t.Fatalf("path %s", h.Path())
	}
	ctx := t.Context()
	if err := h.Create(ctx, "gateway-20261127T000000Z"); err != nil {
		t.Fatal(err)
	}
	if err := h.Create(ctx, "gateway"); err == nil {
		t.Fatal("Create overwrote an existing key")
	}
	keys, err := h.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nv := keys["gateway-20261127T000000Z"]
	if len(nv) != 56 || keys["gateway"] != "OLDVALUE" || keys["other"] != "OTHERVALUE" || len(keys) != 3 {
		t.Fatalf("keys %v", keys)
	}
	if err := h.Delete(ctx, "gateway"); err != nil {
		t.Fatal(err)
	}
	if err := h.Delete(ctx, "missing"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(h.Path())
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc["masterKey"].(map[string]any)["value"] != "MASTERVALUE" || doc["instanceId"] != "abc" || doc["source"] != "runtime" || strings.Contains(string(b), "OLDVALUE") {
		t.Fatalf("document after delete:\n%s", b)
	}
	if st, _ := os.Stat(h.Path()); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	for name, bad := range map[string]string{
		"encrypted": `{"functionKeys":[{"name":"gateway","value":"x","encrypted":true}]}`,
		"dup":       `{"functionKeys":[{"name":"a","value":"x"},{"name":"a","value":"y"}]}`,
		"noname":    `{"functionKeys":[{"value":"x"}]}`,
		"notjson":   `[1,2]`,
	} {
		if _, err := keyrotation.NewLocalHostFile(writeHost(t, bad)).List(ctx); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), `"x"`) {
			t.Errorf("%s: error quotes a value: %v", name, err)
		}
	}
	if _, err := keyrotation.NewLocalHostFile(t.TempDir()).List(ctx); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

// TestRotateLocal: the local rotation against a function app that checks host.json (as the
// standalone function app does) and a gateway reading the key file.
func TestRotateLocal(t *testing.T) {
	dir := writeHost(t, hostJSON)
	h := keyrotation.NewLocalHostFile(dir)
	keyFile := secretsrc.NewFile(filepath.Join(t.TempDir(), "function-key"))
	if err := keyFile.Put(t.Context(), []byte("OLDVALUE\n")); err != nil {
		t.Fatal(err)
	}
	fa := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		keys, _ := h.List(r.Context())
		for _, v := range keys {
			if v == r.Header.Get("x-functions-key") {
				return
			}
		}
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer fa.Close()
	gw := httptest.NewServer(&fakeGateway{pub: keyFile})
	defer gw.Close()
	res, err := keyrotation.Rotate(t.Context(), keyrotation.Config{Keys: h, Publish: keyFile, GatewayURL: gw.URL, FunctionURL: fa.URL, Poll: 10 * time.Millisecond, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := h.List(t.Context())
	pub, _ := keyFile.Get(t.Context())
	if _, old := keys["gateway"]; old || keys["other"] != "OTHERVALUE" || string(pub) != keys[res.NewKey] {
		t.Fatalf("after rotation: keys %d, result %+v", len(keys), res)
	}
	// A second rotation replaces the timestamped key.
	time.Sleep(1100 * time.Millisecond) // the next name needs a new second, else it gets a -2 suffix
	res2, err := keyrotation.Rotate(t.Context(), keyrotation.Config{Keys: h, Publish: keyFile, GatewayURL: gw.URL, FunctionURL: fa.URL, Poll: 10 * time.Millisecond, Timeout: 2 * time.Second})
	if err != nil || len(res2.Deleted) != 1 || res2.Deleted[0] != res.NewKey {
		t.Fatalf("second rotation: %v %+v", err, res2)
	}
}

func memSecret(t *testing.T) *secretsrc.File {
	return secretsrc.NewFile(filepath.Join(t.TempDir(), "session-keys.json"))
}

// TestGenerateRing: created once, kept after, refused when invalid, replaced with force.
func TestGenerateRing(t *testing.T) {
	ctx := t.Context()
	s := memSecret(t)
	res, err := keyrotation.GenerateRing(ctx, s, false, time.Now())
	if err != nil || res.Action != "created" || len(res.Keys) != 1 || res.Keys[0].State != "active" {
		t.Fatalf("%v %+v", err, res)
	}
	first, _ := s.Get(ctx)
	res, err = keyrotation.GenerateRing(ctx, s, false, time.Now())
	if again, _ := s.Get(ctx); err != nil || res.Action != "kept" || string(again) != string(first) {
		t.Fatalf("second generate: %v %+v", err, res)
	}
	if err := s.Put(ctx, []byte(`{"keys":[]}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := keyrotation.GenerateRing(ctx, s, false, time.Now()); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("invalid ring: %v", err)
	}
	res, err = keyrotation.GenerateRing(ctx, s, true, time.Now())
	if err != nil || res.Action != "replaced" || !strings.Contains(res.Message, "WARNING") {
		t.Fatalf("force: %v %+v", err, res)
	}
	if _, err := keyrotation.ListRing(ctx, memSecret(t)); err == nil || !strings.Contains(err.Error(), "secrets generate") {
		t.Fatalf("list of a missing ring: %v", err)
	}
	if _, err := keyrotation.RotateRing(ctx, memSecret(t), keyrotation.RingRotateOptions{}); !isNotExist(err) {
		t.Fatalf("rotate of a missing ring: %v", err)
	}
}

func isNotExist(err error) bool { return err != nil && errors.Is(err, fs.ErrNotExist) }

// TestRotateRing: next → (too early) → active, old active retired and still opening tokens;
// retired keys older than RetireAfter dropped.
func TestRotateRing(t *testing.T) {
	ctx := t.Context()
	s := memSecret(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := keyrotation.GenerateRing(ctx, s, false, t0); err != nil {
		t.Fatal(err)
	}
	doc, _ := s.Get(ctx)
	ring0, _ := session.ParseRing(doc)
	oldKID := ring0.ActiveID()
	clock := t0.Add(time.Hour)
	opts := keyrotation.RingRotateOptions{Now: func() time.Time { return clock }, ReloadInterval: time.Minute, RetireAfter: 24 * time.Hour}

	res, err := keyrotation.RotateRing(ctx, s, opts)
	if err != nil || res.Action != "added-next" || res.Added == "" || !res.PromoteAfter.Equal(clock.Add(61*time.Second)) {
		t.Fatalf("step 1: %v %+v", err, res)
	}
	next := res.Added
	clock = clock.Add(30 * time.Second)
	if _, err := keyrotation.RotateRing(ctx, s, opts); !errors.Is(err, keyrotation.ErrTooEarly) {
		t.Fatalf("promote too early: %v", err)
	}
	doc, _ = s.Get(ctx)
	if r, _ := session.ParseRing(doc); r.ActiveID() != oldKID {
		t.Fatal("a too-early rotate promoted")
	}
	clock = clock.Add(31 * time.Second)
	res, err = keyrotation.RotateRing(ctx, s, opts)
	if err != nil || res.Action != "promoted" || res.Promoted != next || len(res.Dropped) != 0 {
		t.Fatalf("step 2: %v %+v", err, res)
	}
	doc, _ = s.Get(ctx)
	r, err := session.ParseRing(doc)
	if err != nil || r.ActiveID() != next {
		t.Fatalf("ring after promotion: %v", err)
	}
	states := map[string]string{}
	for _, k := range res.Keys {
		states[k.KID] = k.State
	}
	if states[oldKID] != "retired" || states[next] != "active" {
		t.Fatalf("states %v", states)
	}
	// Two days later: the next rotation adds a key and, on promotion, drops the old retired key.
	clock = clock.Add(48 * time.Hour)
	if res, err = keyrotation.RotateRing(ctx, s, opts); err != nil || res.Action != "added-next" {
		t.Fatalf("%v %+v", err, res)
	}
	clock = clock.Add(2 * time.Minute)
	res, err = keyrotation.RotateRing(ctx, s, opts)
	if err != nil || len(res.Dropped) != 1 || res.Dropped[0] != oldKID || len(res.Keys) != 2 {
		t.Fatalf("%v %+v", err, res)
	}
	if b, _ := json.Marshal(res); strings.Contains(string(b), `"key"`) {
		t.Fatal("result shows key material")
	}
}

// TestRotateRingWait: with Wait the command adds the next key, waits the reload interval and
// promotes it in one run.
func TestRotateRingWait(t *testing.T) {
	s := memSecret(t)
	if _, err := keyrotation.GenerateRing(t.Context(), s, false, time.Now()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := keyrotation.RotateRing(t.Context(), s, keyrotation.RingRotateOptions{Wait: true, ReloadInterval: 100 * time.Millisecond})
	if err != nil || res.Action != "promoted" || res.Added == "" || res.Promoted != res.Added {
		t.Fatalf("%v %+v", err, res)
	}
	if time.Since(start) < 100*time.Millisecond {
		t.Fatal("did not wait")
	}
}

// TestRingKeyVault: generate, rotate and list the ring in a Key Vault secret (the REST fake):
// generate creates it once (the postprovision hook's command is idempotent).
func TestRingKeyVault(t *testing.T) {
	ctx := t.Context()
	v := kvtest.NewVault(nil)
	kv := kvtest.Start(t, v, "session-keys", nil)
	for i, want := range []string{"created", "kept"} {
		res, err := keyrotation.GenerateRing(ctx, kv, false, time.Now())
		if err != nil || res.Action != want || v.Puts() != 1 {
			t.Fatalf("generate #%d: %v %+v (puts %d)", i+1, err, res, v.Puts())
		}
	}
	res, err := keyrotation.RotateRing(ctx, kv, keyrotation.RingRotateOptions{Wait: true, ReloadInterval: 10 * time.Millisecond})
	if err != nil || res.Action != "promoted" || v.Puts() != 3 {
		t.Fatalf("rotate: %v %+v (puts %d)", err, res, v.Puts())
	}
	r, err := session.ParseRing([]byte(v.Secret("session-keys")))
	if err != nil || r.ActiveID() != res.Promoted || len(r.Keys()) != 2 {
		t.Fatalf("ring in the vault: %v", err)
	}
	v.FailNextPut()
	if _, err := keyrotation.RotateRing(ctx, kv, keyrotation.RingRotateOptions{}); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("rotate with a refused write: %v", err)
	}
}
