// Package snippets is the MCP server of the function app: the sample's snippet tools
// (hello_mcp, get_snippet, save_snippet) with its bugs fixed, plus list_snippets and
// delete_snippet, served over stateless Streamable HTTP with JSON responses.
package snippets

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/functionapp/storage"
)

// Store is what the tools need from snippet storage (storage.Dir and storage.Blob).
type Store interface {
	Get(ctx context.Context, name string) ([]byte, error)
	Put(ctx context.Context, name string, content []byte) error
	Delete(ctx context.Context, name string) error
	List(ctx context.Context) ([]string, error)
}

// Greeting is hello_mcp's answer (the sample's text).
const Greeting = "Hello I am MCPTool!"

// MaxRequestBodyBytes bounds an MCP request body. It is well above the largest snippet
// JSON-escaped, so an oversized snippet gets a clear tool error rather than a bare 413.
const MaxRequestBodyBytes = 8 << 20

// NameArgs are the arguments of get_snippet and delete_snippet.
type NameArgs struct {
	SnippetName string `json:"snippetname" jsonschema:"The name of the snippet: 1 to 128 characters of A-Z a-z 0-9 . _ -, not starting with a dot."`
}

// SaveArgs are the arguments of save_snippet.
type SaveArgs struct {
	SnippetName string `json:"snippetname" jsonschema:"The name of the snippet: 1 to 128 characters of A-Z a-z 0-9 . _ -, not starting with a dot."`
	Snippet     string `json:"snippet" jsonschema:"The content of the snippet: text of at most 1 MiB."`
}

// ListResult is list_snippets' structured result.
type ListResult struct {
	Snippets []string `json:"snippets" jsonschema:"The names of all saved snippets, in ascending order."`
}

// NewServer returns the MCP server with the five tools over store. Tool calls are logged
// with their name and the snippet name; snippet content is never logged.
func NewServer(store Store, logger *slog.Logger, version string) *mcp.Server {
	if logger == nil {
		logger = slog.Default()
	}
	t := &tools{store: store, log: logger}
	s := mcp.NewServer(&mcp.Implementation{Name: "mcpgate-snippets", Title: "Snippets", Version: version}, &mcp.ServerOptions{
		Instructions: "Save, fetch, list and delete named text snippets shared by every user of this server.",
	})
	mcp.AddTool(s, &mcp.Tool{Name: "hello_mcp", Description: "Hello world."}, t.hello)
	mcp.AddTool(s, &mcp.Tool{Name: "get_snippet", Description: "Retrieve a snippet by name."}, t.get)
	mcp.AddTool(s, &mcp.Tool{Name: "save_snippet", Description: "Save a snippet with a name. Replaces a snippet of the same name. Answers with the name."}, t.save)
	mcp.AddTool(s, &mcp.Tool{Name: "list_snippets", Description: "List the names of all saved snippets."}, t.list)
	mcp.AddTool(s, &mcp.Tool{Name: "delete_snippet", Description: "Delete a snippet by name."}, t.delete)
	return s
}

// NewHandler serves server over stateless Streamable HTTP with JSON responses, the mode
// Azure Functions supports. Localhost (DNS-rebinding) protection is off: behind the
// Functions host only the host reaches the loopback listener and the Host header it forwards
// is not ours to judge, and standalone every request must carry a function key before it
// gets here, which a rebinding web page cannot know.
func NewHandler(server *mcp.Server, logger *slog.Logger) http.Handler {
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, &mcp.StreamableHTTPOptions{
		Stateless:                  true,
		JSONResponse:               true,
		DisableLocalhostProtection: true,
		MaxRequestBodyBytes:        MaxRequestBodyBytes,
		Logger:                     logger,
	})
}

type tools struct {
	store Store
	log   *slog.Logger
}

func text(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}

func (t *tools) hello(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
	return text(Greeting), nil, nil
}

func (t *tools) get(ctx context.Context, _ *mcp.CallToolRequest, in NameArgs) (*mcp.CallToolResult, any, error) {
	if err := storage.ValidateName(in.SnippetName); err != nil {
		return nil, nil, toolError(err, in.SnippetName)
	}
	data, err := t.store.Get(ctx, in.SnippetName)
	if err != nil {
		return nil, nil, t.fail(ctx, "get_snippet", in.SnippetName, err)
	}
	t.log.DebugContext(ctx, "tool call", "tool", "get_snippet", "snippet", in.SnippetName, "bytes", len(data))
	return text(string(data)), nil, nil
}

func (t *tools) save(ctx context.Context, _ *mcp.CallToolRequest, in SaveArgs) (*mcp.CallToolResult, any, error) {
	if err := storage.ValidateName(in.SnippetName); err != nil {
		return nil, nil, toolError(err, in.SnippetName)
	}
	if in.Snippet == "" {
		return nil, nil, errors.New("no snippet content provided")
	}
	if len(in.Snippet) > storage.MaxSnippetBytes {
		return nil, nil, fmt.Errorf("the snippet is %d bytes; the limit is %d bytes (1 MiB)", len(in.Snippet), storage.MaxSnippetBytes)
	}
	if err := t.store.Put(ctx, in.SnippetName, []byte(in.Snippet)); err != nil {
		return nil, nil, t.fail(ctx, "save_snippet", in.SnippetName, err)
	}
	t.log.InfoContext(ctx, "snippet saved", "snippet", in.SnippetName, "bytes", len(in.Snippet))
	return text(fmt.Sprintf("Snippet '%s' saved successfully", in.SnippetName)), nil, nil
}

func (t *tools) list(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, ListResult, error) {
	names, err := t.store.List(ctx)
	if err != nil {
		return nil, ListResult{}, t.fail(ctx, "list_snippets", "", err)
	}
	if names == nil {
		names = []string{}
	}
	return nil, ListResult{Snippets: names}, nil
}

func (t *tools) delete(ctx context.Context, _ *mcp.CallToolRequest, in NameArgs) (*mcp.CallToolResult, any, error) {
	if err := storage.ValidateName(in.SnippetName); err != nil {
		return nil, nil, toolError(err, in.SnippetName)
	}
	if err := t.store.Delete(ctx, in.SnippetName); err != nil {
		return nil, nil, t.fail(ctx, "delete_snippet", in.SnippetName, err)
	}
	t.log.InfoContext(ctx, "snippet deleted", "snippet", in.SnippetName)
	return text(fmt.Sprintf("Snippet '%s' deleted", in.SnippetName)), nil, nil
}

// toolError turns a validation or lookup error into the message the client sees.
func toolError(err error, name string) error {
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("snippet '%s' not found", name)
	case errors.Is(err, storage.ErrInvalidName), errors.Is(err, storage.ErrTooLarge):
		return err
	}
	return nil
}

// fail maps a storage error to a tool error. Errors the client can act on are explained;
// anything else (storage unreachable, permissions) is logged and reported without backend
// details.
func (t *tools) fail(ctx context.Context, tool, name string, err error) error {
	if e := toolError(err, name); e != nil {
		return e
	}
	t.log.ErrorContext(ctx, "storage error", "tool", tool, "snippet", name, "err", err)
	return errors.New("the snippet store failed; try again later")
}
