package telemetry

import (
	"context"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// jsonHandler is a slog.Handler whose output is byte for byte that of slog.JSONHandler (with
// no HandlerOptions other than Level), written faster for the records the gateway writes on
// every request: attributes of kind string, integer, float, bool, duration and time, outside
// any group. Anything else — a group, a LogValuer, an arbitrary value — goes through the
// slog.JSONHandler it wraps. The access log line costs about a third of slog.JSONHandler's
// time this way (BenchmarkAccessLogLine); FuzzJSONHandlerMatchesSlog holds the two outputs
// equal.
type jsonHandler struct {
	std   slog.Handler // slog.JSONHandler over w, with the same attributes
	w     io.Writer
	level slog.Leveler
	// pre holds the attributes added by WithAttrs, encoded, each preceded by a comma.
	pre []byte
	// fast is false once a WithAttrs attribute needed the standard handler, or after
	// WithGroup: every record then goes through std.
	fast bool
	mu   *sync.Mutex // serialises writes to w, shared by derived handlers
}

// newJSONHandler returns a JSON handler writing one line per record to w at level.
func newJSONHandler(w io.Writer, level slog.Leveler) slog.Handler {
	if level == nil {
		level = slog.LevelInfo
	}
	return &jsonHandler{
		std: slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}),
		w:   w, level: level, fast: true, mu: &sync.Mutex{},
	}
}

func (h *jsonHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

func (h *jsonHandler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	h2 := *h
	h2.std = h.std.WithAttrs(as)
	if h.fast {
		pre := append([]byte(nil), h.pre...)
		for _, a := range as {
			var ok bool
			if pre, ok = appendAttr(pre, a); !ok {
				h2.fast, pre = false, nil
				break
			}
		}
		h2.pre = pre
	}
	return &h2
}

func (h *jsonHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.std, h2.fast, h2.pre = h.std.WithGroup(name), false, nil
	return &h2
}

var jsonBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func (h *jsonHandler) Handle(ctx context.Context, r slog.Record) error {
	if !h.fast {
		return h.std.Handle(ctx, r)
	}
	bp := jsonBufPool.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 16<<10 {
			jsonBufPool.Put(bp)
		}
	}()
	b := (*bp)[:0]
	b = append(b, '{')
	if !r.Time.IsZero() {
		t := r.Time.Round(0) // strip the monotonic reading, as slog does
		if y := t.Year(); y < 0 || y >= 10000 {
			return h.std.Handle(ctx, r) // slog writes an error value here
		}
		b = append(b, `"time":"`...)
		b = t.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `",`...)
	}
	b = append(b, `"level":`...)
	b = appendJSONString(b, r.Level.String())
	b = append(b, `,"msg":`...)
	b = appendJSONString(b, r.Message)
	b = append(b, h.pre...)
	ok := true
	r.Attrs(func(a slog.Attr) bool {
		b, ok = appendAttr(b, a)
		return ok
	})
	if !ok {
		return h.std.Handle(ctx, r)
	}
	b = append(b, '}', '\n')
	*bp = b
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.w.Write(b)
	return err
}

// appendAttr appends `,"key":value` for a simple attribute; ok is false (and b, partly
// written, unusable) for anything the standard handler must format. (slog drops only the zero Attr, whose kind
// is KindAny: never one of these.)
func appendAttr(b []byte, a slog.Attr) ([]byte, bool) {
	v := a.Value
	b = append(b, ',')
	b = appendJSONString(b, a.Key)
	b = append(b, ':')
	switch v.Kind() {
	case slog.KindString:
		b = appendJSONString(b, v.String())
	case slog.KindInt64:
		b = strconv.AppendInt(b, v.Int64(), 10)
	case slog.KindUint64:
		b = strconv.AppendUint(b, v.Uint64(), 10)
	case slog.KindFloat64:
		f := v.Float64()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return b, false // slog writes an error value for these
		}
		b = appendJSONFloat(b, f)
	case slog.KindBool:
		b = strconv.AppendBool(b, v.Bool())
	case slog.KindDuration:
		b = strconv.AppendInt(b, int64(v.Duration()), 10)
	case slog.KindTime:
		t := v.Time()
		if y := t.Year(); y < 0 || y >= 10000 {
			return b, false
		}
		b = append(b, '"')
		b = t.AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	default:
		return b, false
	}
	return b, true
}

// appendJSONFloat formats f as encoding/json does (which slog.JSONHandler calls for floats).
func appendJSONFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// appendJSONString appends s as a JSON string the way slog.JSONHandler does: encoding/json's
// escaping without HTML escaping (so <, > and & stay as they are), invalid UTF-8 as \ufffd,
// and U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
