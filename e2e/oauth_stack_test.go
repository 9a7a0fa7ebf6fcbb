package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/e2e/harness"
)

// oauthStack is `mcpgate serve` (its authorization server is gateway/internal/oauth) in front
// of the standalone function app, with a real redis-server and a real oidc-provider as the
// upstream IdP.
type oauthStack struct {
	URL     string
	Metrics string
	Redis   *harness.Redis
	IdP     *harness.OIDC
	Gateway *harness.Gateway
}

type oauthStackOptions struct {
	autoLogin   string
	preapproved string
}

func startOAuthStack(t *testing.T, o oauthStackOptions) *oauthStack {
	t.Helper()
	port := harness.FreePort(t)
	public := "http://127.0.0.1:" + strconv.Itoa(port)
	rds := harness.StartRedis(t)
	idp := harness.StartOIDCProvider(t, harness.OIDCOptions{
		Clients:   []harness.OIDCClient{{ID: "mcpgate", Secret: harness.RandomString(t, 24), RedirectURIs: []string{public + "/oauth-callback"}}},
		AutoLogin: o.autoLogin,
	})
	fa := harness.StartFunctionApp(t, harness.FunctionAppOptions{})
	args := []string{"--upstream-issuer", idp.Issuer, "--upstream-client-id", "mcpgate"}
	if o.preapproved != "" {
		args = append(args, "--preapproved-clients", o.preapproved)
	}
	g := harness.StartGateway(t, harness.GatewayOptions{
		Port: port, BackendURL: fa.URL, FunctionKey: fa.Key, RedisURL: rds.URL(), Args: args,
		Env: []string{"MCPGATE_UPSTREAM_CLIENT_SECRET=" + idp.Clients[0].Secret},
	})
	if g.URL != public {
		t.Fatalf("gateway at %s, want %s", g.URL, public)
	}
	harness.WaitHTTP(t, g.Process, public+"/.well-known/oauth-authorization-server", 20*time.Second)
	return &oauthStack{URL: public, Metrics: g.Metrics, Redis: rds, IdP: idp, Gateway: g}
}

// mcpRefused waits until the gateway refuses token on /mcp (401). Revocation reaches the
// gateway's per-replica session cache through pub/sub, within a second by design.
func (s *oauthStack) mcpRefused(t *testing.T, token string) bool {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		st := s.mcpStatus(t, token)
		if st == http.StatusUnauthorized {
			return true
		}
		if time.Now().After(deadline) {
			t.Logf("/mcp still answers %d", st)
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mcpStatus sends an MCP initialize to /mcp with the bearer token and returns the status: 200
// when the gateway accepts the token (verified, looked up, proxied to the function app), 401
// otherwise.
func (s *oauthStack) mcpStatus(t *testing.T, token string) int {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}}`
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL+"/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST /mcp: %v", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// cookieClient is an HTTP client that never follows redirects and keeps cookies by name,
// sending Secure ones over http too (browsers treat 127.0.0.1 as a secure context; Go's
// cookiejar does not).
type cookieClient struct {
	t       *testing.T
	c       *http.Client
	cookies map[string]string
}

func newCookieClient(t *testing.T) *cookieClient {
	return &cookieClient{t: t, cookies: map[string]string{}, c: &http.Client{
		Timeout:       15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (c *cookieClient) do(method, u string, body io.Reader, hdr ...string) (*http.Response, string) {
	c.t.Helper()
	req, err := http.NewRequestWithContext(c.t.Context(), method, u, body)
	if err != nil {
		c.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	for k, v := range c.cookies {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	resp, err := c.c.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	for _, ck := range resp.Cookies() {
		if ck.MaxAge < 0 {
			delete(c.cookies, ck.Name)
		} else {
			c.cookies[ck.Name] = ck.Value
		}
	}
	return resp, string(b)
}

func (c *cookieClient) get(u string, hdr ...string) (*http.Response, string) {
	return c.do(http.MethodGet, u, nil, hdr...)
}

func (c *cookieClient) postForm(u string, f url.Values, hdr ...string) (*http.Response, string) {
	return c.do(http.MethodPost, u, strings.NewReader(f.Encode()), append([]string{"Content-Type", "application/x-www-form-urlencoded"}, hdr...)...)
}

func decodeJSON(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("not JSON: %v: %.300s", err, s)
	}
	return m
}

func expectStatus(t *testing.T, resp *http.Response, body string, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d: %.500s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, want, body)
	}
}

func locationOf(t *testing.T, resp *http.Response) *url.URL {
	t.Helper()
	u, err := resp.Location()
	if err != nil {
		t.Fatalf("%s: no Location: %v", resp.Request.URL.Path, err)
	}
	return u
}

var (
	formCSRF    = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	formRequest = regexp.MustCompile(`name="request" value="([^"]+)"`)
)

func unescapeAttr(s string) string {
	return strings.NewReplacer("&#43;", "+", "&amp;", "&").Replace(s)
}

// redisValues returns every string value in the Redis database (a "dump" for leak checks).
func redisValues(t *testing.T, r *harness.Redis) map[string]string {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Skip("redis-cli not installed")
	}
	port := strconv.Itoa(r.Port)
	out, err := exec.Command(cli, "-p", port, "--scan").Output()
	if err != nil {
		t.Fatalf("redis-cli --scan: %v", err)
	}
	vals := map[string]string{}
	for _, k := range strings.Fields(string(out)) {
		typ, _ := exec.Command(cli, "-p", port, "TYPE", k).Output()
		switch strings.TrimSpace(string(typ)) {
		case "string":
			v, _ := exec.Command(cli, "-p", port, "--no-raw", "GET", k).Output()
			vals[k] = string(v)
		case "set":
			v, _ := exec.Command(cli, "-p", port, "SMEMBERS", k).Output()
			vals[k] = string(v)
		}
	}
	return vals
}

// runNodeJSON runs a script in e2e/js with Node 22 and decodes the last JSON line it printed.
func runNodeJSON(t *testing.T, script string, args ...string) map[string]any {
	t.Helper()
	harness.NodeModules(t)
	out := harness.RunNode(t, harness.Node22(t), 90*time.Second, "", append([]string{filepath.Join("js", script)}, args...)...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return decodeJSON(t, lines[len(lines)-1])
}
