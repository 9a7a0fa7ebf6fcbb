package harness

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// NewFunctionKey returns a random key in the Functions host's shape (56 URL-safe base64
// characters from 40 random bytes).
func NewFunctionKey(t testing.TB) string {
	t.Helper()
	b := make([]byte, 40)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.URLEncoding.EncodeToString(b)
}

// WriteHostSecrets writes host.json in the Functions host's secrets format (unencrypted, as
// the standalone function app reads it) with a master key and the given host function keys.
func WriteHostSecrets(t testing.TB, dir, master string, functionKeys map[string]string) {
	t.Helper()
	type key struct {
		Name      string `json:"name"`
		Value     string `json:"value"`
		Encrypted bool   `json:"encrypted"`
	}
	doc := struct {
		MasterKey    key   `json:"masterKey"`
		FunctionKeys []key `json:"functionKeys"`
		SystemKeys   []key `json:"systemKeys"`
	}{MasterKey: key{Name: "master", Value: master}, SystemKeys: []key{}}
	for n, v := range functionKeys {
		doc.FunctionKeys = append(doc.FunctionKeys, key{Name: n, Value: v})
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, ".host.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "host.json")); err != nil {
		t.Fatal(err)
	}
}

// FunctionApp is a standalone function app (the `handler` binary) started for a test.
type FunctionApp struct {
	*Process
	URL        string // base URL, MCP at URL+"/mcp"
	Key        string // the host function key named "gateway"
	SecretsDir string
	Env        []string
	Port       int
}

// FunctionAppOptions configure StartFunctionApp.
type FunctionAppOptions struct {
	SnippetsDir string   // default: a temp dir
	Env         []string // extra environment (e.g. AzureWebJobsStorage=…)
	SecretsDir  string   // default: a temp dir with a fresh key
}

// StartFunctionApp builds and starts the function app in standalone mode on a free port with
// a fresh function key.
func StartFunctionApp(t testing.TB, opts FunctionAppOptions) *FunctionApp {
	t.Helper()
	bin := BuildBinary(t, "github.com/mcpgate/mcpgate/functionapp/cmd/handler")
	fa := &FunctionApp{SecretsDir: opts.SecretsDir}
	if fa.SecretsDir == "" {
		fa.SecretsDir = t.TempDir()
		fa.Key = NewFunctionKey(t)
		WriteHostSecrets(t, fa.SecretsDir, NewFunctionKey(t), map[string]string{"gateway": fa.Key})
	}
	snippets := opts.SnippetsDir
	if snippets == "" {
		snippets = t.TempDir()
	}
	fa.Port = FreePort(t)
	fa.URL = "http://127.0.0.1:" + strconv.Itoa(fa.Port)
	fa.Env = append([]string{
		"FUNCTIONAPP_LISTEN=127.0.0.1:" + strconv.Itoa(fa.Port),
		"FUNCTIONAPP_SECRETS_DIR=" + fa.SecretsDir,
		"SNIPPETS_DIR=" + snippets,
		"FUNCTIONS_CUSTOMHANDLER_PORT=",
	}, opts.Env...)
	fa.Process = Start(t, bin, nil, Options{Env: fa.Env})
	WaitHTTP(t, fa.Process, fa.URL+"/", 20*time.Second)
	return fa
}

// Gateway is an `mcpgate serve` process started for a test.
type Gateway struct {
	*Process
	URL      string // public URL (also the listen address)
	StateDir string
	KeyFile  string // the function key file the gateway reads
	Metrics  string // metrics base URL
	Args     []string
	Env      []string
}

// GatewayOptions configure StartGateway.
type GatewayOptions struct {
	BackendURL  string // function app base URL
	FunctionKey string // written to the key file the gateway reads
	RedisURL    string // empty: in-memory store
	StateDir    string // shared state (session ring, clients) — share it between replicas
	Args        []string
	Env         []string
	// Dev selects the development login; otherwise pass upstream settings in Args/Env.
	Dev bool
	// Port is the API port (0: a free one). Set it when something must know the public URL
	// before the gateway starts (an IdP's registered redirect URI).
	Port int
}

// StartGateway builds and starts `mcpgate serve` on a free loopback port.
func StartGateway(t testing.TB, opts GatewayOptions) *Gateway {
	t.Helper()
	bin := BuildBinary(t, "github.com/mcpgate/mcpgate/gateway/cmd/mcpgate")
	g := &Gateway{StateDir: opts.StateDir}
	if g.StateDir == "" {
		g.StateDir = t.TempDir()
	}
	g.KeyFile = filepath.Join(g.StateDir, "function-key")
	if opts.FunctionKey != "" {
		if err := os.WriteFile(g.KeyFile, []byte(opts.FunctionKey+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	port, mport := opts.Port, FreePort(t)
	if port == 0 {
		port = FreePort(t)
	}
	g.URL = "http://127.0.0.1:" + strconv.Itoa(port)
	g.Metrics = "http://127.0.0.1:" + strconv.Itoa(mport)
	g.Args = append([]string{"serve",
		"--listen", "127.0.0.1:" + strconv.Itoa(port),
		"--public-url", g.URL,
		"--metrics-listen", "127.0.0.1:" + strconv.Itoa(mport),
		"--backend-url", opts.BackendURL,
		"--function-key-file", g.KeyFile,
		"--session-keys-file", filepath.Join(g.StateDir, "session-keys.json"),
		"--clients-store", filepath.Join(g.StateDir, "clients"),
	}, opts.Args...)
	if opts.RedisURL != "" {
		g.Args = append(g.Args, "--redis-url", opts.RedisURL)
	}
	if opts.Dev {
		g.Args = append(g.Args, "--dev")
	}
	g.Env = opts.Env
	g.Process = Start(t, bin, g.Args, Options{Dir: g.StateDir, Env: g.Env})
	WaitHTTP(t, g.Process, g.URL+"/healthz", 20*time.Second)
	return g
}
