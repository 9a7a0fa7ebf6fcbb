package snippets_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/functionapp/snippets"
	"github.com/mcpgate/mcpgate/functionapp/storage"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func serve(t *testing.T, store snippets.Store) string {
	t.Helper()
	h := snippets.NewHandler(snippets.NewServer(store, quiet(), "test"), quiet())
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func connect(t *testing.T, url string) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "0"}, nil)
	cs, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: url, DisableStandaloneSSE: true}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

func dirStore(t *testing.T) *storage.Dir {
	t.Helper()
	d, err := storage.NewDir(filepath.Join(t.TempDir(), "snippets"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// call runs a tool and returns its text and whether it is a tool error.
func call(t *testing.T, cs *mcp.ClientSession, name string, args map[string]any) (string, bool) {
	t.Helper()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: protocol error %v", name, err)
	}
	var sb strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			sb.WriteString(tc.Text)
		}
	}
	return sb.String(), res.IsError
}

func TestToolsList(t *testing.T) {
	cs := connect(t, serve(t, dirStore(t)))
	res, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
		if tool.Description == "" {
			t.Errorf("%s has no description", tool.Name)
		}
		if tool.Name == "get_snippet" || tool.Name == "save_snippet" || tool.Name == "delete_snippet" {
			schema, _ := tool.InputSchema.(map[string]any)
			props, _ := schema["properties"].(map[string]any)
			sn, _ := props["snippetname"].(map[string]any)
			if d, _ := sn["description"].(string); !strings.Contains(d, "128") {
				t.Errorf("%s: snippetname lacks a description: %v", tool.Name, schema)
			}
			if req, _ := schema["required"].([]any); !slices.Contains(req, any("snippetname")) {
				t.Errorf("%s: snippetname not required: %v", tool.Name, schema)
			}
		}
	}
	slices.Sort(names)
	want := []string{"delete_snippet", "get_snippet", "hello_mcp", "list_snippets", "save_snippet"}
	if !slices.Equal(names, want) {
		t.Fatalf("tools = %v, want %v", names, want)
	}
}

func TestTools(t *testing.T) {
	store := dirStore(t)
	cs := connect(t, serve(t, store))

	if got, isErr := call(t, cs, "hello_mcp", nil); isErr || got != snippets.Greeting {
		t.Fatalf("hello_mcp = %q, %v", got, isErr)
	}
	content := "package main\n\nfunc main() { println(\"snippet\") }\n"
	got, isErr := call(t, cs, "save_snippet", map[string]any{"snippetname": "main.go", "snippet": content})
	if isErr || !strings.Contains(got, "main.go") || strings.Contains(got, "println") {
		t.Fatalf("save_snippet = %q, %v; want the name, not the content", got, isErr)
	}
	if got, isErr := call(t, cs, "get_snippet", map[string]any{"snippetname": "main.go"}); isErr || got != content {
		t.Fatalf("get_snippet = %q, %v", got, isErr)
	}
	raw, err := store.Get(t.Context(), "main.go")
	if err != nil || string(raw) != content {
		t.Fatalf("stored raw text = %q, %v", raw, err)
	}
	call(t, cs, "save_snippet", map[string]any{"snippetname": "a", "snippet": "x"})
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "list_snippets"})
	if err != nil || res.IsError {
		t.Fatalf("list_snippets: %v %v", err, res)
	}
	list, _ := res.StructuredContent.(map[string]any)
	if names, _ := list["snippets"].([]any); !slices.Equal(names, []any{"a", "main.go"}) {
		t.Fatalf("list_snippets = %v", res.StructuredContent)
	}
	if got, isErr := call(t, cs, "delete_snippet", map[string]any{"snippetname": "a"}); isErr || !strings.Contains(got, "'a' deleted") {
		t.Fatalf("delete_snippet = %q, %v", got, isErr)
	}
	if got, isErr := call(t, cs, "get_snippet", map[string]any{"snippetname": "a"}); !isErr || got != "snippet 'a' not found" {
		t.Fatalf("get of a deleted snippet = %q, %v", got, isErr)
	}
}

