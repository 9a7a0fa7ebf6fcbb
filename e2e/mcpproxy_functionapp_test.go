package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/e2e/harness"
)

// gwConnect opens a go-sdk client session to the gateway's /mcp.
func gwConnect(t *testing.T, gw *mcpGateway, version string) (*mcp.ClientSession, error) {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "e2e-gw", Version: "0"}, nil)
	var opts *mcp.ClientSessionOptions
	if version != "" {
		opts = &mcp.ClientSessionOptions{ProtocolVersion: version}
	}
	cs, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{
		Endpoint: gw.URL + "/mcp", DisableStandaloneSSE: true, MaxRetries: -1,
		HTTPClient: &http.Client{Transport: bearerTransport{token: gw.Token, base: http.DefaultTransport}, Timeout: 30 * time.Second},
	}, opts)
	if err == nil {
		t.Cleanup(func() { _ = cs.Close() })
	}
	return cs, err
}

// TestMCPProxyFunctionApp drives the real function app through `mcpgate serve` with the go-sdk
// client at every protocol revision, runs every snippet tool, and checks what the edges of the
// chain answer on the wire.
func TestMCPProxyFunctionApp(t *testing.T) {
	fa := harness.StartFunctionApp(t, harness.FunctionAppOptions{})
	gw := startMCPGateway(t, fa.URL, fa.Key, nil)
	for _, v := range []string{"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"} {
		t.Run(v, func(t *testing.T) {
			cs, err := gwConnect(t, gw, v)
			if err != nil {
				t.Fatalf("connect at %s through the gateway: %v", v, err)
			}
			if got := cs.InitializeResult().ProtocolVersion; got != v {
				t.Fatalf("negotiated %s, want %s", got, v)
			}
			if txt, isErr := callTool(t, cs, "hello_mcp", nil); isErr || txt != "Hello I am MCPTool!" {
				t.Fatalf("hello_mcp = %q %v", txt, isErr)
			}
		})
	}
	t.Run("every tool", func(t *testing.T) {
		cs, err := gwConnect(t, gw, "")
		if err != nil {
			t.Fatal(err)
		}
		exerciseTools(t, cs)
	})
	t.Run("edges", func(t *testing.T) {
		prm := gw.URL + "/.well-known/oauth-protected-resource/mcp"
		code, hdr, body := mcpPost(t, gw.URL, "", helloCall)
		if code != 401 || hdr.Get("WWW-Authenticate") != `Bearer resource_metadata="`+prm+`", scope="mcp:tools"` {
			t.Fatalf("no token: %d %v %s", code, hdr, body)
		}
		code, hdr, _ = mcpPost(t, gw.URL, gw.Token+"x", helloCall)
		if code != 401 || !strings.Contains(hdr.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Fatalf("bad token: %d %v", code, hdr)
		}
		// The function app's own answers pass through unchanged: stateless GET → 405.
		req, _ := http.NewRequest(http.MethodGet, gw.URL+"/mcp", nil)
		req.Header.Set("Authorization", "Bearer "+gw.Token)
		req.Header.Set("Accept", "text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		direct, _ := http.NewRequest(http.MethodGet, fa.URL+"/mcp", nil)
		direct.Header.Set("x-functions-key", fa.Key)
		direct.Header.Set("Accept", "text/event-stream")
		dresp, err := http.DefaultClient.Do(direct)
		if err != nil {
			t.Fatal(err)
		}
		dresp.Body.Close()
		if resp.StatusCode != dresp.StatusCode {
			t.Fatalf("GET /mcp: %d through the gateway, %d direct", resp.StatusCode, dresp.StatusCode)
		}
		// A bad Origin is refused before anything else; the public origin is allowed.
		for origin, want := range map[string]int{"https://evil.example": 403, gw.URL: 200} {
			req, _ := http.NewRequest(http.MethodPost, gw.URL+"/mcp", strings.NewReader(helloCall))
			req.Header.Set("Authorization", "Bearer "+gw.Token)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			req.Header.Set("Origin", origin)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Fatalf("Origin %s: %d, want %d", origin, resp.StatusCode, want)
			}
		}
	})
	if strings.Contains(gw.Output(), fa.Key) || strings.Contains(gw.Output(), gw.Token) {
		t.Fatal("the gateway logged the function key or the access token")
	}
}
