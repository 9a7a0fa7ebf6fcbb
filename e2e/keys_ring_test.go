package e2e

import (
	"path/filepath"
	"testing"

	"github.com/mcpgate/mcpgate/e2e/harness"
)

// ringState reads the ring through `mcpgate secrets list --json`: kid → state.
func ringState(t *testing.T, dir, ring string) (map[string]string, string) {
	t.Helper()
	out, _ := runMcpgate(t, dir, "secrets", "list", "--file", ring, "--json")
	var res struct {
		Keys []struct {
			KID   string `json:"kid"`
			State string `json:"state"`
		} `json:"keys"`
	}
	mustJSON(t, out, &res)
	states := map[string]string{}
	active := ""
	for _, k := range res.Keys {
		states[k.KID] = k.State
		if k.State == "active" {
			active = k.KID
		}
	}
	return states, active
}

// TestSecretsRotateRingUnderLoad: the session-key ring is rotated with `mcpgate secrets
// rotate` while clients holding tokens call tools through two replicas. The gateways reload
// the ring once a minute; here each reload is a rolling replacement of the replicas (new
// processes load the ring at start), which is also how a new Container Apps revision rolls:
//
//	ring {k1 active}            replicas a, b      tokens t1 (via a), t2 (via b) sealed with k1
//	rotate → {k1 active, k2 next}; replicas c, d replace a, b (they know k2, still seal with k1)
//	rotate → {k2 active, k1 retired}; replicas e, f join c, d; t3 (via e) is sealed with k2
//
// t3 must open on c and d (k2 is their next key: the reason for the wait), t1 and t2 on e
// and f (k1 is retired, not gone), refresh tokens of k1 still refresh, and not one call fails.
func TestSecretsRotateRingUnderLoad(t *testing.T) {
	rds := harness.StartRedis(t)
	fa := harness.StartFunctionApp(t, harness.FunctionAppOptions{})
	lb := startKeysLB(t)
	state := t.TempDir()
	ring := filepath.Join(state, "session-keys.json")
	replica := func(id string) *harness.Gateway { return startKeysReplica(t, id, lb.URL, fa.URL, fa.Key, rds, state) }

	a, b := replica("a"), replica("b")
	lb.route(t, a, b)
	_, k1 := ringState(t, state, ring)
	t1 := harness.DevLogin(t, lb.URL, harness.DevLoginOptions{Name: "Ring One", Via: a.URL})
	t2 := harness.DevLogin(t, lb.URL, harness.DevLoginOptions{Name: "Ring Two", Via: b.URL})
	load := startKeysLoad(t, lb.URL, 4, t1.Access, t2.Access)
	load.waitCalls(t, 40)

	// Step 1: add the next key. Without --wait the command stops and says when to promote.
	out, _ := runMcpgate(t, state, "secrets", "rotate", "--file", ring, "--json")
	var step1 struct {
		Action, Added string
	}
	mustJSON(t, out, &step1)
	if step1.Action != "added-next" || step1.Added == "" {
		t.Fatalf("step 1: %s", out)
	}
	k2 := step1.Added
	// Promoting right away is refused (a replica may not know k2 yet).
	if _, errOut, err := runMcpgateE(t, state, "secrets", "rotate", "--file", ring); err == nil {
		t.Fatalf("an immediate promotion was accepted:\n%s", errOut)
	}

	// "Reload": c and d replace a and b.
	c, d := replica("c"), replica("d")
	lb.route(t, a, b, c, d)
	load.waitCalls(t, 20)
	lb.route(t, c, d)
	load.waitCalls(t, 20)
	_ = a.Stop()
	_ = b.Stop()
	load.waitCalls(t, 20)

	// Step 2: promote (the test's replicas have all loaded k2, so one second is the interval).
	out, _ = runMcpgate(t, state, "secrets", "rotate", "--file", ring, "--wait", "--reload-interval", "1s", "--json")
	var step2 struct {
		Action, Promoted string
	}
	mustJSON(t, out, &step2)
	if step2.Action != "promoted" || step2.Promoted != k2 {
		t.Fatalf("step 2: %s", out)
	}
	if states, active := ringState(t, state, ring); active != k2 || states[k1] != "retired" || len(states) != 2 {
		t.Fatalf("ring after promotion: %v", states)
	}

	// "Reload": e and f join; a token minted on e is sealed with k2 and must open on c and d.
	e, f := replica("e"), replica("f")
	lb.route(t, c, d, e, f)
	t3 := harness.DevLogin(t, lb.URL, harness.DevLoginOptions{Name: "Ring Three", Via: e.URL})
	load.addToken(t3.Access)
	load.waitCalls(t, 80)
	// Old refresh tokens (sealed with k1) still refresh, on any replica.
	r1 := harness.DevRefresh(t, lb.URL, t1.ClientID, t1.Refresh)
	load.addToken(r1.Access)
	load.waitCalls(t, 40)
	lb.route(t, e, f)
	load.waitCalls(t, 20)
	load.stop()
	t.Logf("%d calls during the ring rotation, %d failed", load.ok.Load(), load.failed.Load())
	if n := load.failed.Load(); n != 0 {
		t.Fatalf("%d calls failed: %v", n, load.failures)
	}
	// Every token still opens on the final replicas.
	hc := newKeysClient()
	for name, tok := range map[string]string{"t1": t1.Access, "t2": t2.Access, "t3": t3.Access, "refreshed t1": r1.Access} {
		if err := keysCall(hc, lb.URL, tok); err != nil {
			t.Errorf("%s after the rotation: %v", name, err)
		}
	}
}
