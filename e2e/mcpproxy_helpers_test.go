package e2e

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/e2e/harness"
)

// mcpGateway is `mcpgate serve` on Redis with a token minted for a synthetic user.
type mcpGateway struct {
	*harness.Gateway
	Redis *harness.Redis
	Token string
}

// startMCPGateway starts redis-server (unless rds is given) and `mcpgate serve --dev` in front
// of backend, and mints an access token for /mcp straight into its grant store with
// mcpgate-bench (the OAuth flow itself is tested elsewhere).
func startMCPGateway(t *testing.T, backend, functionKey string, rds *harness.Redis, extraArgs ...string) *mcpGateway {
	t.Helper()
	if rds == nil {
		rds = harness.StartRedis(t)
	}
	g := harness.StartGateway(t, harness.GatewayOptions{BackendURL: backend, FunctionKey: functionKey, RedisURL: rds.URL(), Dev: true, Args: extraArgs})
	harness.WaitHTTP(t, g.Process, g.URL+"/readyz", 20*time.Second)
	gw := &mcpGateway{Gateway: g, Redis: rds}
	gw.Token = gw.mint(t)
	return gw
}

// mint issues a new grant and returns its access token.
func (g *mcpGateway) mint(t *testing.T) string {
	t.Helper()
	bin := harness.BuildBinary(t, "github.com/mcpgate/mcpgate/gateway/cmd/mcpgate-bench")
	out, err := exec.Command(bin, "mint", "-redis-url", g.Redis.URL(), "-session-keys-file", filepath.Join(g.StateDir, "session-keys.json"),
		"-resource", g.URL+"/mcp", "-client-id", "e2e-client", "-user", "e2e-user").CombinedOutput()
	if err != nil {
		t.Fatalf("mint: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// startEverythingServer starts go-sdk's conformance fixture (stateful or stateless).
func startEverythingServer(t *testing.T, stateless bool) string {
	t.Helper()
	bin := harness.BuildBinary(t, "github.com/modelcontextprotocol/go-sdk/conformance/everything-server")
	port := harness.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p := harness.Start(t, bin, []string{"-http=" + addr, "-stateless=" + strconv.FormatBool(stateless)}, harness.Options{})
	harness.WaitTCP(t, p, addr, 20*time.Second)
	return "http://" + addr
}

// bearerForwarder is the test-only hop that lets a client without auth options (the MCP
// conformance suite) reach the gateway: it adds the bearer token and otherwise forwards the
// request unchanged. Requests addressed to the forwarder itself get the gateway's Host (and an
// Origin naming the forwarder becomes the gateway's origin); any other Host or Origin (the
// suite's DNS-rebinding probes) is passed on as sent, so the gateway's own checks answer them.
func bearerForwarder(t *testing.T, gatewayURL, token string) string {
	t.Helper()
	target, _ := url.Parse(gatewayURL)
	fwd := httptest.NewUnstartedServer(nil)
	self := fwd.Listener.Addr().String()
	fwd.Config.Handler = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			if pr.In.Host != self {
				pr.Out.Host = pr.In.Host
			}
			if pr.In.Header.Get("Origin") == "http://"+self {
				pr.Out.Header.Set("Origin", gatewayURL)
			}
			pr.Out.Header.Set("Authorization", "Bearer "+token)
		},
		FlushInterval: -1,
	}
	fwd.Start()
	t.Cleanup(fwd.Close)
	return "http://" + self
}

// mcpPost sends one JSON-RPC POST to /mcp with the given bearer token.
func mcpPost(t *testing.T, gatewayURL, token, body string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, gatewayURL+"/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST /mcp: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}
