package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/e2e/harness"
)

// TestKeysRotateLocalUnderLoad: `mcpgate keys rotate --local` while tools/call flows through
// two gateway replicas (one Redis, one function-key file) to the standalone function app:
// zero failed calls; afterwards the old key gets 401 from the function app and the new one
// works; a second rotation replaces the timestamped key; `keys list` shows fingerprints only.
func TestKeysRotateLocalUnderLoad(t *testing.T) {
	rds := harness.StartRedis(t)
	fa := harness.StartFunctionApp(t, harness.FunctionAppOptions{})
	lb := startKeysLB(t)
	state := t.TempDir()
	a := startKeysReplica(t, "a", lb.URL, fa.URL, fa.Key, rds, state)
	b := startKeysReplica(t, "b", lb.URL, fa.URL, fa.Key, rds, state)
	lb.route(t, a, b)
	tok := harness.DevLogin(t, lb.URL, harness.DevLoginOptions{Name: "Key Rotator", Via: a.URL})

	load := startKeysLoad(t, lb.URL, 4, tok.Access)
	load.waitCalls(t, 40)

	oldKey := fa.Key
	args := []string{"keys", "rotate", "--local", fa.SecretsDir, "--key-file", a.KeyFile, "--gateway-url", a.URL,
		"--function-url", fa.URL, "--timeout", "60s", "--poll", "200ms", "--json"}
	start := time.Now()
	out, progress := runMcpgate(t, state, args...)
	took := time.Since(start)
	load.waitCalls(t, 40)
	load.stop()
	t.Logf("local rotation took %s; %d calls during the test, %d failed", took.Round(100*time.Millisecond), load.ok.Load(), load.failed.Load())
	if n := load.failed.Load(); n != 0 {
		t.Fatalf("%d calls failed during the rotation: %v\nprogress:\n%s", n, load.failures, progress)
	}

	var res struct {
		Action         string   `json:"action"`
		NewKey         string   `json:"new_key"`
		NewFingerprint string   `json:"new_fingerprint"`
		Deleted        []string `json:"deleted"`
		Replicas       []struct {
			ID             string `json:"id"`
			KeyFingerprint string `json:"key_fingerprint"`
		} `json:"replicas"`
	}
	mustJSON(t, out, &res)
	if res.Action != "rotated" || !strings.HasPrefix(res.NewKey, "gateway-") || len(res.Deleted) != 1 || res.Deleted[0] != "gateway" || len(res.Replicas) != 2 {
		t.Fatalf("result %+v\nprogress:\n%s", res, progress)
	}
	for _, r := range res.Replicas {
		if r.KeyFingerprint != res.NewFingerprint {
			t.Fatalf("replica %s on %s, want %s", r.ID, r.KeyFingerprint, res.NewFingerprint)
		}
	}
	nb, err := os.ReadFile(a.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	newKey := strings.TrimSpace(string(nb))
	if newKey == oldKey || !waitKeyStatus(t, fa.URL, oldKey, 401) || keyStatus(t, fa.URL, newKey) != 200 {
		t.Fatal("after the rotation the function app must refuse the old key and accept the new one")
	}
	for _, secret := range []string{oldKey, newKey} {
		if strings.Contains(progress, secret) || strings.Contains(out, secret) {
			t.Fatal("the CLI printed a key value")
		}
	}
	for _, step := range []string{"[1/6] inspect", "[3/6] accept", "[5/6] gateways", "[6/6] delete"} {
		if !strings.Contains(progress, step) {
			t.Errorf("progress lacks %q:\n%s", step, progress)
		}
	}

	// keys list: names and fingerprints, the published one marked, no values.
	list, _ := runMcpgate(t, state, "keys", "list", "--local", filepath.Join(fa.SecretsDir, "host.json"), "--key-file", a.KeyFile, "--json")
	var keys struct {
		Keys []struct {
			Name        string `json:"name"`
			Fingerprint string `json:"fingerprint"`
			Published   bool   `json:"published"`
		} `json:"keys"`
	}
	mustJSON(t, list, &keys)
	if len(keys.Keys) != 1 || keys.Keys[0].Name != res.NewKey || !keys.Keys[0].Published || keys.Keys[0].Fingerprint != res.NewFingerprint || strings.Contains(list, newKey) {
		t.Fatalf("keys list: %s", list)
	}

	// A re-run right away is a fresh rotation of the timestamped key (dry run: plan only).
	out, _ = runMcpgate(t, state, "keys", "rotate", "--local", fa.SecretsDir, "--key-file", a.KeyFile, "--dry-run", "--json")
	var plan struct {
		Action string `json:"action"`
		Plan   struct {
			Create bool     `json:"create"`
			Delete []string `json:"delete"`
		} `json:"plan"`
	}
	mustJSON(t, out, &plan)
	if plan.Action != "planned" || !plan.Plan.Create || len(plan.Plan.Delete) != 1 || plan.Plan.Delete[0] != res.NewKey {
		t.Fatalf("dry run: %s", out)
	}
	if keyStatus(t, fa.URL, newKey) != 200 {
		t.Fatal("dry run changed the keys")
	}
}

// TestKeysRotateLocalGatewayDown: the gateway URL answers nothing: the rotation stops at the
// gateway wait having published the new key, deletes nothing, and says how to resume; with
// the gateways back, the re-run deletes the old key.
func TestKeysRotateLocalGatewayDown(t *testing.T) {
	fa := harness.StartFunctionApp(t, harness.FunctionAppOptions{})
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "function-key")
	if err := os.WriteFile(keyFile, []byte(fa.Key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	down := "http://127.0.0.1:" + strconv.Itoa(harness.FreePort(t))
	_, progress, err := runMcpgateE(t, dir, "keys", "rotate", "--local", fa.SecretsDir, "--key-file", keyFile, "--gateway-url", down,
		"--function-url", fa.URL, "--timeout", "1s", "--poll", "100ms")
	if err == nil || !strings.Contains(progress, "step gateways failed") || !strings.Contains(progress, "Re-run the same command") {
		t.Fatalf("err %v\n%s", err, progress)
	}
	if keyStatus(t, fa.URL, fa.Key) != 200 {
		t.Fatal("the old key was deleted by a failed rotation")
	}
	// The gateway comes up (one replica reading the key file, in-memory store).
	g := harness.StartGateway(t, harness.GatewayOptions{BackendURL: fa.URL, StateDir: dir, Dev: true})
	out, progress := runMcpgate(t, dir, "keys", "rotate", "--local", fa.SecretsDir, "--key-file", keyFile, "--gateway-url", g.URL,
		"--function-url", fa.URL, "--timeout", "60s", "--poll", "200ms", "--json")
	var res struct {
		Action  string   `json:"action"`
		Deleted []string `json:"deleted"`
	}
	mustJSON(t, out, &res)
	if res.Action != "resumed" || len(res.Deleted) != 1 || res.Deleted[0] != "gateway" || !waitKeyStatus(t, fa.URL, fa.Key, 401) {
		t.Fatalf("resume: %s\n%s", out, progress)
	}
}
