package main

import (
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/functionapp/hostkeys"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// startRun runs run() in the background and stops it when the test ends.
func startRun(t *testing.T, args []string, vars map[string]string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logf, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, env(vars), logf) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		logf.Close()
		if log, _ := os.ReadFile(logf.Name()); t.Failed() {
			t.Logf("log:\n%s", log)
		}
	})
	return logf.Name()
}

func get(t *testing.T, url string, header map[string]string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			return resp.StatusCode
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func postMCP(t testing.TB, client *http.Client, url, key, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	if key != "" {
		req.Header.Set("x-functions-key", key)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const helloCall = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello_mcp","arguments":{}}}`

func TestHostMode(t *testing.T) {
	port := freePort(t)
	dir := t.TempDir()
	startRun(t, nil, map[string]string{
		"FUNCTIONS_CUSTOMHANDLER_PORT": port,
		"SNIPPETS_DIR":                 filepath.Join(dir, "snippets"),
		"FUNCTIONAPP_SECRETS_DIR":      filepath.Join(dir, "secrets"),
	})
	base := "http://127.0.0.1:" + port
	if code := get(t, base+"/", nil); code != 200 {
		t.Fatalf("host ping GET / = %d", code)
	}
	// The host checks keys in host mode; the handler does not.
	if code, body := postMCP(t, http.DefaultClient, base+"/mcp", "", helloCall); code != 200 || !strings.Contains(body, "Hello I am MCPTool!") {
		t.Fatalf("POST /mcp without key in host mode = %d %s", code, body)
	}
	if _, err := os.Stat(filepath.Join(dir, "secrets")); !os.IsNotExist(err) {
		t.Fatalf("host mode created a secrets directory: %v", err)
	}
	if code := get(t, base+"/nothing", nil); code != 404 {
		t.Fatalf("GET /nothing = %d", code)
	}
}

func TestStandaloneMode(t *testing.T) {
	port := freePort(t)
	dir := t.TempDir()
	secrets := filepath.Join(dir, "secrets")
	logFile := startRun(t, []string{"--listen", "127.0.0.1:" + port, "--secrets-dir", secrets, "--log-level", "debug"},
		map[string]string{"SNIPPETS_DIR": filepath.Join(dir, "snippets")})
	base := "http://127.0.0.1:" + port
	if code := get(t, base+"/", nil); code != 401 {
		t.Fatalf("GET / without key = %d, want 401", code)
	}
	data, err := os.ReadFile(filepath.Join(secrets, "host.json"))
	if err != nil {
		t.Fatal(err)
	}
	hs, err := hostkeys.ParseHostSecrets(data)
	if err != nil {
		t.Fatal(err)
	}
	key := hs.FunctionKeys[0].Value
	if code := get(t, base+"/", map[string]string{"x-functions-key": key}); code != 200 {
		t.Fatalf("GET / with key = %d", code)
	}
	if code, _ := postMCP(t, http.DefaultClient, base+"/mcp", "", helloCall); code != 401 {
		t.Fatalf("POST /mcp without key = %d", code)
	}
	if code, body := postMCP(t, http.DefaultClient, base+"/mcp?code=x", key, helloCall); code != 200 || !strings.Contains(body, "MCPTool") {
		t.Fatalf("POST /mcp with key = %d %s", code, body)
	}
	code, body := postMCP(t, http.DefaultClient, base+"/mcp?code="+key, "", `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"save_snippet","arguments":{"snippetname":"s","snippet":"TOPSECRETCONTENT"}}}`)
	if code != 200 || !strings.Contains(body, "'s' saved") {
		t.Fatalf("save via ?code= = %d %s", code, body)
	}
	log, _ := os.ReadFile(logFile)
	for _, secret := range []string{key, hs.MasterKey.Value, "TOPSECRETCONTENT"} {
		if strings.Contains(string(log), secret) {
			t.Fatalf("log contains a key or snippet content:\n%s", log)
		}
	}
	if !strings.Contains(string(log), filepath.Join(secrets, "host.json")) {
		t.Fatalf("log does not name the generated key file:\n%s", log)
	}
}

func TestConfig(t *testing.T) {
	c, err := parseConfig([]string{"--listen", "127.0.0.1:9"}, env(map[string]string{
		"FUNCTIONAPP_LISTEN": "127.0.0.1:1", "SNIPPETS_DIR": "/s", "AzureWebJobsStorage": "conn",
		"AzureWebJobsStorage__accountName": "acct",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.listen != "127.0.0.1:9" || c.storage.Dir != "/s" || c.storage.ConnectionString != "conn" ||
		c.storage.AccountName != "acct" || c.secretsDir != ".mcpgate/secrets" || c.hostMode() {
		t.Fatalf("config = %+v", c)
	}
	for _, args := range [][]string{{"--port", "x"}, {"--port", "70000"}, {"--log-level", "loud"}, {"--log-format", "xml"}, {"extra"}, {"--nope"}} {
		if _, err := parseConfig(args, env(nil), io.Discard); err == nil {
			t.Errorf("parseConfig(%v) accepted", args)
		}
	}
	if _, err := parseConfig([]string{"--help"}, env(nil), io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
	c, _ = parseConfig(nil, env(map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "4321"}), io.Discard)
	if !c.hostMode() || c.addr() != "127.0.0.1:4321" {
		t.Fatalf("host mode config: %+v", c)
	}
}

func TestBadStorageConfigFails(t *testing.T) {
	err := run(t.Context(), []string{"--listen", "127.0.0.1:0", "--secrets-dir", t.TempDir()},
		env(map[string]string{"AzureWebJobsStorage": "UseDevelopmentStorage=true"}), os.Stderr)
	if err == nil || !strings.Contains(err.Error(), "spell the Azurite connection string out") {
		t.Fatalf("run = %v", err)
	}
}

// TestPackageScript builds the deployable folder into a temp dir and checks its content.
func TestPackageScript(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	out := filepath.Join(t.TempDir(), "dist")
	cmd := exec.Command("bash", "../../../scripts/package-functionapp.sh", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("package script: %v\n%s", err, b)
	}
	fi, err := os.Stat(filepath.Join(out, "handler"))
	if err != nil || fi.Mode().Perm()&0o111 != 0o111 {
		t.Fatalf("handler: %v, mode %v", err, fi.Mode())
	}
	f, err := elf.Open(filepath.Join(out, "handler"))
	if err != nil {
		t.Fatalf("handler is not ELF: %v", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 || f.Class != elf.ELFCLASS64 || f.OSABI != elf.ELFOSABI_NONE && f.OSABI != elf.ELFOSABI_LINUX {
		t.Fatalf("handler is %v %v %v, want linux/amd64", f.Machine, f.Class, f.OSABI)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("handler is dynamically linked (CGO_ENABLED must be 0)")
		}
	}
	var host struct {
		Extensions struct {
			HTTP struct {
				RoutePrefix *string `json:"routePrefix"`
			} `json:"http"`
		} `json:"extensions"`
		CustomHandler struct {
			Description struct {
				DefaultExecutablePath string `json:"defaultExecutablePath"`
			} `json:"description"`
			EnableProxyingHTTPRequest bool `json:"enableProxyingHttpRequest"`
		} `json:"customHandler"`
		FunctionTimeout string `json:"functionTimeout"`
	}
	readJSON(t, filepath.Join(out, "host.json"), &host)
	if host.CustomHandler.Description.DefaultExecutablePath != "handler" || !host.CustomHandler.EnableProxyingHTTPRequest ||
		host.Extensions.HTTP.RoutePrefix == nil || *host.Extensions.HTTP.RoutePrefix != "" || host.FunctionTimeout == "" {
		t.Fatalf("host.json = %+v", host)
	}
	var fn struct {
		Bindings []struct {
			Type      string   `json:"type"`
			AuthLevel string   `json:"authLevel"`
			Methods   []string `json:"methods"`
			Route     string   `json:"route"`
		} `json:"bindings"`
	}
	readJSON(t, filepath.Join(out, "mcp", "function.json"), &fn)
	b := fn.Bindings[0]
	sort.Strings(b.Methods)
	if b.Type != "httpTrigger" || b.AuthLevel != "function" || b.Route != "{*route}" || !slices.Equal(b.Methods, []string{"delete", "get", "post"}) {
		t.Fatalf("function.json = %+v", fn)
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// BenchmarkToolsCall measures one tools/call through the whole standalone stack (function
// key check, stateless Streamable HTTP, local directory backend) over loopback HTTP with
// keep-alive, per tool. It reports the median and the 99th percentile as p50-ns and p99-ns.
func BenchmarkToolsCall(b *testing.B) {
	dir := b.TempDir()
	cfg := &config{listen: "127.0.0.1:0", secretsDir: filepath.Join(dir, "secrets"), function: "mcp", logLevel: "error", logFormat: "json"}
	cfg.storage.Dir = filepath.Join(dir, "snippets")
	h, err := newHandler(cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	data, _ := os.ReadFile(filepath.Join(cfg.secretsDir, "host.json"))
	hs, _ := hostkeys.ParseHostSecrets(data)
	key := hs.FunctionKeys[0].Value
	client := srv.Client()
	calls := []struct{ name, args string }{
		{"hello_mcp", `{}`},
		{"save_snippet", `{"snippetname":"bench","snippet":"fmt.Println(42)"}`},
		{"get_snippet", `{"snippetname":"bench"}`},
		{"list_snippets", `{}`},
	}
	for _, c := range calls {
		body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + c.name + `","arguments":` + c.args + `}}`
		b.Run(c.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			for i := 0; b.Loop(); i++ {
				start := time.Now()
				if code, resp := postMCP(b, client, srv.URL+"/mcp", key, body); code != 200 || strings.Contains(resp, `"isError":true`) {
					b.Fatalf("call %d: %d %s", i, code, resp)
				}
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
		})
	}
}
