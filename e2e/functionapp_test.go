package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/e2e/harness"
	"github.com/mcpgate/mcpgate/functionapp/storage"
	"github.com/mcpgate/mcpgate/functionapp/storage/storagetest"
)

// keyTransport adds the function key to every request, as the gateway does.
type keyTransport struct {
	key  string
	base http.RoundTripper
}

func (k keyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("x-functions-key", k.key)
	return k.base.RoundTrip(r)
}

func keyClient(key string) *http.Client {
	return &http.Client{Transport: keyTransport{key: key, base: http.DefaultTransport}, Timeout: 30 * time.Second}
}

// faConnect opens a go-sdk client session to the function app; version "" means the
// client's default (server/discover at 2026-07-28).
func faConnect(t *testing.T, fa *harness.FunctionApp, key, version string) (*mcp.ClientSession, error) {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "0"}, nil)
	var opts *mcp.ClientSessionOptions
	if version != "" {
		opts = &mcp.ClientSessionOptions{ProtocolVersion: version}
	}
	cs, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{
		Endpoint: fa.URL + "/mcp", HTTPClient: keyClient(key), DisableStandaloneSSE: true, MaxRetries: -1,
	}, opts)
	if err == nil {
		t.Cleanup(func() { _ = cs.Close() })
	}
	return cs, err
}

func toolText(res *mcp.CallToolResult) string {
	var sb strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			sb.WriteString(tc.Text)
		}
	}
	return sb.String()
}

func callTool(t *testing.T, cs *mcp.ClientSession, name string, args map[string]any) (string, bool) {
	t.Helper()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return toolText(res), res.IsError
}

// rawPost sends one JSON-RPC message and returns the status and body.
func rawPost(t testing.TB, url, key string, headers map[string]string, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if key != "" {
		req.Header.Set("x-functions-key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestFunctionAppProtocolRevisions(t *testing.T) {
	fa := harness.StartFunctionApp(t, harness.FunctionAppOptions{})
	for _, v := range []string{"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"} {
		t.Run(v, func(t *testing.T) {
			cs, err := faConnect(t, fa, fa.Key, v)
			if err != nil {
				t.Fatalf("initialize at %s: %v", v, err)
			}
			if got := cs.InitializeResult().ProtocolVersion; got != v {
				t.Fatalf("negotiated %s, want %s", got, v)
			}
			if txt, isErr := callTool(t, cs, "hello_mcp", nil); isErr || txt != "Hello I am MCPTool!" {
				t.Fatalf("hello_mcp = %q %v", txt, isErr)
			}
		})
	}
	t.Run("2026-07-28 discover", func(t *testing.T) {
		// The go-sdk client tries server/discover first at 2026-07-28; the server must take
		// it (no fallback to initialize).
		cs, err := faConnect(t, fa, fa.Key, "2026-07-28")
		if err != nil {
			t.Fatal(err)
		}
		if got := cs.InitializeResult().ProtocolVersion; got != "2026-07-28" {
			t.Fatalf("negotiated %s, want 2026-07-28", got)
		}
		if txt, isErr := callTool(t, cs, "hello_mcp", nil); isErr || txt != "Hello I am MCPTool!" {
			t.Fatalf("hello_mcp = %q %v", txt, isErr)
		}
		// And on the wire: a bare server/discover answers with the 2026 revision among the
		// supported ones and the server's tools capability.
		code, body := rawPost(t, fa.URL+"/mcp", fa.Key, map[string]string{
			"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "server/discover",
		}, `{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"raw","version":"0"}}}}`)
		var disc struct {
			Result struct {
				SupportedVersions []string       `json:"supportedVersions"`
				Capabilities      map[string]any `json:"capabilities"`
			} `json:"result"`
		}
		if err := json.Unmarshal([]byte(body), &disc); code != 200 || err != nil || disc.Result.Capabilities["tools"] == nil {
			t.Fatalf("server/discover = %d %s", code, body)
		}
		for _, v := range []string{"2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"} {
			if !slices.Contains(disc.Result.SupportedVersions, v) {
				t.Errorf("server/discover does not list %s: %v", v, disc.Result.SupportedVersions)
			}
		}
	})
	t.Run("stateless", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, fa.URL+"/mcp", nil)
		req.Header.Set("Accept", "text/event-stream")
		resp, err := keyClient(fa.Key).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("GET /mcp = %d, want 405 (stateless)", resp.StatusCode)
		}
	})
}

