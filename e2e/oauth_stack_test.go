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

// oauthStack is the authorization server (gateway/internal/oauth, served by its test-only
// e2eserver until `mcpgate serve` wires it) with a real redis-server and a real oidc-provider.
type oauthStack struct {
	URL   string
	Redis *harness.Redis
	IdP   *harness.OIDC
	Proc  *harness.Process
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
	bin := harness.BuildBinary(t, "github.com/mcpgate/mcpgate/gateway/internal/oauth/e2eserver")
	args := []string{"-listen", "127.0.0.1:" + strconv.Itoa(port), "-public-url", public, "-redis-url", rds.URL(),
		"-issuer", idp.Issuer, "-client-id", "mcpgate", "-client-secret", idp.Clients[0].Secret,
		"-clients-dir", t.TempDir()}
	if o.preapproved != "" {
		args = append(args, "-preapproved", o.preapproved)
	}
	p := harness.Start(t, bin, args, harness.Options{})
	harness.WaitHTTP(t, p, public+"/.well-known/oauth-authorization-server", 20*time.Second)
	return &oauthStack{URL: public, Redis: rds, IdP: idp, Proc: p}
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