func TestToolErrors(t *testing.T) {
	cs := connect(t, serve(t, dirStore(t)))
	tests := []struct {
		tool string
		args map[string]any
		want string
	}{
		{"get_snippet", map[string]any{"snippetname": "nope"}, "snippet 'nope' not found"},
		{"delete_snippet", map[string]any{"snippetname": "nope"}, "snippet 'nope' not found"},
		{"get_snippet", map[string]any{"snippetname": "../etc/passwd"}, "invalid snippet name"},
		{"get_snippet", map[string]any{"snippetname": ".hidden"}, "must not start with a dot"},
		{"save_snippet", map[string]any{"snippetname": "a/b", "snippet": "x"}, "invalid snippet name"},
		{"save_snippet", map[string]any{"snippetname": "", "snippet": "x"}, "the name is empty"},
		{"save_snippet", map[string]any{"snippetname": strings.Repeat("n", 129), "snippet": "x"}, "longer than 128"},
		{"delete_snippet", map[string]any{"snippetname": "a b"}, "invalid snippet name"},
		{"save_snippet", map[string]any{"snippetname": "big", "snippet": strings.Repeat("x", storage.MaxSnippetBytes+1)}, "limit is 1048576 bytes"},
		{"save_snippet", map[string]any{"snippetname": "empty", "snippet": ""}, "no snippet content"},
		{"save_snippet", map[string]any{"snippetname": "x"}, "snippet"},
		{"get_snippet", map[string]any{}, "snippetname"},
		{"get_snippet", map[string]any{"snippetname": 5}, "snippetname"},
	}
	for _, tt := range tests {
		got, isErr := call(t, cs, tt.tool, tt.args)
		if !isErr || !strings.Contains(got, tt.want) {
			t.Errorf("%s(%.40v) = %q, isError=%v; want an error containing %q", tt.tool, tt.args, got, isErr, tt.want)
		}
	}
	// A snippet of exactly 1 MiB is accepted, even when JSON escaping makes the request larger.
	max := strings.Repeat("\x01", storage.MaxSnippetBytes)
	if got, isErr := call(t, cs, "save_snippet", map[string]any{"snippetname": "max", "snippet": max}); isErr {
		t.Fatalf("1 MiB snippet refused: %q", got)
	}
}

// failingStore stands in for an unreachable storage account (a real one cannot be made to
// fail on demand).
type failingStore struct{ storage.Dir }

var errBackend = errors.New("dial tcp 10.1.2.3:443: secret backend detail")

func (failingStore) Get(context.Context, string) ([]byte, error) { return nil, errBackend }
func (failingStore) Put(context.Context, string, []byte) error   { return errBackend }
func (failingStore) Delete(context.Context, string) error        { return errBackend }
func (failingStore) List(context.Context) ([]string, error)      { return nil, errBackend }

func TestStorageFailureHidesDetails(t *testing.T) {
	cs := connect(t, serve(t, failingStore{}))
	for tool, args := range map[string]map[string]any{
		"get_snippet":    {"snippetname": "a"},
		"save_snippet":   {"snippetname": "a", "snippet": "b"},
		"delete_snippet": {"snippetname": "a"},
		"list_snippets":  nil,
	} {
		got, isErr := call(t, cs, tool, args)
		if !isErr || strings.Contains(got, "10.1.2.3") || !strings.Contains(got, "snippet store failed") {
			t.Errorf("%s with a failing store = %q, %v", tool, got, isErr)
		}
	}
}

func TestForeignHostHeaderServed(t *testing.T) {
	// The gateway and the Functions host may forward a non-loopback Host to the loopback
	// listener; localhost protection is off by design (see NewHandler).
	url := serve(t, dirStore(t))
	body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"0"}}}`
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	req.Host = "gateway.example.com"
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}