func TestFunctionAppKeys(t *testing.T) {
	fa := harness.StartFunctionApp(t, harness.FunctionAppOptions{})
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"0"}}}`
	for name, tc := range map[string]struct {
		key, query string
		want       int
	}{
		"no key":                 {"", "", 401},
		"wrong key":              {"wrong", "", 401},
		"key header":             {fa.Key, "", 200},
		"code query":             {"", "?code=" + fa.Key, 200},
		"header wins over query": {"wrong", "?code=" + fa.Key, 401},
	} {
		code, body := rawPost(t, fa.URL+"/mcp"+tc.query, tc.key, nil, init)
		if code != tc.want || code == 401 && body != "" {
			t.Errorf("%s: %d %q, want %d", name, code, body, tc.want)
		}
	}
	if _, err := faConnect(t, fa, "wrong", ""); err == nil {
		t.Fatal("client connected with a wrong key")
	}

	// Rotation without restart: add a new key, use it, remove the old one.
	newKey := harness.NewFunctionKey(t)
	master := harness.NewFunctionKey(t)
	harness.WriteHostSecrets(t, fa.SecretsDir, master, map[string]string{"gateway": fa.Key, "next": newKey})
	if code, _ := rawPost(t, fa.URL+"/mcp", newKey, nil, init); code != 200 {
		t.Fatalf("just-written key: %d, want 200 at once", code)
	}
	harness.WriteHostSecrets(t, fa.SecretsDir, master, map[string]string{"next": newKey})
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _ := rawPost(t, fa.URL+"/mcp", fa.Key, nil, init)
		if code == 401 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("removed key still accepted after 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _ := rawPost(t, fa.URL+"/mcp", master, nil, init); code != 200 {
		t.Fatalf("master key: %d", code)
	}
	cs, err := faConnect(t, fa, newKey, "")
	if err != nil {
		t.Fatalf("connect with the rotated key: %v", err)
	}
	if _, isErr := callTool(t, cs, "list_snippets", nil); isErr {
		t.Fatal("list_snippets failed")
	}
	_ = cs.Close()
	// SIGTERM shuts down gracefully with exit status 0.
	if err := fa.Stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, fa.Output())
	}
	for _, secret := range []string{fa.Key, newKey, master} {
		if strings.Contains(fa.Output(), secret) {
			t.Fatal("the function app logged a key")
		}
	}
}

// checkToolList checks that a tools/list answer names exactly the five snippet tools.
func checkToolList(t *testing.T, tools []*mcp.Tool, via string) {
	t.Helper()
	var names []string
	for _, tool := range tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	if want := []string{"delete_snippet", "get_snippet", "hello_mcp", "list_snippets", "save_snippet"}; !slices.Equal(names, want) {
		t.Fatalf("%s tools/list = %v, want %v", via, names, want)
	}
}

// exerciseTools runs every tool and its error paths through a go-sdk client session.
func exerciseTools(t *testing.T, cs *mcp.ClientSession) {
	t.Helper()
	tools, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	checkToolList(t, tools.Tools, "go-sdk")
	content := "SELECT 1;\n-- ünïcödé ✓\n"
	if txt, isErr := callTool(t, cs, "save_snippet", map[string]any{"snippetname": "q.sql", "snippet": content}); isErr || !strings.Contains(txt, "'q.sql' saved") || strings.Contains(txt, "SELECT") {
		t.Fatalf("save_snippet = %q %v (must answer with the name)", txt, isErr)
	}
	callTool(t, cs, "save_snippet", map[string]any{"snippetname": "A-first", "snippet": "x"})
	if txt, isErr := callTool(t, cs, "get_snippet", map[string]any{"snippetname": "q.sql"}); isErr || txt != content {
		t.Fatalf("get_snippet = %q %v", txt, isErr)
	}
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "list_snippets"})
	if err != nil || res.IsError {
		t.Fatalf("list_snippets: %v %v", err, res)
	}
	var listed struct{ Snippets []string }
	b, _ := json.Marshal(res.StructuredContent)
	_ = json.Unmarshal(b, &listed)
	if !slices.Equal(listed.Snippets, []string{"A-first", "q.sql"}) {
		t.Fatalf("list_snippets = %s", b)
	}
	if txt, isErr := callTool(t, cs, "delete_snippet", map[string]any{"snippetname": "A-first"}); isErr || !strings.Contains(txt, "deleted") {
		t.Fatalf("delete_snippet = %q %v", txt, isErr)
	}
	for _, tc := range []struct {
		tool string
		args map[string]any
		want string
	}{
		{"get_snippet", map[string]any{"snippetname": "A-first"}, "snippet 'A-first' not found"},
		{"delete_snippet", map[string]any{"snippetname": "A-first"}, "snippet 'A-first' not found"},
		{"get_snippet", map[string]any{"snippetname": "../q.sql"}, "invalid snippet name"},
		{"save_snippet", map[string]any{"snippetname": ".env", "snippet": "x"}, "must not start with a dot"},
		{"save_snippet", map[string]any{"snippetname": "dir/x", "snippet": "x"}, "invalid snippet name"},
		{"save_snippet", map[string]any{"snippetname": strings.Repeat("n", 129), "snippet": "x"}, "longer than 128"},
		{"save_snippet", map[string]any{"snippetname": "big", "snippet": strings.Repeat("b", storage.MaxSnippetBytes+1)}, "limit is 1048576 bytes"},
		{"save_snippet", map[string]any{"snippetname": "empty", "snippet": ""}, "no snippet content"},
		{"get_snippet", map[string]any{}, "snippetname"},
	} {
		if txt, isErr := callTool(t, cs, tc.tool, tc.args); !isErr || !strings.Contains(txt, tc.want) {
			t.Errorf("%s(%.60v) = %q isError=%v, want error with %q", tc.tool, tc.args, txt, isErr, tc.want)
		}
	}
}

func TestFunctionAppToolsDirectory(t *testing.T) {
	snippets := t.TempDir()
	fa := harness.StartFunctionApp(t, harness.FunctionAppOptions{SnippetsDir: snippets})
	for _, v := range []string{"", "2025-03-26"} {
		// Fresh names per revision: the namespace is shared.
		_ = os.RemoveAll(snippets)
		_ = os.MkdirAll(snippets, 0o700)
		cs, err := faConnect(t, fa, fa.Key, v)
		if err != nil {
			t.Fatal(err)
		}
		exerciseTools(t, cs)
	}
	if b, err := os.ReadFile(filepath.Join(snippets, "q.sql.json")); err != nil || !strings.HasPrefix(string(b), "SELECT 1;") {
		t.Fatalf("snippet file q.sql.json: %q %v (raw text expected)", b, err)
	}
}

func TestStorageTableAzurite(t *testing.T) {
	az := harness.StartAzurite(t)
	client, err := azblob.NewClientFromConnectionString(az.ConnectionString, nil)
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	storagetest.Run(t, func(t *testing.T) storage.Store {
		// A container per case keeps them independent; it is created on first write.
		return storage.NewBlob(client, "snippets-"+strconv.FormatInt(n.Add(1), 10))
	})
}

func TestFunctionAppAzurite(t *testing.T) {
	az := harness.StartAzurite(t)
	fa := harness.StartFunctionApp(t, harness.FunctionAppOptions{Env: []string{"AzureWebJobsStorage=" + az.ConnectionString}})
	cs, err := faConnect(t, fa, fa.Key, "")
	if err != nil {
		t.Fatal(err)
	}
	exerciseTools(t, cs)
	// The sample's layout: container "snippets", blob "{name}.json", raw text.
	client, err := azblob.NewClientFromConnectionString(az.ConnectionString, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.DownloadStream(t.Context(), "snippets", "q.sql.json", nil)
	if err != nil {
		t.Fatalf("blob snippets/q.sql.json: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if !strings.HasPrefix(string(b), "SELECT 1;") {
		t.Fatalf("blob content %q", b)
	}
	if strings.Contains(fa.Output(), az.ConnectionString) || strings.Contains(fa.Output(), harness.AzuriteAccountKey) {
		t.Fatal("the function app logged its connection string")
	}
}

func TestFunctionAppDevStorageShorthandRefused(t *testing.T) {
	bin := harness.BuildBinary(t, "github.com/mcpgate/mcpgate/functionapp/cmd/handler")
	cmd := exec.Command(bin, "--listen", "127.0.0.1:"+strconv.Itoa(harness.FreePort(t)), "--secrets-dir", t.TempDir())
	cmd.Env = append(os.Environ(), "AzureWebJobsStorage=UseDevelopmentStorage=true", "FUNCTIONS_CUSTOMHANDLER_PORT=")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "spell the Azurite connection string out") {
		t.Fatalf("handler with UseDevelopmentStorage=true: %v\n%s", err, out)
	}
}

// BenchmarkFunctionAppStartToFirstCall measures process start to the first successful
// tools/call (hello_mcp over Streamable HTTP with the function key, local directory backend),
// one fresh process per iteration. The median is reported as p50-ns.
func BenchmarkFunctionAppStartToFirstCall(b *testing.B) {
	bin := harness.BuildBinary(b, "github.com/mcpgate/mcpgate/functionapp/cmd/handler")
	secrets := b.TempDir()
	key := harness.NewFunctionKey(b)
	harness.WriteHostSecrets(b, secrets, harness.NewFunctionKey(b), map[string]string{"gateway": key})
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello_mcp","arguments":{}}}`
	// A fresh transport per iteration, so no connection outlives its server.
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		port := harness.FreePort(b)
		url := "http://127.0.0.1:" + strconv.Itoa(port) + "/mcp"
		tr := &http.Transport{}
		client := &http.Client{Transport: tr}
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), "FUNCTIONS_CUSTOMHANDLER_PORT=", "FUNCTIONAPP_LISTEN=127.0.0.1:"+strconv.Itoa(port),
			"FUNCTIONAPP_SECRETS_DIR="+secrets, "SNIPPETS_DIR="+filepath.Join(secrets, "snippets"), "FUNCTIONAPP_LOG_LEVEL=warn")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		ok := false
		for time.Since(start) < 10*time.Second {
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, url, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
			req.Header.Set("x-functions-key", key)
			resp, err := client.Do(req)
			if err == nil {
				out, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 && strings.Contains(string(out), "MCPTool") {
					ok = true
					break
				}
			}
			time.Sleep(200 * time.Microsecond)
		}
		lat = append(lat, time.Since(start))
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		tr.CloseIdleConnections()
		if !ok {
			b.Fatal("no successful tools/call within 10 s")
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*9/10].Nanoseconds()), "p90-ns")
}

