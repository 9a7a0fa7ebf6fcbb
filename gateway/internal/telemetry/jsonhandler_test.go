package telemetry

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"
)

// both logs the same record through slog.JSONHandler and jsonHandler and returns both outputs.
func both(t testing.TB, with []slog.Attr, group string, r slog.Record) (want, got string) {
	t.Helper()
	var sb, fb bytes.Buffer
	var sh slog.Handler = slog.NewJSONHandler(&sb, &slog.HandlerOptions{Level: slog.LevelDebug})
	fh := newJSONHandler(&fb, slog.LevelDebug)
	if len(with) > 0 {
		sh, fh = sh.WithAttrs(with), fh.WithAttrs(with)
	}
	if group != "" {
		sh, fh = sh.WithGroup(group), fh.WithGroup(group)
	}
	if err := sh.Handle(context.Background(), r.Clone()); err != nil {
		t.Fatalf("slog.JSONHandler: %v", err)
	}
	if err := fh.Handle(context.Background(), r.Clone()); err != nil {
		t.Fatalf("jsonHandler: %v", err)
	}
	return sb.String(), fb.String()
}

func TestJSONHandlerMatchesSlog(t *testing.T) {
	at := time.Date(2026, 11, 27, 7, 7, 31, 45600332, time.UTC)
	tests := []struct {
		name  string
		with  []slog.Attr
		group string
		msg   string
		level slog.Level
		time  time.Time
		attrs []slog.Attr
	}{
		{name: "access log line", msg: "mcp request", time: at, attrs: []slog.Attr{
			slog.String("request_id", "65ae05e53393282e"), slog.String("endpoint", "/mcp"), slog.Int("status", 200),
			slog.Float64("latency_ms", 0.165), slog.String("mcp_name", "hello_mcp")}},
		{name: "escapes", msg: "a \"quoted\"\n\tline\\ <b>&</b> \x00\x1f\x7f \u2028\u2029 é 日本 \xff\xfe", time: at,
			attrs: []slog.Attr{slog.String("k\"ey\n", "v\r\x01"), slog.String("", "empty key")}},
		{name: "kinds", msg: "m", level: slog.LevelWarn, time: at.In(time.FixedZone("X", -3*3600)), attrs: []slog.Attr{
			slog.Int64("i", math.MinInt64), slog.Uint64("u", math.MaxUint64), slog.Bool("b", true),
			slog.Duration("d", -1500*time.Millisecond), slog.Time("t", at), slog.Float64("zero", 0),
			slog.Float64("neg", math.Copysign(0, -1)), slog.Float64("negsmall", -2.5), slog.Float64("tiny", 1.5e-9), slog.Float64("huge", 3e21), slog.Float64("big", 1e20),
			slog.Float64("third", 1.0/3)}},
		{name: "levels", msg: "m", level: slog.LevelError + 2, time: at},
		{name: "no time", msg: "m"},
		{name: "with attrs", with: []slog.Attr{slog.String("component", "x"), slog.Int("n", 3)}, msg: "m", time: at,
			attrs: []slog.Attr{slog.String("k", "v")}},
		{name: "fallback: group", msg: "m", time: at, attrs: []slog.Attr{slog.Group("g", slog.Int("a", 1))}},
		{name: "fallback: any", msg: "m", time: at, attrs: []slog.Attr{slog.Any("err", errors.New("boom")), slog.Any("m", map[string]int{"a": 1})}},
		{name: "fallback: NaN", msg: "m", time: at, attrs: []slog.Attr{slog.Float64("nan", math.NaN()), slog.Float64("inf", math.Inf(-1))}},
		{name: "fallback: year", msg: "m", time: time.Date(10001, 1, 1, 0, 0, 0, 0, time.UTC)},
		{name: "fallback: with any", with: []slog.Attr{slog.Any("x", []int{1})}, msg: "m", time: at, attrs: []slog.Attr{slog.String("k", "v")}},
		{name: "fallback: group handler", group: "g", with: []slog.Attr{slog.String("a", "b")}, msg: "m", time: at, attrs: []slog.Attr{slog.String("k", "v")}},
		{name: "zero attr dropped", msg: "m", time: at, attrs: []slog.Attr{{}, slog.String("k", "v")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := slog.NewRecord(tt.time, tt.level, tt.msg, 0)
			r.AddAttrs(tt.attrs...)
			want, got := both(t, tt.with, tt.group, r)
			if got != want {
				t.Fatalf("output differs from slog.JSONHandler\n got: %s\nwant: %s", got, want)
			}
		})
	}
}

func TestJSONHandlerLevel(t *testing.T) {
	var b bytes.Buffer
	lv := new(slog.LevelVar)
	lv.Set(slog.LevelWarn)
	l := slog.New(newJSONHandler(&b, lv))
	l.Info("hidden")
	l.Warn("shown")
	if s := b.String(); strings.Contains(s, "hidden") || !strings.Contains(s, `"msg":"shown"`) {
		t.Fatalf("output %q", s)
	}
}

// FuzzJSONHandlerMatchesSlog: for any message, keys and values, the fast handler writes
// exactly what slog.JSONHandler writes.
func FuzzJSONHandlerMatchesSlog(f *testing.F) {
	f.Add("mcp request", "request_id", "65ae05e5", int64(200), 0.165, uint64(7), true, int64(1e9))
	f.Add("a\x00\"\\\u2028\xff", "k\n", "<&>", int64(-1), 1e-7, uint64(0), false, int64(-5))
	f.Add("", "", "", int64(0), 1e21, uint64(math.MaxUint64), true, int64(math.MinInt64))
	f.Fuzz(func(t *testing.T, msg, key, sval string, ival int64, fval float64, uval uint64, bval bool, nanos int64) {
		at := time.Unix(0, nanos).UTC()
		r := slog.NewRecord(at, slog.Level(ival%13), msg, 0)
		r.AddAttrs(slog.String(key, sval), slog.Int64(sval, ival), slog.Float64(key+"f", fval),
			slog.Uint64("u", uval), slog.Bool("b", bval), slog.Duration(key, time.Duration(ival)), slog.Time("t", at))
		for _, with := range [][]slog.Attr{nil, {slog.String(sval, key)}} {
			want, got := both(t, with, "", r)
			if got != want {
				t.Fatalf("output differs from slog.JSONHandler\n got: %q\nwant: %q", got, want)
			}
		}
	})
}

// BenchmarkAccessLogLine compares one access-log line through slog.JSONHandler and through
// the fast handler (records built without runtime.Callers, as Proxy.finish does).
func BenchmarkAccessLogLine(b *testing.B) {
	attrs := []slog.Attr{
		slog.String("request_id", "65ae05e53393282e"), slog.String("endpoint", "/mcp"), slog.String("http_method", "POST"),
		slog.Int("status", 200), slog.Float64("latency_ms", 0.165), slog.String("client_id", "mcpgate-bench"),
		slog.String("grant", "68552db7253f"), slog.String("user_oid", "bench-user"), slog.String("mcp_method", "tools/call"),
		slog.String("mcp_name", "hello_mcp"), slog.String("replica", "vm-6ae31a"),
	}
	for _, h := range []struct {
		name string
		h    slog.Handler
	}{
		{"slog", slog.NewJSONHandler(discard{}, nil)},
		{"fast", newJSONHandler(discard{}, nil)},
	} {
		b.Run(h.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r := slog.NewRecord(time.Now(), slog.LevelInfo, "mcp request", 0)
				r.AddAttrs(attrs...)
				_ = h.h.Handle(context.Background(), r)
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
