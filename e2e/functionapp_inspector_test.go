package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/e2e/harness"
)

// inspector runs MCP Inspector's CLI (inspector-cli 1.0.3) against url with the function
// key header. It must run from its build directory (it reads ../package.json relative to
// the working directory).
func inspector(t *testing.T, url, key string, args ...string) (string, error) {
	t.Helper()
	return inspectorHeader(t, url, "x-functions-key: "+key, args...)
}

// inspectorHeader runs the inspector CLI over Streamable HTTP against url with one request
// header ("Name: Value"; none when empty). It returns stdout, or stdout and stderr on failure.
func inspectorHeader(t *testing.T, url, header string, args ...string) (string, error) {
	t.Helper()
	dir := filepath.Join(harness.NodeModules(t), "@modelcontextprotocol", "inspector-cli", "build")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	full := []string{"index.js", url, "--transport", "http"}
	if header != "" {
		full = append(full, "--header", header)
	}
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, harness.Node20(t), full...)
	cmd.Dir = dir
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

func TestFunctionAppInspectorCLI(t *testing.T) {
	fa := harness.StartFunctionApp(t, harness.FunctionAppOptions{})
	url := fa.URL + "/mcp"

	out, err := inspector(t, url, fa.Key, "--method", "tools/list")
	if err != nil {
		t.Fatalf("inspector tools/list: %v\n%s", err, out)
	}
	var list mcp.ListToolsResult
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("tools/list output: %v\n%s", err, out)
	}
	checkToolList(t, list.Tools, "inspector")

	out, err = inspector(t, url, fa.Key, "--method", "tools/call", "--tool-name", "save_snippet",
		"--tool-arg", "snippetname=inspector.txt", `snippet=hello from the inspector`)
	if err != nil || !strings.Contains(out, "'inspector.txt' saved") || strings.Contains(out, `"isError": true`) {
		t.Fatalf("inspector save_snippet: %v\n%s", err, out)
	}
	out, err = inspector(t, url, fa.Key, "--method", "tools/call", "--tool-name", "get_snippet", "--tool-arg", "snippetname=inspector.txt")
	if err != nil {
		t.Fatalf("inspector get_snippet: %v\n%s", err, out)
	}
	var res struct {
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
		IsError bool `json:"isError"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.IsError || len(res.Content) != 1 || res.Content[0].Text != "hello from the inspector" {
		t.Fatalf("inspector get_snippet = %v\n%s", err, out)
	}

	// Without the right key the inspector cannot even connect.
	if out, err := inspector(t, url, "wrong-key", "--method", "tools/list"); err == nil {
		t.Fatalf("inspector connected with a wrong key:\n%s", out)
	} else if !strings.Contains(out, "Failed to connect") {
		t.Fatalf("wrong key: expected a connection failure, got:\n%s", out)
	}
}
