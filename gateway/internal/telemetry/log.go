// Package telemetry sets up the gateway's observability: slog JSON logs with a request id,
// a Prometheus registry with HTTP request metrics, and OpenTelemetry traces and metrics over
// OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set. Nothing here ever records a header value other
// than the request id: tokens, keys and cookies stay out of logs and metrics.
package telemetry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"time"
)

// NewLogger returns a JSON slog logger writing to w at level (slog.JSONHandler's format).
func NewLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(newJSONHandler(w, level))
}

// NewBufferedLogger returns a JSON slog logger over a BufferedWriter on w: info and debug
// lines (the access log, one per request) are written at most interval later, in batches,
// saving a write system call per request; a warning or an error is written at once, with
// everything buffered before it. With interval 0 every line is written at once. Call close
// on exit: it writes out what is buffered.
func NewBufferedLogger(w io.Writer, level slog.Leveler, interval time.Duration) (logger *slog.Logger, close func() error) {
	if interval <= 0 {
		return NewLogger(w, level), func() error { return nil }
	}
	bw := NewBufferedWriter(w, interval)
	h := flushOnWarn{Handler: newJSONHandler(bw, level), bw: bw}
	return slog.New(h), bw.Close
}

// flushOnWarn writes the buffer out after every record at warning level or above.
type flushOnWarn struct {
	slog.Handler
	bw *BufferedWriter
}

func (h flushOnWarn) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		if ferr := h.bw.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

func (h flushOnWarn) WithAttrs(attrs []slog.Attr) slog.Handler {
	return flushOnWarn{Handler: h.Handler.WithAttrs(attrs), bw: h.bw}
}

func (h flushOnWarn) WithGroup(name string) slog.Handler {
	return flushOnWarn{Handler: h.Handler.WithGroup(name), bw: h.bw}
}

// RequestIDHeader carries the request id in responses (and is accepted from a trusted front end
// when it is well formed).
const RequestIDHeader = "X-Request-Id"

type requestIDKey struct{}

// NewRequestID returns 16 random hex digits.
func NewRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// WithRequestID returns ctx carrying id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestIDFrom returns the request id in ctx, or "".
func RequestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// ValidRequestID accepts 8–64 characters of [A-Za-z0-9._-] (what front ends such as Azure
// Container Apps or nginx generate); anything else is replaced by our own id.
func ValidRequestID(s string) bool {
	if len(s) < 8 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// RequestID is middleware that gives every request an id (the incoming X-Request-Id when it
// is well formed, else a new one), stores it in the context and echoes it in the response.
func RequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := RequestIDFor(r)
		w.Header().Set(RequestIDHeader, id)
		next.ServeHTTP(w, r.WithContext(WithRequestID(r.Context(), id)))
	})
}

// RequestIDFor returns the request's id: the one RequestID stored in its context, else a
// well-formed incoming X-Request-Id, else a new one.
func RequestIDFor(r *http.Request) string {
	if id := RequestIDFrom(r.Context()); id != "" {
		return id
	}
	if id := r.Header.Get(RequestIDHeader); ValidRequestID(id) {
		return id
	}
	return NewRequestID()
}
