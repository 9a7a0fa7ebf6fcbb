package keyrotation_test

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/funckey"
	"github.com/mcpgate/mcpgate/gateway/internal/keyrotation"
	"github.com/mcpgate/mcpgate/gateway/internal/secretsrc/kvtest"
)

const oldName = "gateway-20260101T000000Z"

// armEnv is a function app behind the ARM fake, its Key Vault, and a gateway fake reading it.
type armEnv struct {
	arm      *fakeARM
	keys     *keyrotation.ARMHostKeys
	vault    *kvtest.Vault
	pub      keyrotation.Secret
	gw       *fakeGateway
	gwURL    string
	funcURL  string
	oldValue string
	progress *bytes.Buffer
}

func newARMEnv(t *testing.T) *armEnv {
	old := newValue(t)
	a := newFakeARM(t, map[string]string{"default": newValue(t), oldName: old})
	e := &armEnv{arm: a, keys: startARM(t, a), vault: kvtest.NewVault(map[string]string{"function-key": old}), oldValue: old, progress: &bytes.Buffer{}}
	e.pub = kvtest.Start(t, e.vault, "function-key", nil)
	e.gw = &fakeGateway{pub: e.pub}
	gsrv := httptest.NewServer(e.gw)
	t.Cleanup(gsrv.Close)
	e.gwURL = gsrv.URL
	e.funcURL = fakeFunctionApp(t, a).URL
	return e
}

func (e *armEnv) config() keyrotation.Config {
	return keyrotation.Config{Keys: e.keys, Publish: e.pub, GatewayURL: e.gwURL, FunctionURL: e.funcURL,
		Timeout: 2 * time.Second, Poll: 20 * time.Millisecond, Progress: e.progress}
}

func (e *armEnv) published(t *testing.T) string {
	b, err := e.pub.Get(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func wantRequests(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("ARM requests:\n got  %q\n want %q", got, want)
	}
}

func noDeletes(t *testing.T, reqs []string) {
	t.Helper()
	for _, r := range reqs {
		if strings.HasPrefix(r, "DELETE") {
			t.Fatalf("a failed rotation deleted a key: %q", reqs)
		}
	}
}

func stepErr(t *testing.T, err error, step string) *keyrotation.StepError {
	t.Helper()
	var se *keyrotation.StepError
	if !errors.As(err, &se) || se.Step != step {
		t.Fatalf("error %v, want a failure of step %q", err, step)
	}
	if !strings.Contains(se.Error(), "Re-run the same command") {
		t.Errorf("failure hint does not say how to resume: %s", se.Error())
	}
	return se
}

// TestRotateARM: the whole rotation against the ARM REST contract: exactly list, create,
// list (read the generated value), delete the old key; Key Vault holds the new value; the
// "default" key is left alone; values never reach the progress output.
func TestRotateARM(t *testing.T) {
	e := newARMEnv(t)
	res, err := keyrotation.Rotate(t.Context(), e.config())
	if err != nil {
		t.Fatalf("%v\n%s", err, e.progress)
	}
	name := res.NewKey
	if !strings.HasPrefix(name, "gateway-") || name == oldName || res.Action != "rotated" {
		t.Fatalf("result %+v", res)
	}
	wantRequests(t, e.arm.requests(), "POST listkeys", "PUT functionKeys/"+name, "POST listkeys", "DELETE functionKeys/"+oldName)
	keys := e.arm.snapshot()
	if _, ok := keys[oldName]; ok || keys[name] == "" || keys["default"] == "" || len(keys) != 2 {
		t.Fatalf("keys after rotation: %v", slices.Sorted(func(yield func(string) bool) {
			for k := range keys {
				if !yield(k) {
					return
				}
			}
		}))
	}
	if e.published(t) != keys[name] || res.NewFingerprint != funckey.Fingerprint(keys[name]) || !slices.Equal(res.Deleted, []string{oldName}) {
		t.Fatalf("published %s, result %+v", funckey.Fingerprint(e.published(t)), res)
	}
	if e.arm.accepts(e.oldValue) {
		t.Fatal("old key still accepted")
	}
	if len(res.Replicas) != 2 || len(res.Steps) != 6 {
		t.Fatalf("replicas %v steps %v", res.Replicas, res.Steps)
	}
	out := e.progress.String()
	for _, v := range []string{keys[name], e.oldValue} {
		if strings.Contains(out, v) {
			t.Fatal("progress output shows a key value")
		}
	}
	for _, want := range []string{"[1/6] inspect", "[2/6] create", "[3/6] accept", "[4/6] publish", "[5/6] gateways", "[6/6] delete"} {
		if !strings.Contains(out, want) {
			t.Errorf("progress lacks %q:\n%s", want, out)
		}
	}
}

// TestRotateARMCreateFails: ARM refuses the PUT: nothing published, nothing deleted; a
// re-run rotates.
func TestRotateARMCreateFails(t *testing.T) {
	e := newARMEnv(t)
	e.arm.failNext("PUT functionKeys/gateway-20260301T120000Z", 500)
	cfg := e.config()
	cfg.Now = func() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }
	_, err := keyrotation.Rotate(t.Context(), cfg)
	stepErr(t, err, "create")
	reqs := e.arm.requests()
	wantRequests(t, reqs, "POST listkeys", "PUT functionKeys/gateway-20260301T120000Z")
	if e.published(t) != e.oldValue || e.vault.Puts() != 0 {
		t.Fatal("a failed create published something")
	}
	res, err := keyrotation.Rotate(t.Context(), cfg)
	if err != nil || res.Action != "rotated" {
		t.Fatalf("re-run: %v %+v", err, res)
	}
	wantRequests(t, e.arm.requests(), "POST listkeys", "PUT functionKeys/gateway-20260301T120000Z", "POST listkeys", "DELETE functionKeys/"+oldName)
}

