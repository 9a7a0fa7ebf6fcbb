package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/e2e/harness"
)

// bearerTransport adds an access token to every request, as an MCP client does.
type bearerTransport struct {
	token string
	base  http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// bearerClient has no timeout: it carries event streams.
func bearerClient(token string) *http.Client {
	return &http.Client{Transport: bearerTransport{token: token, base: http.DefaultTransport}}
}

// sseConnect opens a go-sdk session over the legacy SSE transport.
func sseConnect(ctx context.Context, t *testing.T, sseURL, token string, opts *mcp.ClientOptions) (*mcp.ClientSession, error) {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "e2e-sse", Version: "0"}, opts)
	cs, err := c.Connect(ctx, &mcp.SSEClientTransport{Endpoint: sseURL, HTTPClient: bearerClient(token)}, nil)
	if err == nil {
		t.Cleanup(func() { _ = cs.Close() })
	}
	return cs, err
}

// streamableConnect opens a go-sdk session over Streamable HTTP with a bearer token.
func streamableConnect(ctx context.Context, t *testing.T, mcpURL, token string) (*mcp.ClientSession, error) {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "e2e-streamable", Version: "0"}, nil)
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: mcpURL, HTTPClient: bearerClient(token),
		DisableStandaloneSSE: true, MaxRetries: -1}, nil)
	if err == nil {
		t.Cleanup(func() { _ = cs.Close() })
	}
	return cs, err
}

// sseStack is one gateway (dev login, real redis-server) in front of a backend.
type sseStack struct {
	redis *harness.Redis
	gw    *harness.Gateway
	tok   harness.DevTokens
}

func startSSEStack(t *testing.T, backendURL, key string, args ...string) *sseStack {
	t.Helper()
	return startSSEStackWith(t, harness.StartRedis(t), backendURL, key, args...)
}

// startSSEStackWith is startSSEStack with a given redis-server (nil: the in-memory store).
func startSSEStackWith(t *testing.T, rds *harness.Redis, backendURL, key string, args ...string) *sseStack {
	t.Helper()
	s := &sseStack{redis: rds}
	url := ""
	if rds != nil {
		url = rds.URL()
	}
	s.gw = harness.StartGateway(t, harness.GatewayOptions{BackendURL: backendURL, FunctionKey: key, RedisURL: url,
		Dev: true, Args: args})
	waitReady(t, s.gw.URL)
	s.tok = harness.DevLogin(t, s.gw.URL, harness.DevLoginOptions{Name: "Sse Tester"})
	return s
}

