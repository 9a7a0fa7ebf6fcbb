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
	f.Add([]byte(callBody))
	f.Add([]byte(`[{"method":"x"}]`))
	f.Add([]byte(`{"method":1}`))
	f.Add([]byte(`{"jsonrpc":"2.0","method":"resources/read","params":{"uri":"test://a\u00e9","x":[1,{"name":2}]},"id":"\ud83d\ude00"}`))
	f.Add([]byte(`{"params":{"name":"a","arguments":{"name":"b"}},"method":"tools/call","method":"x"}`))
	f.Add([]byte(`{"par\u0061ms":{"n\u0061me":"esc"},"method":null}`))
	f.Add([]byte(`{"pARAms":{"nAme":"0"},"METHOD":"x"}`)) // keys are case-sensitive (CI found this)
	f.Add([]byte(`{"params":{"name":"a"},"params":{"uri":"b"},"method":"m"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		m, n := mcpMethod(body)
		if len(m) > maxLogName || len(n) > maxLogName {
			t.Fatalf("unbounded log fields %d %d", len(m), len(n))
		}
		if !utf8.Valid(body) {
			return
		}
		// Differential: whenever the body decodes as an object, the scanner agrees. Keys match
		// exactly, as in the go-sdk's decoder (segmentio/encoding with
		// DontMatchCaseInsensitiveStructFields): encoding/json's struct decoding would also
		// accept "pARAms" or "nAme", so the reference decodes into maps, whose keys are exact.
		trimmed := bytes.TrimLeft(body, " \t\r\n")
		if len(trimmed) == 0 || trimmed[0] != '{' {
			return
		}
		want, ok := exactKeyMethod(body)
		if !ok {
			return
		}
		if m != trunc(want.Method) || n != trunc(want.Name) {
			t.Fatalf("body %q: scanner (%q, %q), encoding/json (%q, %q)", body, m, n, want.Method, want.Name)
		}
	})
}

// exactKeyMethod decodes body's method and params.name (or params.uri) with exact key
// matching; ok is false when encoding/json rejects the body or a field has the wrong type.
func exactKeyMethod(body []byte) (out struct{ Method, Name string }, ok bool) {
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return out, false
	}
	str := func(m map[string]json.RawMessage, key string) (string, bool) {
		var s string
		if raw, present := m[key]; present && json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return s, true
	}
	var params map[string]json.RawMessage
	if raw, present := top["params"]; present && json.Unmarshal(raw, &params) != nil {
		return out, false
	}
	method, ok1 := str(top, "method")
	name, ok2 := str(params, "name")
	uri, ok3 := str(params, "uri")
	if !ok1 || !ok2 || !ok3 {
		return out, false
	}
	if name == "" {
		name = uri
	}
	out.Method, out.Name = method, name
	return out, true
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
		if m, n := mcpMethod(body); m != "tools/call" || n != "save_snippet" {
			b.Fatal(m, n)
		}
	}
}