// TestRotateARMListFails: the first list fails (no role): nothing is changed.
func TestRotateARMListFails(t *testing.T) {
	e := newARMEnv(t)
	e.arm.failNext("POST listkeys", 403)
	_, err := keyrotation.Rotate(t.Context(), e.config())
	se := stepErr(t, err, "inspect")
	if !strings.Contains(se.Error(), "403 InjectedFailure") || !strings.Contains(se.Error(), "Website Contributor") {
		t.Fatalf("error %v", se)
	}
	wantRequests(t, e.arm.requests(), "POST listkeys")
}

// TestRotateARMPublishFails: Key Vault refuses the new version: the new key exists but is
// unpublished, nothing deleted; the re-run reuses that key (no second PUT to ARM).
func TestRotateARMPublishFails(t *testing.T) {
	e := newARMEnv(t)
	e.vault.FailNextPut()
	_, err := keyrotation.Rotate(t.Context(), e.config())
	se := stepErr(t, err, "publish")
	reqs := e.arm.requests()
	noDeletes(t, reqs)
	if len(reqs) != 3 || !strings.HasPrefix(reqs[1], "PUT functionKeys/gateway-") {
		t.Fatalf("requests %q", reqs)
	}
	created := strings.TrimPrefix(reqs[1], "PUT functionKeys/")
	if !strings.Contains(se.Error(), "az functionapp keys delete") || !strings.Contains(se.Error(), created) {
		t.Fatalf("hint lacks the roll-back command: %v", se)
	}
	if e.published(t) != e.oldValue {
		t.Fatal("published value changed")
	}
	res, err := keyrotation.Rotate(t.Context(), e.config())
	if err != nil || res.Action != "resumed" || res.NewKey != created || res.Plan.Create {
		t.Fatalf("re-run: %v %+v", err, res)
	}
	wantRequests(t, e.arm.requests(), "POST listkeys", "DELETE functionKeys/"+oldName)
	if e.published(t) != e.arm.snapshot()[created] {
		t.Fatal("resumed rotation did not publish the created key")
	}
}

