package ssebridge

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strings"
)

// Errors of a backend call.
var (
	errUnauthorized  = errors.New("backend refused the function key")
	errNoKey         = errors.New("no function key loaded")
	errTooBig        = errors.New("backend answer too large")
	errNoResponse    = errors.New("backend stream ended without a response")
	errBackendStatus = errors.New("backend error status")
)

// call sends one client message to the backend and writes everything it answers onto the
// stream. For a request it makes sure the client gets an answer: the backend's, or a JSON-RPC
// error that says nothing about the backend.
func (b *Bridge) call(s *stream, j job) {
	if s.closed() {
		return
	}
	answered, err := b.roundTrip(s, j)
	if err == nil || s.closed() || s.ctx.Err() != nil {
		return
	}
	kind, code, msg := classify(err)
	b.metrics.backendErrors.WithLabelValues(kind).Inc()
	if kind == "unreachable" || kind == "status" {
		b.log.LogAttrs(s.ctx, slog.LevelWarn, "sse bridge: backend request failed",
			slog.String("request_id", j.reqID), slog.String("sse_session", hashLabel(s.id)),
			slog.String("mcp_method", trunc(j.method)), slog.String("err", err.Error()))
	}
	if j.hasID && !answered {
		s.send(rpcErrorEvent(j.id, code, msg))
	}
}

// classify maps a backend failure to a metric label and the client's JSON-RPC error.
func classify(err error) (kind string, code int, msg string) {
	var ne net.Error
	switch {
	case errors.Is(err, errNoKey):
		return "no_key", codeUnavailable, "Service not ready, retry shortly"
	case errors.Is(err, errUnauthorized):
		return "unauthorized", codeBadGateway, "Bad gateway: the MCP backend refused the gateway"
	case errors.Is(err, errTooBig):
		return "too_large", codeTooLarge, "The MCP backend's answer is too large"
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return "timeout", codeTimeout, "Gateway timeout: the MCP backend did not answer in time"
	case errors.Is(err, errBackendStatus):
		return "status", codeBadGateway, "Bad gateway: the MCP backend failed"
	case errors.Is(err, errNoResponse):
		return "no_response", codeBadGateway, "Bad gateway: the MCP backend ended the response early"
	default:
		return "unreachable", codeBadGateway, "Bad gateway: the MCP backend is unavailable"
	}
}

// roundTrip posts j to the backend (one retry with a refreshed key on 401) and relays the
// answer. answered reports whether a response to j reached the stream.
func (b *Bridge) roundTrip(s *stream, j job) (answered bool, err error) {
	ctx := s.ctx
	if j.method == "initialize" && j.version != "" {
		// Until the backend answers, requests carry the version the client asked for.
		s.version.Store(j.version)
	}
	key, err := b.cfg.Keys.Current(ctx)
	if err != nil {
		return false, errNoKey
	}
	resp, err := b.post(ctx, s, j, key)
	if err != nil {
		return false, err
	}
	if resp.StatusCode == http.StatusUnauthorized {
		drain(resp.Body)
		rerr := b.cfg.Keys.Refresh(ctx)
		nkey, kerr := b.cfg.Keys.Current(ctx)
		if kerr != nil || nkey == key {
			result := "same_key"
			if rerr != nil || kerr != nil {
				result = "error"
			}
			b.metrics.keyRetries.WithLabelValues(result).Inc()
			return false, errUnauthorized
		}
		b.metrics.keyRetries.WithLabelValues("retried").Inc()
		if resp, err = b.post(ctx, s, j, nkey); err != nil {
			return false, err
		}
		if resp.StatusCode == http.StatusUnauthorized {
			drain(resp.Body)
			return false, errUnauthorized
		}
	}
	defer resp.Body.Close()
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch {
	case resp.StatusCode == http.StatusAccepted || resp.StatusCode == http.StatusNoContent:
		drain(resp.Body)
		if j.hasID {
			return false, errNoResponse
		}
		return false, nil
	case resp.StatusCode == http.StatusOK && mt == "text/event-stream":
		return b.relayStream(s, j, resp.Body)
	case mt == "application/json":
		// A JSON answer, also on 4xx: the backend's JSON-RPC errors (unsupported protocol
		// version, unknown method, header mismatch) are MCP's, not the backend's secrets.
		data, err := readLimited(resp.Body, b.cfg.MaxResponseBytes)
		if err != nil {
			return false, err
		}
		if resp.StatusCode >= 500 || !isRPCMessage(data) {
			return false, errBackendStatus
		}
		return b.deliver(s, j, data), nil
	default:
		drain(resp.Body)
		if !j.hasID && resp.StatusCode < 300 {
			return false, nil
		}
		return false, errBackendStatus
	}
}

