package e2e

import (
	"strconv"
	"testing"

	"github.com/mcpgate/mcpgate/e2e/harness"
)

// TestOAuthTSSDK: the TypeScript SDK's OAuth client (@modelcontextprotocol/sdk) completes
// discovery (PRM for /mcp, then RFC 8414), dynamic registration, authorization (posting the
// consent form with its cookies, signing in at the real IdP), the token exchange and a refresh,
// and the SDK's MCP client then calls a tool through the gateway with those tokens.
func TestOAuthTSSDK(t *testing.T) {
	s := startOAuthStack(t, oauthStackOptions{})
	redirect := "http://127.0.0.1:" + strconv.Itoa(harness.FreePort(t)) + "/oauth/callback"
	out := runNodeJSON(t, "sdk_oauth.mjs", s.URL+"/mcp", "alice", redirect)
	steps, _ := out["steps"].([]any)
	t.Logf("steps: %v", steps)
	get := func(i int) map[string]any { return steps[i].(map[string]any) }
	if out["ok"] != true || len(steps) != 8 {
		t.Fatalf("SDK run: %v", out)
	}
	if st := get(0); st["step"] != "registered" || st["client_id"] == "" {
		t.Errorf("registration: %v", st)
	}
	if st := get(1); st["step"] != "authorize" || st["resource"] != s.URL+"/mcp" || st["scope"] != "mcp:tools" || st["method"] != "S256" {
		t.Errorf("authorization request: %v", st)
	}
	if st := get(2); st["step"] != "consent" || st["status"] != float64(200) || st["xfo"] != "DENY" {
		t.Errorf("consent: %v", st)
	}
	if st := get(3); st["result"] != "REDIRECT" || st["redirect"].(map[string]any)["state_ok"] != true || st["redirect"].(map[string]any)["iss"] != s.URL {
		t.Errorf("redirect: %v", st)
	}
	if st := get(4); st["step"] != "tokens" || st["has_refresh"] != true || st["token_type"] != "Bearer" {
		t.Errorf("tokens: %v", st)
	}
	if tool, _ := get(5)["tool"].(map[string]any); get(5)["result"] != "AUTHORIZED" || tool["text"] != "Hello I am MCPTool!" {
		t.Errorf("tool call with the tokens: %v", get(5))
	}
	if st := get(7); st["step"] != "refresh" || st["result"] != "AUTHORIZED" || st["rotated"] != true || st["tool"].(map[string]any)["text"] != "Hello I am MCPTool!" {
		t.Errorf("refresh: %v", st)
	}
}