func waitReady(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/readyz not ready", base)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSSEGoSDKTools(t *testing.T) {
	fa := harness.StartFunctionApp(t, harness.FunctionAppOptions{})
	s := startSSEStack(t, fa.URL, fa.Key)

	// Without a token: 401 pointing at the SSE endpoint's protected-resource metadata.
	resp, err := http.Get(s.gw.URL + "/mcp/sse")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("Www-Authenticate"), s.gw.URL+"/.well-known/oauth-protected-resource/mcp/sse") {
		t.Fatalf("no token: %d %q", resp.StatusCode, resp.Header.Get("Www-Authenticate"))
	}

	cs, err := sseConnect(t.Context(), t, s.gw.URL+"/mcp/sse", s.tok.Access, nil)
	if err != nil {
		t.Fatalf("connect over SSE: %v", err)
	}
	if v := cs.InitializeResult().ProtocolVersion; v == "" {
		t.Fatal("no protocol version negotiated")
	}
	exerciseTools(t, cs)

	// A refreshed token keeps the stream (it is bound to the grant and user, not the token):
	// a second session with the refreshed token works, the first one still does.
	next := harness.DevRefresh(t, s.gw.URL, s.tok.ClientID, s.tok.Refresh)
	if txt, isErr := callTool(t, cs, "hello_mcp", nil); isErr || txt != "Hello I am MCPTool!" {
		t.Fatalf("hello_mcp after refresh = %q", txt)
	}
	cs2, err := sseConnect(t.Context(), t, s.gw.URL+"/mcp/sse", next.Access, nil)
	if err != nil {
		t.Fatal(err)
	}
	if txt, _ := callTool(t, cs2, "hello_mcp", nil); txt != "Hello I am MCPTool!" {
		t.Fatalf("hello_mcp = %q", txt)
	}

	// The endpoint event names the gateway only; another user's token cannot use the stream.
	endpoint := openRawStream(t, s.gw.URL, s.tok.Access)
	if !regexp.MustCompile(`^/mcp/message\?sessionId=[A-Za-z0-9_-]{43}$`).MatchString(endpoint) {
		t.Fatalf("endpoint event %q", endpoint)
	}
	mallory := harness.DevLogin(t, s.gw.URL, harness.DevLoginOptions{Name: "Mallory"})
	if st := postMessage(t, s.gw.URL+endpoint, mallory.Access, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`); st != 404 {
		t.Fatalf("another user's POST: %d, want 404", st)
	}
	if st := postMessage(t, s.gw.URL+endpoint, s.tok.Access, `{"jsonrpc":"2.0","id":1,`); st != 400 {
		t.Fatalf("malformed POST: %d, want 400", st)
	}
	// The stream opened with the first token takes messages POSTed with the refreshed one.
	if st := postMessage(t, s.gw.URL+endpoint, next.Access, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`); st != 202 {
		t.Fatalf("POST with the refreshed token: %d, want 202", st)
	}
	if strings.Contains(s.gw.Output(), s.tok.Access) || strings.Contains(s.gw.Output(), fa.Key) {
		t.Fatal("the gateway logged a token or the function key")
	}
}

// openRawStream opens /mcp/sse by hand and returns the endpoint event's data; the stream
// stays open until the test ends.
func openRawStream(t *testing.T, base, token string) string {
	t.Helper()
	return openRawStreamOn(t, base, "", token)
}

// openRawStreamOn is openRawStream with the public URL's Host (one replica addressed
// directly); public "" means base's own.
func openRawStreamOn(t *testing.T, base, public, token string) string {
	t.Helper()
	endpoint, _ := openStream(t, base, public, token)
	return endpoint
}

// openStream opens /mcp/sse (public as for openRawStreamOn) and returns the endpoint event's
// data and the response, whose body is closed when the test ends.
func openStream(t *testing.T, base, public, token string) (string, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/mcp/sse", nil)
	if public != "" {
		req.Host = strings.TrimPrefix(public, "http://")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /mcp/sse: %d %v", resp.StatusCode, resp.Header)
	}
	buf := make([]byte, 256)
	var got strings.Builder
	for !strings.Contains(got.String(), "\n\n") {
		n, err := resp.Body.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			t.Fatalf("stream: %v after %q", err, got.String())
		}
	}
	lines := strings.Split(got.String(), "\n")
	if lines[0] != "event: endpoint" || !strings.HasPrefix(lines[1], "data: ") {
		t.Fatalf("first event %q", got.String())
	}
	return strings.TrimPrefix(lines[1], "data: "), resp
}