// TestRotateARMGatewaysStuck: a replica keeps the old key past the timeout: nothing deleted,
// both keys work; once it catches up, the re-run only deletes.
func TestRotateARMGatewaysStuck(t *testing.T) {
	e := newARMEnv(t)
	e.gw.setStuck(funckey.Fingerprint(e.oldValue))
	cfg := e.config()
	cfg.Timeout = 2 * time.Second // the wait always runs out here; room for slow (-race, loaded) probes
	res, err := keyrotation.Rotate(t.Context(), cfg)
	se := stepErr(t, err, "gateways")
	if !strings.Contains(se.Error(), "gw-b") || !strings.Contains(se.Error(), "roll back") || !strings.Contains(se.Error(), "az functionapp keys list") {
		t.Fatalf("error lacks the stuck replica or the roll-back: %v", se)
	}
	noDeletes(t, e.arm.requests())
	if !e.arm.accepts(e.oldValue) || !e.arm.accepts(e.published(t)) || e.published(t) == e.oldValue {
		t.Fatal("both keys must work after a stopped rotation")
	}
	e.gw.setStuck("")
	res2, err := keyrotation.Rotate(t.Context(), e.config())
	if err != nil || res2.Action != "resumed" || res2.NewKey != res.NewKey || res2.Plan.Publish {
		t.Fatalf("re-run: %v %+v", err, res2)
	}
	wantRequests(t, e.arm.requests(), "POST listkeys", "DELETE functionKeys/"+oldName)
}

// TestRotateARMDeleteFails: the delete fails: the rotation is otherwise complete; the re-run
// deletes.
func TestRotateARMDeleteFails(t *testing.T) {
	e := newARMEnv(t)
	e.arm.failNext("DELETE functionKeys/"+oldName, 500)
	res, err := keyrotation.Rotate(t.Context(), e.config())
	se := stepErr(t, err, "delete")
	if !strings.Contains(se.Error(), oldName) {
		t.Fatalf("error %v", se)
	}
	e.arm.requests()
	res2, err := keyrotation.Rotate(t.Context(), e.config())
	if err != nil || res2.NewKey != res.NewKey || !slices.Equal(res2.Deleted, []string{oldName}) {
		t.Fatalf("re-run: %v %+v", err, res2)
	}
	wantRequests(t, e.arm.requests(), "POST listkeys", "DELETE functionKeys/"+oldName)
	// A DELETE of a key that is already gone (404) counts as deleted.
	if err := e.keys.Delete(t.Context(), oldName); err != nil {
		t.Fatalf("delete of a missing key: %v", err)
	}
}

// TestRotateARMNotAccepted: the function app keeps refusing the new key: it is never
// published, nothing is deleted.
func TestRotateARMNotAccepted(t *testing.T) {
	e := newARMEnv(t)
	refusing := httptest.NewServer(http401())
	t.Cleanup(refusing.Close)
	cfg := e.config()
	cfg.FunctionURL = refusing.URL
	cfg.Timeout = 200 * time.Millisecond
	_, err := keyrotation.Rotate(t.Context(), cfg)
	se := stepErr(t, err, "accept")
	if !strings.Contains(se.Error(), "401") {
		t.Fatalf("error %v", se)
	}
	noDeletes(t, e.arm.requests())
	if e.published(t) != e.oldValue || e.vault.Puts() != 0 {
		t.Fatal("an unaccepted key was published")
	}
}

// timedKeys and timedSecret record when the rotation first listed the keys and when it
// published.
type timedKeys struct {
	keyrotation.HostKeys
	firstList time.Time
}

func (k *timedKeys) List(ctx context.Context) (map[string]string, error) {
	if k.firstList.IsZero() {
		k.firstList = time.Now()
	}
	return k.HostKeys.List(ctx)
}

type timedSecret struct {
	keyrotation.Secret
	put time.Time
}

func (s *timedSecret) Put(ctx context.Context, v []byte) error {
	s.put = time.Now()
	return s.Secret.Put(ctx, v)
}

