package e2e

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/mcpgate/mcpgate/e2e/harness"
)

// TestUpstream runs gateway/internal/upstream's IdP tests against a real oidc-provider: the
// e2e module starts the IdP (it owns Node processes) and hands it to the package's tests,
// which it cannot import (internal), through MCPGATE_TEST_OIDC_FIXTURE.
func TestUpstream(t *testing.T) {
	redirect := "http://127.0.0.1:" + strconv.Itoa(harness.FreePort(t)) + "/oauth-callback"
	idp := harness.StartOIDCProvider(t, harness.OIDCOptions{
		Clients: []harness.OIDCClient{{ID: "mcpgate-gateway", Secret: harness.RandomString(t, 24), RedirectURIs: []string{redirect}}},
	})
	fx, _ := json.Marshal(map[string]string{
		"issuer": idp.Issuer, "client_id": idp.Clients[0].ID, "client_secret": idp.Clients[0].Secret,
		"redirect_uri": redirect, "control_token": idp.ControlToken(),
	})
	runGatewayTests(t, "./internal/upstream", "^TestIdP", "MCPGATE_TEST_OIDC_FIXTURE="+string(fx))
}

// runGatewayTests runs `go test` on a gateway package with extra environment and fails when
// the package's tests fail (or were all skipped).
func runGatewayTests(t *testing.T, pkg, run string, env ...string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "go", "test", "-count=1", "-v", "-run", run, pkg)
	cmd.Dir = filepath.Join(harness.RepoRoot(t), "gateway")
	cmd.Env = append(cmd.Environ(), env...)
	out, err := cmd.CombinedOutput()
	t.Logf("go test %s -run %s:\n%s", pkg, run, out)
	if err != nil {
		t.Fatalf("gateway tests failed: %v", err)
	}
	if !gatewayTestsPassed(string(out)) {
		t.Fatal("gateway tests did not run (all skipped?)")
	}
}

var (
	gatewayPassLine = regexp.MustCompile(`(?m)^\s*--- PASS: `)
	gatewaySkipLine = regexp.MustCompile(`(?m)^\s*--- SKIP: `)
)

// gatewayTestsPassed reports whether verbose go test output has passing tests and no skipped ones.
func gatewayTestsPassed(out string) bool {
	return gatewayPassLine.MatchString(out) && !gatewaySkipLine.MatchString(out)
}
