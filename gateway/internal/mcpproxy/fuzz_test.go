package mcpproxy

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// sseEvents parses an SSE stream into its dispatched events (field lines joined), ignoring
// comments, as the WHATWG parser does.
func sseEvents(b []byte) []string {
	s := strings.ReplaceAll(strings.ReplaceAll(string(b), "\r\n", "\n"), "\r", "\n")
	var events []string
	var cur []string
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if i == len(lines)-1 {
			break // incomplete last line: not yet a line
		}
		switch {
		case l == "":
			if len(cur) > 0 {
				events = append(events, strings.Join(cur, "|"))
			}
			cur = nil
		case l[0] == ':':
		default:
			cur = append(cur, l)
		}
	}
	return events
}

func FuzzKeepAliveInsertion(f *testing.F) {
	f.Add([]byte("data: a\n"), []byte("\ndata: b\n\n"))
	f.Add([]byte("data: a\r"), []byte("\ndata: b\r\n\r\n"))
	f.Add([]byte("data: par"), []byte("tial\n\n"))
	f.Add([]byte(""), []byte("event: x\ndata: y\n\n"))
	f.Fuzz(func(t *testing.T, prefix, rest []byte) {
		k := &keepAliveBody{}
		k.note(prefix)
		c := k.comment()
		if c == nil {
			return
		}
		k.note(c)
		with := append(append(append([]byte{}, prefix...), c...), rest...)
		without := append(append([]byte{}, prefix...), rest...)
		if a, b := sseEvents(with), sseEvents(without); strings.Join(a, "\x00") != strings.Join(b, "\x00") {
			t.Fatalf("keep-alive %q after %q changed the events: %q vs %q", c, prefix, a, b)
		}
	})
}

func FuzzMCPMethod(f *testing.F) {
	f.Add([]byte(callBody), "")
	f.Add([]byte(`[{"method":"x"}]`), "")
	f.Add([]byte(`{"method":1}`), "tools/call")
	f.Add([]byte(`{"jsonrpc":"2.0","method":"resources/read","params":{"uri":"test://a\u00e9","x":[1,{"name":2}]},"id":"\ud83d\ude00"}`), "")
	f.Add([]byte(`{"params":{"name":"a","arguments":{"name":"b"}},"method":"tools/call","method":"x"}`), "")
	f.Add([]byte(`{"par\u0061ms":{"n\u0061me":"esc"},"method":null}`), "")
	f.Fuzz(func(t *testing.T, body []byte, hdr string) {
		h := http.Header{}
		if hdr != "" {
			h.Set("Mcp-Method", hdr)
		}
		m, n := mcpMethod(h, body)
		if len(m) > maxLogName || len(n) > maxLogName {
			t.Fatalf("unbounded log fields %d %d", len(m), len(n))
		}
		if hdr != "" || !utf8.Valid(body) {
			return
		}
		// Differential: whenever encoding/json decodes the body, the scanner agrees.
		var msg struct {
			Method string `json:"method"`
			Params struct {
				Name string `json:"name"`
				URI  string `json:"uri"`
			} `json:"params"`
		}
		trimmed := bytes.TrimLeft(body, " \t\r\n")
		if len(trimmed) == 0 || trimmed[0] != '{' || json.Unmarshal(body, &msg) != nil {
			return
		}
		wantName := msg.Params.Name
		if wantName == "" {
			wantName = msg.Params.URI
		}
		if m != trunc(msg.Method) || n != trunc(wantName) {
			t.Fatalf("body %q: scanner (%q, %q), encoding/json (%q, %q)", body, m, n, msg.Method, wantName)
		}
	})
}

func FuzzHeaderValueAndBearer(f *testing.F) {
	f.Add("Zoë", "Bearer abc")
	f.Add("a\r\nX-Evil: 1", "bearer  x ")
	f.Fuzz(func(t *testing.T, v, authz string) {
		out := headerValue(v)
		for i := 0; i < len(out); i++ {
			if out[i] < 0x20 || out[i] > 0x7e {
				t.Fatalf("headerValue(%q) = %q", v, out)
			}
		}
		tok, ok := bearer(http.Header{"Authorization": {authz}})
		if ok && (tok == "" || strings.TrimSpace(tok) != tok) {
			t.Fatalf("bearer(%q) = %q", authz, tok)
		}
	})
}

// slowBody yields chunks with pauses.
type slowBody struct {
	chunks [][]byte
	pause  time.Duration
}

func (s *slowBody) Read(p []byte) (int, error) {
	if len(s.chunks) == 0 {
		return 0, io.EOF
	}
	time.Sleep(s.pause)
	n := copy(p, s.chunks[0])
	s.chunks[0] = s.chunks[0][n:]
	if len(s.chunks[0]) == 0 {
		s.chunks = s.chunks[1:]
	}
	return n, nil
}
func (*slowBody) Close() error { return nil }

func TestKeepAliveBodyPreservesStream(t *testing.T) {
	chunks := [][]byte{[]byte("id: 1\ndata: {\"a\""), []byte(":1}\n"), []byte("\n"), []byte("data: x\r\n\r\n")}
	var want []byte
	for _, c := range chunks {
		want = append(want, c...)
	}
	kb := newKeepAliveBody(&slowBody{chunks: chunks, pause: 40 * time.Millisecond}, 10*time.Millisecond)
	got, err := io.ReadAll(kb)
	kb.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(got, []byte(": keep-alive")) {
		t.Fatalf("no keep-alive in %q", got)
	}
	if a, b := sseEvents(got), sseEvents(want); strings.Join(a, "\x00") != strings.Join(b, "\x00") {
		t.Fatalf("events %q, want %q (stream %q)", a, b, got)
	}
}

// BenchmarkMCPMethod is the access log's per-call cost of naming the method and tool.
func BenchmarkMCPMethod(b *testing.B) {
	body := []byte(`{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"save_snippet","arguments":{"snippetname":"x","snippet":"` + strings.Repeat("a", 512) + `"}}}`)
	b.ReportAllocs()
	for b.Loop() {
		if m, n := mcpMethod(http.Header{}, body); m != "tools/call" || n != "save_snippet" {
			b.Fatal(m, n)
		}
	}
}