func postMessage(t *testing.T, u, token, body string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestSSETypeScriptSDK(t *testing.T) {
	fa := harness.StartFunctionApp(t, harness.FunctionAppOptions{})
	s := startSSEStack(t, fa.URL, fa.Key)
	out := runNodeJSON(t, "sse_client.mjs", s.gw.URL+"/mcp/sse", s.tok.Access, "tools")
	b, _ := json.Marshal(out)
	var got struct {
		Tools                                []string
		Hello, Save, Get, List, Del, Missing struct {
			Text       string
			IsError    bool
			Structured map[string]any
		}
	}
	_ = json.Unmarshal(b, &got)
	if !slices.Equal(got.Tools, []string{"delete_snippet", "get_snippet", "hello_mcp", "list_snippets", "save_snippet"}) ||
		got.Hello.Text != "Hello I am MCPTool!" || got.Save.IsError || got.Get.Text != "from the TS SDK over SSE ✓" ||
		!strings.Contains(fmt.Sprint(got.List.Structured), "ts-sse") || got.Del.IsError || !got.Missing.IsError {
		t.Fatalf("TS SDK over SSE: %s", b)
	}
}

// everythingServer starts go-sdk's conformance "everything" server, stateless, as a backend.
func everythingServer(t *testing.T) string {
	t.Helper()
	bin := harness.BuildBinary(t, "github.com/modelcontextprotocol/go-sdk/conformance/everything-server")
	addr := "127.0.0.1:" + strconv.Itoa(harness.FreePort(t))
	p := harness.Start(t, bin, []string{"-http", addr, "-stateless=true"}, harness.Options{})
	harness.WaitTCP(t, p, addr, 20*time.Second)
	return "http://" + addr
}

func TestSSEProgress(t *testing.T) {
	s := startSSEStack(t, everythingServer(t), "unused-key")
	progress := make(chan float64, 16)
	cs, err := sseConnect(t.Context(), t, s.gw.URL+"/mcp/sse", s.tok.Access, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) { progress <- r.Params.Progress },
	})
	if err != nil {
		t.Fatal(err)
	}
	params := &mcp.CallToolParams{Name: "test_tool_with_progress", Arguments: map[string]any{}}
	params.SetProgressToken("e2e-progress")
	res, err := cs.CallTool(t.Context(), params)
	if err != nil || res.IsError {
		t.Fatalf("test_tool_with_progress: %v %v", err, res)
	}
	if txt := toolText(res); !strings.Contains(txt, "e2e-progress") {
		t.Fatalf("result %q", txt)
	}
	// The notifications precede the result on the stream, so they are all here already.
	var got []float64
	for len(progress) > 0 {
		got = append(got, <-progress)
	}
	if !slices.Equal(got, []float64{0, 50, 100}) {
		t.Fatalf("go-sdk progress %v", got)
	}

	out := runNodeJSON(t, "sse_client.mjs", s.gw.URL+"/mcp/sse", s.tok.Access, "progress")
	if fmt.Sprint(out["progress"]) != "[0 50 100]" {
		t.Fatalf("TS SDK progress %v", out)
	}
}

// TestSSEInspectorCLI runs on the local default: the in-memory store (no Redis).
func TestSSEInspectorCLI(t *testing.T) {
	fa := harness.StartFunctionApp(t, harness.FunctionAppOptions{})
	s := startSSEStackWith(t, nil, fa.URL, fa.Key)
	run := func(args ...string) string {
		t.Helper()
		dir := filepath.Join(harness.NodeModules(t), "@modelcontextprotocol", "inspector-cli", "build")
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		full := append([]string{"index.js", s.gw.URL + "/mcp/sse", "--transport", "sse", "--header", "Authorization: Bearer " + s.tok.Access}, args...)
		cmd := exec.CommandContext(ctx, harness.Node20(t), full...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("inspector %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	var list mcp.ListToolsResult
	out := run("--method", "tools/list")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("tools/list output: %v\n%s", err, out)
	}
	checkToolList(t, list.Tools, "inspector over SSE")
	out = run("--method", "tools/call", "--tool-name", "save_snippet", "--tool-arg", "snippetname=insp-sse", "snippet=via inspector over SSE")
	if !strings.Contains(out, "'insp-sse' saved") || strings.Contains(out, `"isError": true`) {
		t.Fatalf("save_snippet: %s", out)
	}
	if out = run("--method", "tools/call", "--tool-name", "get_snippet", "--tool-arg", "snippetname=insp-sse"); !strings.Contains(out, "via inspector over SSE") {
		t.Fatalf("get_snippet: %s", out)
	}
}