// post sends j's message to the backend with key.
func (b *Bridge) post(ctx context.Context, s *stream, j job, key string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.backend, bytes.NewReader(j.raw))
	if err != nil {
		return nil, err
	}
	h := req.Header
	b.cfg.Chain.BackendHeaders(h, s.grant, key)
	h["Content-Type"] = []string{"application/json"}
	h["Accept"] = []string{"application/json, text/event-stream"}
	if j.reqID != "" {
		h["X-Request-Id"] = []string{j.reqID}
	}
	// initialize carries the version it asks for in its body (the server may answer with
	// another); every later message carries the negotiated one.
	v, _ := s.version.Load().(string)
	if j.method != "initialize" && v != "" && isToken(v) {
		h["Mcp-Protocol-Version"] = []string{v}
		if v >= "2026-07-28" && j.method != "" && isToken(j.method) {
			// The 2026-07-28 revision requires the method (and name) as headers.
			h["Mcp-Method"] = []string{j.method}
			if j.name != "" && isToken(j.name) && (j.method == "tools/call" || j.method == "prompts/get" || j.method == "resources/read") {
				h["Mcp-Name"] = []string{j.name}
			}
		}
	}
	return b.client.Do(req)
}

// deliver writes one message from the backend onto the stream. It reports whether it is the
// response to j. An initialize result sets the stream's protocol version first, so the
// client's next request (sent once it reads this answer) carries it.
func (b *Bridge) deliver(s *stream, j job, data []byte) bool {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return false // a blank event carries no message: nothing to write
	}
	isResp := false
	if j.hasID {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Result *struct {
				ProtocolVersion string `json:"protocolVersion"`
			} `json:"result"`
			Error json.RawMessage `json:"error"`
		}
		if json.Unmarshal(data, &m) == nil && (m.Result != nil || m.Error != nil) && bytes.Equal(m.ID, j.id) {
			isResp = true
			if j.method == "initialize" && m.Result != nil && m.Result.ProtocolVersion != "" {
				s.version.Store(m.Result.ProtocolVersion)
			}
		}
	}
	s.send(messageEvent(data))
	return isResp
}

// relayStream relays each event of a streamed backend response (notifications such as
// progress, then the response) in order.
func (b *Bridge) relayStream(s *stream, j job, body io.Reader) (bool, error) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 4096), int(min(b.cfg.MaxResponseBytes, 1<<30)))
	answered := false
	var data bytes.Buffer
	var event string
	dispatch := func() {
		if data.Len() > 0 && (event == "" || event == "message") {
			if b.deliver(s, j, data.Bytes()) {
				answered = true
			}
		}
		data.Reset()
		event = ""
	}
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			dispatch()
			if answered {
				break // the response is the last message of a request's stream
			}
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte{':'})
		value = bytes.TrimPrefix(value, []byte{' '})
		switch string(field) {
		case "data":
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			if int64(data.Len()+len(value)) > b.cfg.MaxResponseBytes {
				return answered, errTooBig
			}
			data.Write(value)
		case "event":
			event = string(value)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return answered, errTooBig
		}
		return answered, err
	}
	dispatch()
	if j.hasID && !answered {
		return false, errNoResponse
	}
	return answered, nil
}

// isRPCMessage reports whether data is a JSON object with "jsonrpc":"2.0".
func isRPCMessage(data []byte) bool {
	var m struct {
		JSONRPC string `json:"jsonrpc"`
	}
	return json.Unmarshal(data, &m) == nil && m.JSONRPC == "2.0"
}

func readLimited(r io.Reader, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, errTooBig
	}
	return buf.Bytes(), nil
}

func drain(rc io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(rc, 64<<10))
	_ = rc.Close()
}

// isToken reports whether s is safe as a header value we derive from client input: printable
// ASCII without spaces.
func isToken(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return !strings.ContainsAny(s, ",;")
}
