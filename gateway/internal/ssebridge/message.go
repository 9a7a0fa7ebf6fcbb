package ssebridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/mcpproxy"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
)

// job is one client message for the backend.
type job struct {
	raw     []byte          // the message as the client sent it (validated JSON object)
	id      json.RawMessage // the request id (nil for notifications and responses)
	hasID   bool            // a request: the backend must answer it
	method  string
	name    string // tools/call, resources/read, prompts/get: the tool, resource or prompt
	version string // initialize: the protocol version the client asked for
	reqID   string // request id of the POST (sent to the backend as X-Request-Id, logged)
}

// errBadMessage is a message that is not a JSON-RPC object.
var errBadMessage = errors.New("not a JSON-RPC 2.0 message")

// parseMessage validates a client message and extracts what the bridge needs. Batches (JSON
// arrays, 2024-11-05 only) are refused.
func parseMessage(raw []byte) (job, error) {
	var m struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Method  string          `json:"method"`
		Params  struct {
			Name            string `json:"name"`
			URI             string `json:"uri"`
			ProtocolVersion string `json:"protocolVersion"`
		} `json:"params"`
		Result json.RawMessage `json:"result"`
		Error  json.RawMessage `json:"error"`
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return job{}, errBadMessage
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		// Params of another shape (an array, or a name that is not a string) are still a
		// message: retry without them.
		var bare struct {
			JSONRPC string          `json:"jsonrpc"`
			ID      json.RawMessage `json:"id"`
			Method  string          `json:"method"`
			Result  json.RawMessage `json:"result"`
			Error   json.RawMessage `json:"error"`
		}
		if json.Unmarshal(raw, &bare) != nil {
			return job{}, errBadMessage
		}
		m.JSONRPC, m.ID, m.Method, m.Result, m.Error = bare.JSONRPC, bare.ID, bare.Method, bare.Result, bare.Error
		m.Params.Name, m.Params.URI, m.Params.ProtocolVersion = "", "", ""
	}
	if m.JSONRPC != "2.0" {
		return job{}, errBadMessage
	}
	j := job{raw: raw, method: m.Method}
	hasID := len(m.ID) > 0 && !bytes.Equal(m.ID, []byte("null"))
	switch {
	case m.Method != "":
		if hasID {
			if m.ID[0] != '"' && (m.ID[0] < '0' || m.ID[0] > '9') && m.ID[0] != '-' {
				return job{}, errBadMessage // ids are strings or numbers
			}
			j.id, j.hasID = m.ID, true
		}
	case hasID && (m.Result != nil || m.Error != nil):
		// A response to a server request: passed on, nothing comes back.
	default:
		return job{}, errBadMessage
	}
	j.name = m.Params.Name
	if j.name == "" {
		j.name = m.Params.URI
	}
	if m.Method == "initialize" {
		j.version = m.Params.ProtocolVersion
	}
	return j, nil
}

