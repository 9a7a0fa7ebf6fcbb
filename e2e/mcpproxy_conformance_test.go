package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/e2e/harness"
)

var (
	conformanceLine   = regexp.MustCompile(`^[✓✗] ([a-z0-9-]+): (\d+) passed, (\d+) failed`)
	conformanceSingle = regexp.MustCompile(`^Passed: (\d+)/\d+, (\d+) failed`) // --scenario output
)

// runConformance runs the MCP conformance server suite against url and returns
// scenario → "passed/failed" counts.
func runConformance(t *testing.T, url string, extra ...string) map[string]string {
	t.Helper()
	node := harness.Node22(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	args := append([]string{filepath.Join(harness.NodeModules(t), "@modelcontextprotocol", "conformance", "dist", "index.js"),
		"server", "--url", url, "-o", t.TempDir()}, extra...)
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = harness.E2EDir(t)
	out, _ := cmd.CombinedOutput() // exit 1 on any failure: the comparison below decides
	res := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if m := conformanceLine.FindStringSubmatch(line); m != nil {
			res[m[1]] = m[2] + " passed, " + m[3] + " failed"
		}
		if m := conformanceSingle.FindStringSubmatch(line); m != nil && len(extra) == 2 && extra[0] == "--scenario" {
			res[extra[1]] = m[1] + " passed, " + m[2] + " failed"
		}
	}
	if len(res) < 20 && len(extra) == 0 {
		t.Fatalf("conformance against %s reported %d scenarios:\n%s", url, len(res), out)
	}
	return res
}

// expectedDifferences reads fixtures/mcpproxy/conformance-differences.txt: lines
// "<mode> <scenario> <reason…>" for scenarios whose result through the gateway may differ.
func expectedDifferences(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(harness.E2EDir(t), "fixtures", "mcpproxy", "conformance-differences.txt"))
	if err != nil {
		t.Fatal(err)
	}
	exp := map[string]string{}
	for l := range strings.SplitSeq(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		f := strings.Fields(l)
		if len(f) < 3 {
			t.Fatalf("differences file: bad line %q", l)
		}
		exp[f[0]+" "+f[1]] = strings.Join(f[2:], " ")
	}
	return exp
}

// TestMCPProxyConformanceTransparency runs the MCP conformance server suite directly against
// go-sdk's everything-server and through the gateway (mcpgate serve on Redis, with a test-only
// forwarder adding the bearer token), stateful and stateless: every scenario must give the
// same result both ways, or be listed in the differences file with the reason.
func TestMCPProxyConformanceTransparency(t *testing.T) {
	expected := expectedDifferences(t)
	rds := harness.StartRedis(t)
	seen := map[string]bool{}
	for _, mode := range []string{"stateful", "stateless"} {
		t.Run(mode, func(t *testing.T) {
			backend := startEverythingServer(t, mode == "stateless")
			gw := startMCPGateway(t, backend, harness.NewFunctionKey(t), rds, "--rate-limit-rps", "1000", "--rate-limit-burst", "1000")
			direct := runConformance(t, backend+"/mcp")
			fwd := bearerForwarder(t, gw.URL, gw.Token) + "/mcp"
			through := runConformance(t, fwd)
			for sc, d := range direct {
				g, ok := through[sc]
				if ok && g != d && expected[mode+" "+sc] == "" {
					// About one full run in two, one random scenario stalls for 60 s and fails
					// behind any two proxy hops, including two plain httputil.ReverseProxy hops
					// with no mcpgate code (checked): a timing race between go-sdk's stateful
					// server and the TypeScript client, not a proxy bug. Such a scenario is run
					// again on its own; a deterministic difference fails both times.
					if again := runConformance(t, fwd, "--scenario", sc)[sc]; again == d {
						t.Logf("FLAKY %s %s: %s in the full run, %s when run again", mode, sc, g, again)
						g = again
					}
				}
				key := mode + " " + sc
				switch {
				case ok && g == d:
					if reason, listed := expected[key]; listed {
						t.Errorf("%s: listed as differing (%s) but both give %s: remove it from the differences file", key, reason, d)
					}
				case expected[key] != "":
					seen[key] = true
					t.Logf("%s: direct %s, through the gateway %s — expected: %s", key, d, g, expected[key])
				default:
					t.Errorf("%s: direct %s, through the gateway %q", key, d, g)
				}
			}
			for sc := range through {
				if _, ok := direct[sc]; !ok {
					t.Errorf("%s %s: only reported through the gateway", mode, sc)
				}
			}
			t.Logf("%s: %d scenarios compared", mode, len(direct))
		})
	}
	for key := range expected {
		if !seen[key] && !t.Failed() {
			t.Errorf("differences file lists %q, which did not differ", key)
		}
	}
}
