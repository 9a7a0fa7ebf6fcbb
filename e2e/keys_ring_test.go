package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

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

// startRingDeployment starts Redis, a function app and a load balancer for gateway replicas
// that share a state directory; it returns the balancer, that directory, the ring file in it,
// and a function that starts replica id with extra flags.
func startRingDeployment(t *testing.T) (lb *keysLB, state, ring string, replica func(id string, args ...string) *harness.Gateway) {
	rds := harness.StartRedis(t)
	fa := harness.StartFunctionApp(t, harness.FunctionAppOptions{})
	lb = startKeysLB(t)
	state = t.TempDir()
	replica = func(id string, args ...string) *harness.Gateway {
		return startKeysReplica(t, id, lb.URL, fa.URL, fa.Key, rds, state, args...)
	}
	return lb, state, filepath.Join(state, "session-keys.json"), replica
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
	lb, state, ring, replica := startRingDeployment(t)

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
	load.stopNoFailures(t, "the ring rotation")
	// Every token still opens on the final replicas.
	hc := newKeysClient()
	for name, tok := range map[string]string{"t1": t1.Access, "t2": t2.Access, "t3": t3.Access, "refreshed t1": r1.Access} {
		if err := keysCall(hc, lb.URL, tok); err != nil {
			t.Errorf("%s after the rotation: %v", name, err)
		}
	}
}

// TestSecretsRotateRingAsksTheReplicas: the replicas re-read the ring every second
// (MCPGATE_SESSION_KEYS_RELOAD_INTERVAL) and report the keys they hold on /readyz?replicas=1;
// `mcpgate secrets rotate --gateway-url` promotes the next key only once every replica holds
// it. Replica c reads a ring file that is not updated (as a replica that lost its access to
// Key Vault keeps its last ring): while it lacks the next key nothing is promoted, although
// by the clock alone the key would have been — and c would then have rejected every token
// sealed with it. Once c can read the ring again, one `--wait` run promotes, and not one call
// of the load (over a, b and c) fails.
func TestSecretsRotateRingAsksTheReplicas(t *testing.T) {
	lb, state, ring, start := startRingDeployment(t)
	replica := func(id string, args ...string) *harness.Gateway {
		return start(id, append([]string{"--session-keys-reload-interval", "1s"}, args...)...)
	}
	a := replica("a")
	b := replica("b")
	cRing := filepath.Join(t.TempDir(), "session-keys.json")
	copyFile(t, ring, cRing)
	c := replica("c", "--session-keys-file", cRing) // the flag given last wins
	lb.route(t, a, b, c)
	_, k1 := ringState(t, state, ring)
	t1 := harness.DevLogin(t, lb.URL, harness.DevLoginOptions{Name: "Live One", Via: a.URL})
	load := startKeysLoad(t, lb.URL, 3, t1.Access)
	load.waitCalls(t, 30)

	out, _ := runMcpgate(t, state, "secrets", "rotate", "--file", ring, "--gateway-url", lb.URL, "--json")
	var step1 struct{ Action, Added string }
	mustJSON(t, out, &step1)
	if step1.Action != "added-next" || step1.Added == "" {
		t.Fatalf("step 1: %s", out)
	}
	k2 := step1.Added
	// a and b pick k2 up at their next reload and report it at their next heartbeat; c cannot.
	waitRingKeys(t, lb.URL, map[string]bool{"a": true, "b": true}, k2)
	out, errOut, err := runMcpgateE(t, state, "secrets", "rotate", "--file", ring, "--gateway-url", lb.URL, "--json")
	var step2 struct{ Action, Message string }
	mustJSON(t, out, &step2)
	if err == nil || step2.Action != "waiting" || !strings.Contains(step2.Message, "c (holds "+k1+")") || strings.Contains(step2.Message, "a (") || strings.Contains(step2.Message, "b (") {
		t.Fatalf("promotion while c lacks %s: err %v, %s\nstderr: %s", k2, err, out, errOut)
	}
	if _, active := ringState(t, state, ring); active != k1 {
		t.Fatalf("active key %s, want %s still", active, k1)
	}

	// c reads the ring again; one --wait run promotes as soon as c reports k2.
	copyFile(t, ring, cRing)
	out, errOut = runMcpgate(t, state, "secrets", "rotate", "--file", ring, "--gateway-url", lb.URL, "--wait", "--timeout", "60s", "--json")
	var step3 struct{ Action, Promoted string }
	mustJSON(t, out, &step3)
	if step3.Action != "promoted" || step3.Promoted != k2 || !strings.Contains(errOut, "every gateway replica (3) holds next key "+k2) {
		t.Fatalf("step 3: %s\nstderr: %s", out, errOut)
	}
	if states, active := ringState(t, state, ring); active != k2 || states[k1] != "retired" {
		t.Fatalf("ring after promotion: %v", states)
	}
	// A token sealed with k2 (a has reloaded the promoted ring once it says so) works on every
	// replica, c included.
	t2 := loginSealedWith(t, lb.URL, a, k2)
	load.addToken(t2.Access)
	load.waitCalls(t, 60)
	load.stopNoFailures(t, "the ring rotation")
	hc := newKeysClient()
	for _, g := range []*harness.Gateway{a, b, c} {
		if err := keysCallVia(hc, g.URL, strings.TrimPrefix(lb.URL, "http://"), t2.Access); err != nil {
			t.Errorf("token sealed with %s on replica %s: %v", k2, g.URL, err)
		}
	}
}

// waitRingKeys waits (bounded) until each replica in ids lists kid
// on /readyz?replicas=1.
func waitRingKeys(t *testing.T, base string, ids map[string]bool, kid string) {
	t.Helper()
	deadline := time.Now().Add(40 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		if resp, err := http.Get(base + "/readyz?replicas=1"); err == nil {
			var doc struct {
				Replicas []struct {
					ID         string   `json:"id"`
					RingKeyIDs []string `json:"ring_key_ids"`
				} `json:"replicas"`
			}
			err = json.NewDecoder(resp.Body).Decode(&doc)
			resp.Body.Close()
			n := 0
			for _, r := range doc.Replicas {
				if ids[r.ID] && slices.Contains(r.RingKeyIDs, kid) {
					n++
				}
			}
			if err == nil && n == len(ids) {
				return
			}
			last = fmt.Sprintf("%+v %v", doc.Replicas, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("replicas %v do not list %s: %s", ids, kid, last)
}

// loginSealedWith signs in through g until the access token is sealed with kid, which
// happens once g has reloaded the ring that made kid active (bounded: g reloads every second).
func loginSealedWith(t *testing.T, base string, g *harness.Gateway, kid string) harness.DevTokens {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; ; i++ {
		tok := harness.DevLogin(t, base, harness.DevLoginOptions{Name: fmt.Sprintf("Live %d", i), Via: g.URL})
		got := tokenKID(tok.Access)
		if got == kid {
			return tok
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still seals with %q, want %q", g.URL, got, kid)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// tokenKID reads the key id from a sealed token's header (version byte, kid length, kid).
func tokenKID(tok string) string {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(raw) < 2 || len(raw) < 2+int(raw[1]) {
		return ""
	}
	return string(raw[2 : 2+int(raw[1])])
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