// serveMessage accepts a client message (POST /mcp/message after the chain).
func (b *Bridge) serveMessage(w http.ResponseWriter, r *http.Request, c *mcpproxy.Call) {
	if r.Method != http.MethodPost {
		c.Outcome = "method_not_allowed"
		w.Header()["Allow"] = []string{"POST"}
		writeRPCError(w, http.StatusMethodNotAllowed, codeInvalidRequest, "Method not allowed: POST messages")
		return
	}
	id := r.URL.Query().Get("sessionId")
	if id == "" {
		c.Outcome = "no_session_id"
		writeRPCError(w, http.StatusBadRequest, codeInvalidRequest, "Missing sessionId")
		return
	}
	if !validSessionID(id) {
		c.Outcome = "unknown_session"
		b.metrics.rejected.WithLabelValues("unknown_session").Inc()
		writeRPCError(w, http.StatusNotFound, codeInvalidRequest, "Session not found")
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		c.Outcome = "bad_content_type"
		writeRPCError(w, http.StatusUnsupportedMediaType, codeInvalidRequest, "Content-Type must be application/json")
		return
	}
	body, err := mcpproxy.ReadBody(w, r, b.cfg.MaxMessageBytes, mcpproxy.DefaultBodyReadTimeout)
	if err != nil {
		if errors.Is(err, mcpproxy.ErrBodyTooLarge) {
			c.Outcome = "body_too_large"
			writeRPCError(w, http.StatusRequestEntityTooLarge, codeTooLarge, "Message too large")
			return
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.Outcome = "body_timeout"
			writeRPCError(w, http.StatusRequestTimeout, codeInvalidRequest, "Message not received in time")
			return
		}
		c.Outcome = "body_read_error"
		writeRPCError(w, http.StatusBadRequest, codeParseError, "Could not read the message")
		return
	}
	j, err := parseMessage(body)
	if err != nil {
		c.Outcome = "bad_message"
		b.metrics.rejected.WithLabelValues("bad_message").Inc()
		writeRPCError(w, http.StatusBadRequest, codeParseError, "Malformed JSON-RPC message")
		return
	}
	c.Method, c.Tool = trunc(j.method), trunc(j.name)
	j.reqID = c.RequestID
	bind := binding(c.Grant)

	if s := b.lookup(id); s != nil {
		if !sameBinding(s.binding, bind) {
			c.Outcome = "unknown_session" // another grant or user: as if it did not exist
			b.metrics.rejected.WithLabelValues("foreign_session").Inc()
			writeRPCError(w, http.StatusNotFound, codeInvalidRequest, "Session not found")
			return
		}
		if !s.enqueue(j) {
			if s.closed() || b.closing.Load() {
				c.Outcome = "unknown_session"
				writeRPCError(w, http.StatusNotFound, codeInvalidRequest, "Session not found")
				return
			}
			c.Outcome = "sse_queue_full"
			b.metrics.rejected.WithLabelValues("queue_full").Inc()
			w.Header()["Retry-After"] = []string{"1"}
			writeRPCError(w, http.StatusServiceUnavailable, codeUnavailable, "Too many messages in flight on this session, retry shortly")
			return
		}
		b.metrics.messages.WithLabelValues("local").Inc()
		accepted(w)
		return
	}

	// Another replica holds the stream, or nobody does.
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	v, err := b.cfg.Store.Get(ctx, store.Key("sse", id))
	if errors.Is(err, store.ErrNotFound) {
		c.Outcome = "unknown_session"
		b.metrics.rejected.WithLabelValues("unknown_session").Inc()
		writeRPCError(w, http.StatusNotFound, codeInvalidRequest, "Session not found")
		return
	}
	if err != nil {
		c.Outcome = "store_unavailable"
		b.metrics.rejected.WithLabelValues("store_unavailable").Inc()
		w.Header()["Retry-After"] = []string{"1"}
		writeRPCError(w, http.StatusServiceUnavailable, codeUnavailable, "Service temporarily unavailable, retry shortly")
		return
	}
	var rec holderRecord
	if json.Unmarshal(v, &rec) != nil || rec.Replica == "" || rec.Replica == b.cfg.ReplicaID || !sameBinding(rec.Binding, bind) {
		// Unreadable, a stale key of ours, or someone else's stream.
		c.Outcome = "unknown_session"
		b.metrics.rejected.WithLabelValues("unknown_session").Inc()
		writeRPCError(w, http.StatusNotFound, codeInvalidRequest, "Session not found")
		return
	}
	n, err := b.cfg.Store.Publish(ctx, store.Key("sse", "replica", rec.Replica), encodeEnvelope(id, bind, j.reqID, j.raw))
	if err != nil {
		c.Outcome = "store_unavailable"
		b.metrics.rejected.WithLabelValues("store_unavailable").Inc()
		w.Header()["Retry-After"] = []string{"1"}
		writeRPCError(w, http.StatusServiceUnavailable, codeUnavailable, "Service temporarily unavailable, retry shortly")
		return
	}
	if n == 0 {
		// The holder is gone (its subscription with it): the stream no longer exists.
		c.Outcome = "holder_gone"
		b.metrics.rejected.WithLabelValues("holder_gone").Inc()
		writeRPCError(w, http.StatusNotFound, codeInvalidRequest, "Session not found")
		return
	}
	c.Outcome = "sse_forwarded"
	b.metrics.messages.WithLabelValues("forwarded").Inc()
	accepted(w)
}

func accepted(w http.ResponseWriter) {
	h := w.Header()
	h["Content-Length"] = []string{"0"}
	w.WriteHeader(http.StatusAccepted)
}

