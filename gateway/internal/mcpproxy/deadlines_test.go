package mcpproxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// rawRequest opens a connection to the gateway and writes a POST /mcp head announcing
// contentLength body bytes, then body.
func (e *env) rawRequest(t *testing.T, contentLength int, body string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(e.gw.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	fmt.Fprintf(c, "POST /mcp HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"+
		"Accept: application/json, text/event-stream\r\nContent-Length: %d\r\n\r\n%s",
		strings.TrimPrefix(e.gw.URL, "http://"), goodToken, contentLength, body)
	return c
}

// TestBodyThatNeverArrives: a client that declares a body and stops sending gets 408 once
// the body read timeout passes, and nothing reaches the backend.
func TestBodyThatNeverArrives(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.BodyReadTimeout = 200 * time.Millisecond })
	c := e.rawRequest(t, 4<<20, `{"jsonrpc":"2.0",`)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second)) // a bound against hangs
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), `"code":-32005`) {
		t.Fatalf("stalled body: %d %s", resp.StatusCode, body)
	}
	if n := len(e.seen.headers); n != 0 {
		t.Fatalf("the backend got %d requests", n)
	}
}

// TestReadBodyGrowsWithWhatArrives: the memory reserved for a body follows what arrives, not
// the Content-Length the client declares.
func TestReadBodyGrowsWithWhatArrives(t *testing.T) {
	pr, pw := io.Pipe()
	r, _ := http.NewRequest(http.MethodPost, "/mcp", pr)
	r.ContentLength = 4 << 20
	go func() { _, _ = pw.Write([]byte(`{"a":1}`)); _ = pw.Close() }()
	var before, after runtimeMem
	before.read()
	b, err := ReadBody(noDeadlineWriter{}, r, 5<<20, time.Second)
	after.read()
	if err != nil || string(b) != `{"a":1}` {
		t.Fatalf("ReadBody = %q, %v", b, err)
	}
	if grew := after.totalAlloc - before.totalAlloc; grew > 1<<20 {
		t.Fatalf("reading 7 bytes of a declared 4 MiB body allocated %d bytes", grew)
	}
}

// TestClientThatStopsReadingIsCutOff: a client that stops reading a streamed response is cut
// off once a write makes no progress for the write timeout, and the backend request ends
// with it (no goroutine or backend connection pinned).
func TestClientThatStopsReadingIsCutOff(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.WriteProgressTimeout = 200 * time.Millisecond })
	backendDone := make(chan struct{})
	e.handler = func(w http.ResponseWriter, r *http.Request) {
		defer close(backendDone)
		w.Header().Set("Content-Type", "text/event-stream")
		chunk := "data: " + strings.Repeat("x", 32<<10) + "\n\n"
		rc := http.NewResponseController(w)
		for r.Context().Err() == nil {
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		}
	}
	e.rawRequest(t, len(callBody), callBody) // and never read the answer
	select {
	case <-backendDone:
	case <-time.After(20 * time.Second): // a bound against hangs, not a timing assertion
		t.Fatal("the backend stream was not ended after the client stopped reading")
	}
}

// noDeadlineWriter is a ResponseWriter without a connection (deadlines unsupported).
type noDeadlineWriter struct{}

func (noDeadlineWriter) Header() http.Header         { return http.Header{} }
func (noDeadlineWriter) Write(b []byte) (int, error) { return len(b), nil }
func (noDeadlineWriter) WriteHeader(int)             {}

type runtimeMem struct{ totalAlloc uint64 }

func (m *runtimeMem) read() {
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	m.totalAlloc = s.TotalAlloc
}

// TestAccessLogNamesWhatTheBodyCalls: the access log records the method and tool of the body
// the backend acts on, not the Mcp-Method / Mcp-Name headers a client may set to anything
// (servers check them against the body only from protocol version 2026-07-28).
func TestAccessLogNamesWhatTheBodyCalls(t *testing.T) {
	e := newEnv(t, nil)
	resp, _ := e.do(http.MethodPost, with(map[string]string{
		"MCP-Protocol-Version": "2025-06-18", "Mcp-Method": "tools/list", "Mcp-Name": "harmless",
	}), callBody)
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(e.logText(), `"mcp_method":"tools/call","mcp_name":"hello_mcp"`); {
		if time.Now().After(deadline) {
			t.Fatalf("access log: %s", e.logText())
		}
		time.Sleep(time.Millisecond)
	}
	if strings.Contains(e.logText(), "harmless") {
		t.Fatalf("the access log took the claimed name: %s", e.logText())
	}
}

// TestBackendErrorsAreReplaced: a 5xx or 403 from the backend (the Functions host's or the
// Azure front end's own page, naming the site) reaches the client as the gateway's JSON-RPC
// error, without the backend's body or its Application Insights header.
func TestBackendErrorsAreReplaced(t *testing.T) {
	e := newEnv(t, nil)
	const page = `<html><title>Service Unavailable</title>func-mcpgate-abc.azurewebsites.net is stopped</html>`
	for status, want := range map[int]int{500: 502, 502: 502, 503: 503, 504: 504, 403: 502} {
		e.handler = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Header().Set("Request-Context", "appId=cid-v1:0a1b2c3d")
			w.WriteHeader(status)
			_, _ = io.WriteString(w, page)
		}
		resp, body := e.do(http.MethodPost, auth, callBody)
		if resp.StatusCode != want || !strings.Contains(body, `"jsonrpc":"2.0"`) || !strings.Contains(body, `"id":null`) {
			t.Fatalf("backend %d: got %d %s", status, resp.StatusCode, body)
		}
		if strings.Contains(body, "azurewebsites") || resp.Header.Get("Request-Context") != "" {
			t.Fatalf("backend %d leaked: %v %s", status, resp.Header, body)
		}
		if status == 503 && resp.Header.Get("Retry-After") == "" {
			t.Fatal("503 without Retry-After")
		}
	}
}