// TestRotateHostCacheWait: with no function URL the new key is published no sooner than
// HostCacheWait after its creation (which comes after the first list).
func TestRotateHostCacheWait(t *testing.T) {
	e := newARMEnv(t)
	cfg := e.config()
	keys, pub := &timedKeys{HostKeys: e.keys}, &timedSecret{Secret: e.pub}
	cfg.Keys, cfg.Publish = keys, pub
	cfg.FunctionURL = ""
	cfg.HostCacheWait = 300 * time.Millisecond
	res, err := keyrotation.Rotate(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if gap := pub.put.Sub(keys.firstList); gap < cfg.HostCacheWait {
		t.Fatalf("published %s after the first list, want ≥ %s", gap, cfg.HostCacheWait)
	}
	if !strings.Contains(res.Steps[2].Detail, "no function app URL") {
		t.Fatalf("accept step %+v", res.Steps[2])
	}
}

// TestRotateIfMissing: a published key means nothing to do (one list, one Key Vault read);
// with none, the first key is created and published and nothing is waited for or deleted.
func TestRotateIfMissing(t *testing.T) {
	e := newARMEnv(t)
	cfg := e.config()
	cfg.IfMissing = true
	res, err := keyrotation.Rotate(t.Context(), cfg)
	if err != nil || res.Action != "unchanged" {
		t.Fatalf("%v %+v", err, res)
	}
	wantRequests(t, e.arm.requests(), "POST listkeys")

	a := newFakeARM(t, map[string]string{"default": newValue(t)})
	e2 := kvtest.NewVault(nil)
	cfg = keyrotation.Config{Keys: startARM(t, a), Publish: kvtest.Start(t, e2, "function-key", nil), GatewayURL: "http://127.0.0.1:1",
		FunctionURL: fakeFunctionApp(t, a).URL, IfMissing: true, Timeout: time.Second, Poll: 10 * time.Millisecond}
	res, err = keyrotation.Rotate(t.Context(), cfg)
	if err != nil || res.Action != "rotated" || len(res.Deleted) != 0 {
		t.Fatalf("%v %+v", err, res)
	}
	if e2.Secret("function-key") != a.snapshot()[res.NewKey] {
		t.Fatal("first key not published")
	}
	res, err = keyrotation.Rotate(t.Context(), cfg)
	if err != nil || res.Action != "unchanged" {
		t.Fatalf("second run: %v %+v", err, res)
	}
	// A published value that is no key of the app is replaced: here by the app's gateway key,
	// which is not published (an interrupted rotation, as far as the plan can tell).
	e2.SetSecret("function-key", "stale-value-of-a-deleted-app")
	res, err = keyrotation.Rotate(t.Context(), cfg)
	if err != nil || res.Action != "resumed" || e2.Secret("function-key") != a.snapshot()[res.NewKey] {
		t.Fatalf("stale published value: %v %+v", err, res)
	}
}

// TestRotateDryRun lists and changes nothing.
func TestRotateDryRun(t *testing.T) {
	e := newARMEnv(t)
	cfg := e.config()
	cfg.DryRun = true
	res, err := keyrotation.Rotate(t.Context(), cfg)
	if err != nil || res.Action != "planned" || !res.Plan.Create || !slices.Equal(res.Plan.Delete, []string{oldName}) || res.Plan.Current != oldName {
		t.Fatalf("%v %+v", err, res)
	}
	wantRequests(t, e.arm.requests(), "POST listkeys")
	if e.vault.Puts() != 0 {
		t.Fatal("dry run published")
	}
}

// TestRotateCanceled: a canceled context stops the waits without deleting anything.
func TestRotateCanceled(t *testing.T) {
	e := newARMEnv(t)
	e.gw.setStuck("00000000")
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	cfg := e.config()
	cfg.Timeout = time.Minute
	_, err := keyrotation.Rotate(ctx, cfg)
	if err == nil {
		t.Fatal("no error")
	}
	noDeletes(t, e.arm.requests())
}

func TestFamily(t *testing.T) {
	for name, want := range map[string]bool{
		"gateway": true, "gateway-20261127T044500Z": true, "gateway-20261127T044500Z-2": true,
		"gateway-old": false, "gateway2": false, "default": false, "gateway-20261327T044500Z": false, "gateway-20261127T044500Z-x": false,
	} {
		if got := keyrotation.InFamily("gateway", name); got != want {
			t.Errorf("InFamily(%q) = %v", name, got)
		}
	}
	for _, bad := range []string{"", "master", "_master", "MASTER", "a b", "x/y"} {
		if keyrotation.ValidFamily(bad) == nil {
			t.Errorf("ValidFamily(%q) accepted", bad)
		}
	}
}