// receive handles a message another replica published for a stream of this one.
func (b *Bridge) receive(payload []byte) {
	id, bind, reqID, raw, ok := decodeEnvelope(payload)
	if !ok {
		b.metrics.rejected.WithLabelValues("bad_envelope").Inc()
		return
	}
	s := b.lookup(id)
	if s == nil || !sameBinding(s.binding, bind) {
		// Closed meanwhile, or (never expected) a binding mismatch: drop.
		b.metrics.rejected.WithLabelValues("remote_unknown_session").Inc()
		return
	}
	j, err := parseMessage(raw)
	if err != nil {
		b.metrics.rejected.WithLabelValues("bad_envelope").Inc()
		return
	}
	j.reqID = reqID
	if !s.enqueue(j) {
		// The POST was already answered 202 by another replica: tell the client here.
		if j.hasID {
			msg := "Too many messages in flight on this session, retry shortly"
			if b.closing.Load() {
				msg = "Server shutting down, reconnect"
			}
			s.send(rpcErrorEvent(j.id, codeUnavailable, msg))
		}
		b.metrics.rejected.WithLabelValues("queue_full").Inc()
		return
	}
	b.metrics.messages.WithLabelValues("received").Inc()
}

// Envelope between replicas: "sse1\n" session "\n" binding "\n" request id "\n" message.
const envelopeMagic = "sse1\n"

func encodeEnvelope(id, bind, reqID string, raw []byte) []byte {
	out := make([]byte, 0, len(envelopeMagic)+len(id)+len(bind)+len(reqID)+3+len(raw))
	out = append(out, envelopeMagic...)
	out = append(out, id...)
	out = append(out, '\n')
	out = append(out, bind...)
	out = append(out, '\n')
	out = append(out, reqID...)
	out = append(out, '\n')
	return append(out, raw...)
}

func decodeEnvelope(p []byte) (id, bind, reqID string, raw []byte, ok bool) {
	rest, found := bytes.CutPrefix(p, []byte(envelopeMagic))
	if !found {
		return "", "", "", nil, false
	}
	idb, rest, found := bytes.Cut(rest, []byte{'\n'})
	if !found || !validSessionID(string(idb)) {
		return "", "", "", nil, false
	}
	bb, rest, found := bytes.Cut(rest, []byte{'\n'})
	if !found || len(bb) != 64 {
		return "", "", "", nil, false
	}
	rb, rest, found := bytes.Cut(rest, []byte{'\n'})
	if !found || len(rb) > 64 {
		return "", "", "", nil, false
	}
	return string(idb), string(bb), string(rb), rest, true
}

const maxLogName = 128

func trunc(s string) string {
	if len(s) > maxLogName {
		return s[:maxLogName]
	}
	return s
}

// JSON-RPC error codes (as mcpproxy's own answers).
const (
	codeParseError     = -32700
	codeInvalidRequest = -32600
	codeUnavailable    = -32002
	codeBadGateway     = -32004
	codeTimeout        = -32005
	codeTooLarge       = -32006
)

// writeRPCError writes a JSON-RPC error response with id null as the HTTP answer. message is
// a constant needing no JSON escaping.
func writeRPCError(w http.ResponseWriter, status, code int, message string) {
	b := rpcError(nil, code, message)
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Cache-Control"] = []string{"no-store"}
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// rpcError builds a JSON-RPC error response for id (null when nil).
func rpcError(id json.RawMessage, code int, message string) []byte {
	b := make([]byte, 0, 96+len(message)+len(id))
	b = append(b, `{"jsonrpc":"2.0","id":`...)
	if id == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, id...)
	}
	b = append(b, `,"error":{"code":`...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, `,"message":"`...)
	b = append(b, message...)
	return append(b, "\"}}\n"...)
}

// rpcErrorEvent is rpcError as an SSE message event.
func rpcErrorEvent(id json.RawMessage, code int, message string) []byte {
	return messageEvent(bytes.TrimSpace(rpcError(id, code, message)))
}

// messageEvent frames data as "event: message"; each line of data becomes a data: line.
func messageEvent(data []byte) []byte {
	out := make([]byte, 0, len(data)+32)
	out = append(out, "event: message\n"...)
	for len(data) > 0 {
		i := bytes.IndexAny(data, "\r\n")
		line := data
		if i >= 0 {
			line = data[:i]
		}
		out = append(out, "data: "...)
		out = append(out, line...)
		out = append(out, '\n')
		if i < 0 {
			break
		}
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	return append(out, '\n')
}
