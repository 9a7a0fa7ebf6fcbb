package ssebridge

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzParseMessage: any client body either is refused or yields a job whose raw message is a
// JSON object, whose id (when it is a request) is a string or a number, and never panics.
func FuzzParseMessage(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":"x","result":{}}`,
		`{"jsonrpc":"2.0","id":null,"method":"x"}`,
		`{"jsonrpc":"2.0","id":{},"method":"x"}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1,2]}`,
		`[{"jsonrpc":"2.0","id":1,"method":"x"}]`, `{`, ``, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		j, err := parseMessage(b)
		if err != nil {
			return
		}
		if !json.Valid(j.raw) || j.raw[0] != '{' {
			t.Fatalf("accepted %q", b)
		}
		if j.hasID {
			var v any
			if json.Unmarshal(j.id, &v) != nil {
				t.Fatalf("id %q", j.id)
			}
			switch v.(type) {
			case string, float64:
			default:
				t.Fatalf("id %q of type %T", j.id, v)
			}
		}
	})
}

// FuzzDecodeEnvelope: envelopes from other replicas decode to what was encoded, and garbage
// is refused without panicking.
func FuzzDecodeEnvelope(f *testing.F) {
	f.Add([]byte(encodeEnvelope(newSessionID(), strings.Repeat("a", 64), "0123456789abcdef", []byte(`{"jsonrpc":"2.0"}`))))
	f.Add([]byte("sse1\n\n\n\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, bind, reqID, raw, ok := decodeEnvelope(b)
		if !ok {
			return
		}
		if !validSessionID(id) || len(bind) != 64 || len(reqID) > 64 || !bytes.Equal(encodeEnvelope(id, bind, reqID, raw), b) {
			t.Fatalf("decode(%q) = %q %q %q %q", b, id, bind, reqID, raw)
		}
	})
}

// FuzzMessageEvent: whatever the data, the framed event is one SSE event whose data lines
// join back to the data (line ends normalised), so backend output cannot inject events.
func FuzzMessageEvent(f *testing.F) {
	f.Add([]byte(`{"a":1}`))
	f.Add([]byte("a\r\nb\rc\nd"))
	f.Add([]byte("\n\nevent: endpoint\ndata: x\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev := messageEvent(b)
		// Only the final blank line may end the event.
		if !bytes.HasSuffix(ev, []byte("\n\n")) || bytes.Contains(ev[:len(ev)-2], []byte("\n\n")) {
			t.Fatalf("event %q", ev)
		}
		lines := strings.Split(strings.TrimSuffix(string(ev), "\n\n"), "\n")
		if lines[0] != "event: message" {
			t.Fatalf("event %q", ev)
		}
		var data []string
		for _, l := range lines[1:] {
			if !strings.HasPrefix(l, "data: ") {
				t.Fatalf("line %q in %q", l, ev)
			}
			data = append(data, strings.TrimPrefix(l, "data: "))
		}
		want := strings.ReplaceAll(strings.ReplaceAll(string(b), "\r\n", "\n"), "\r", "\n")
		if len(b) > 0 && strings.Join(data, "\n") != want && strings.Join(data, "\n") != strings.TrimSuffix(want, "\n") {
			t.Fatalf("data %q, want %q", data, want)
		}
	})
}

// FuzzRelayStream: a backend event stream of any shape relays without panicking, and every
// event it writes is a well-formed message event.
func FuzzRelayStream(f *testing.F) {
	f.Add([]byte("event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"n\"}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n"))
	f.Add([]byte("data: a\ndata: b\r\n\r\n: c\n\nevent: other\ndata: x\n\n"))
	f.Add([]byte("data"))
	f.Fuzz(func(t *testing.T, body []byte) {
		b := &Bridge{cfg: Config{MaxResponseBytes: 1 << 16, MaxQueuedBytes: 1 << 30, MaxQueuedEvents: 1 << 20, MaxQueuedBytesPerUser: 1 << 30}, metrics: newMetrics(nil)}
		// writing: no writer goroutine (no sink here); events stay queued for takeFinal.
		s := &stream{b: b, done: make(chan struct{}), writing: true, budget: &userStreams{}}
		s.ctx, s.cancel = context.WithCancel(context.Background())
		defer s.cancel()
		_, _ = b.relayStream(s, job{id: json.RawMessage("1"), hasID: true}, bytes.NewReader(body))
		for _, ev := range s.takeFinal() {
			if !bytes.HasPrefix(ev, []byte("event: message\ndata: ")) || !bytes.HasSuffix(ev, []byte("\n\n")) ||
				bytes.Contains(ev[:len(ev)-2], []byte("\n\n")) {
				t.Fatalf("event %q", ev)
			}
		}
	})
}