// BenchmarkFunctionAppToolsCall measures tools/call (get_snippet, local directory backend)
// against the standalone binary over loopback HTTP with keep-alive, key check included. The
// median is reported as p50-ns.
func BenchmarkFunctionAppToolsCall(b *testing.B) {
	fa := harness.StartFunctionApp(b, harness.FunctionAppOptions{Env: []string{"FUNCTIONAPP_LOG_LEVEL=warn"}})
	save := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"save_snippet","arguments":{"snippetname":"bench","snippet":"fmt.Println(42)"}}}`
	get := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_snippet","arguments":{"snippetname":"bench"}}}`
	hdr := map[string]string{"Mcp-Protocol-Version": "2025-11-25"}
	if code, body := rawPost(b, fa.URL+"/mcp", fa.Key, hdr, save); code != 200 || strings.Contains(body, `"isError":true`) {
		b.Fatalf("save: %d %s", code, body)
	}
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		if code, body := rawPost(b, fa.URL+"/mcp", fa.Key, hdr, get); code != 200 || !strings.Contains(body, "fmt.Println(42)") {
			b.Fatalf("get: %d %s", code, body)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

// TestFunctionAppHostMode runs the binary as the Functions host does: FUNCTIONS_CUSTOMHANDLER_PORT
// set, the host pings / and proxies already-authorized requests without checking keys again.
func TestFunctionAppHostMode(t *testing.T) {
	bin := harness.BuildBinary(t, "github.com/mcpgate/mcpgate/functionapp/cmd/handler")
	port := harness.FreePort(t)
	dir := t.TempDir()
	p := harness.Start(t, bin, nil, harness.Options{Dir: dir, Env: []string{
		"FUNCTIONS_CUSTOMHANDLER_PORT=" + strconv.Itoa(port), "FUNCTIONS_CUSTOMHANDLER_WORKER_ID=w1", "FUNCTIONAPP_SECRETS_DIR=",
	}})
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	harness.WaitHTTP(t, p, base+"/", 10*time.Second)
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("host ping GET / = %d, want 200", resp.StatusCode)
	}
	code, body := rawPost(t, base+"/mcp", "", map[string]string{"Mcp-Protocol-Version": "2025-11-25", "X-Azure-Functions-InvocationId": "inv-1"},
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"save_snippet","arguments":{"snippetname":"h","snippet":"hosted"}}}`)
	if code != 200 || !strings.Contains(body, "'h' saved") {
		t.Fatalf("tools/call in host mode = %d %s", code, body)
	}
	if _, err := os.Stat(filepath.Join(dir, ".mcpgate", "snippets", "h.json")); err != nil {
		t.Fatalf("default snippet directory (relative to the working directory): %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".mcpgate", "secrets")); !os.IsNotExist(err) {
		t.Fatalf("host mode must not create key files: %v", err)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(p.Output()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Fatalf("host mode log line is not JSON: %q", line)
		}
	}
}
