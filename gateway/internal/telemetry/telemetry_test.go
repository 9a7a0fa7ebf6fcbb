package telemetry

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRequestID(t *testing.T) {
	var seen string
	h := RequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = RequestIDFrom(r.Context()) }))
	for _, tc := range []struct{ in, want string }{
		{"abcdefgh-1234", "abcdefgh-1234"},
		{"short", ""},
		{"bad id with spaces", ""},
		{"", ""},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		if tc.in != "" {
			req.Header.Set(RequestIDHeader, tc.in)
		}
		h.ServeHTTP(rec, req)
		got := rec.Header().Get(RequestIDHeader)
		if got != seen || got == "" {
			t.Fatalf("in %q: header %q, context %q", tc.in, got, seen)
		}
		if tc.want != "" && got != tc.want {
			t.Fatalf("in %q: got %q", tc.in, got)
		}
		if tc.want == "" && (got == tc.in || len(got) != 16) {
			t.Fatalf("in %q: kept or malformed id %q", tc.in, got)
		}
	}
}

func TestLoggerIsJSON(t *testing.T) {
	var buf bytes.Buffer
	NewLogger(&buf, slog.LevelInfo).Info("hello", "request_id", "x")
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil || m["msg"] != "hello" {
		t.Fatalf("log line %q: %v", buf.String(), err)
	}
}

func TestHTTPMetricsAndStatusWriter(t *testing.T) {
	reg := NewRegistry()
	m := NewHTTPMetrics(reg)
	h := m.Middleware("/mcp", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := http.NewResponseController(w).SetWriteDeadline(time.Time{}); err != nil {
			t.Errorf("ResponseController through StatusWriter: %v", err)
		}
		w.WriteHeader(http.StatusAccepted)
		w.(http.Flusher).Flush()
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Post(srv.URL, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	srv.Close() // waits for the handler (and so the observation) to finish
	if got := testutil.ToFloat64(m.requests.WithLabelValues("/mcp", "POST", "202")); got != 1 {
		t.Fatalf("requests{202} = %v", got)
	}
	rec := httptest.NewRecorder()
	MetricsHandler(reg).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `mcpgate_http_request_duration_seconds_count{endpoint="/mcp",status="202"} 1`) {
		t.Fatalf("metrics output lacks the histogram:\n%s", rec.Body.String())
	}
	if normMethod("BREW") != "other" || statusLabel(42) != "other" {
		t.Fatal("label normalisation")
	}
}

func TestOTelDisabledIsIdentity(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "")
	o, err := SetupOTel(t.Context(), "mcpgate", "test")
	if err != nil || o.Enabled() {
		t.Fatalf("SetupOTel = %v, enabled %v", err, o.Enabled())
	}
	h := http.NotFoundHandler()
	if o.Transport(http.DefaultTransport) != http.DefaultTransport {
		t.Fatal("disabled Transport wrapped")
	}
	_ = o.Handler(h, "x")
}

func TestOTelExportsTraces(t *testing.T) {
	var traces, traceparent atomic.Int32
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/traces" {
			traces.Add(1)
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer collector.Close()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Traceparent") != "" {
			traceparent.Add(1)
		}
	}))
	defer backend.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	o, err := SetupOTel(t.Context(), "mcpgate", "test")
	if err != nil || !o.Enabled() {
		t.Fatalf("SetupOTel = %v", err)
	}
	client := &http.Client{Transport: o.Transport(http.DefaultTransport)}
	front := httptest.NewServer(o.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, backend.URL, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
	}), "mcp"))
	defer front.Close()
	resp, err := http.Get(front.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := o.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if traceparent.Load() != 1 || traces.Load() == 0 {
		t.Fatalf("traceparent forwarded %d times, trace exports %d", traceparent.Load(), traces.Load())
	}
}

func TestBufferedWriter(t *testing.T) {
	var mu sync.Mutex
	var out bytes.Buffer
	w := NewBufferedWriter(writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) }), time.Hour)
	log := NewLogger(w, slog.LevelInfo)
	log.Info("one")
	mu.Lock()
	if out.Len() != 0 {
		t.Fatal("written before a flush")
	}
	mu.Unlock()
	for range 1000 { // more than 32 KiB: flushed on the way
		log.Info("line", "pad", strings.Repeat("x", 40))
	}
	mu.Lock()
	if out.Len() == 0 {
		t.Fatal("nothing flushed after 32 KiB")
	}
	mu.Unlock()
	log.Info("last")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.HasPrefix(s, `{"time"`) || !strings.Contains(s, `"msg":"last"`) || strings.Count(s, "\n") != 1002 {
		t.Fatalf("output: %d lines", strings.Count(s, "\n"))
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func FuzzValidRequestID(f *testing.F) {
	f.Add("abcdefgh-1234")
	f.Add("bad id\n")
	f.Fuzz(func(t *testing.T, id string) {
		if !ValidRequestID(id) {
			return
		}
		if len(id) < 8 || len(id) > 64 || strings.ContainsAny(id, " \r\n\t\"\\") {
			t.Fatalf("accepted %q", id)
		}
	})
}

// TestBufferedLogger: info lines wait for the interval; a warning is written at once, after
// the lines logged before it; derived loggers keep that; close writes out the rest.
func TestBufferedLogger(t *testing.T) {
	var mu sync.Mutex
	var out bytes.Buffer
	read := func() string { mu.Lock(); defer mu.Unlock(); return out.String() }
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) })
	log, closeLog := NewBufferedLogger(w, slog.LevelInfo, time.Hour)
	log.Info("access", "n", 1)
	if s := read(); s != "" {
		t.Fatalf("info line written before the interval: %q", s)
	}
	log.With("component", "x").WithGroup("g").Warn("trouble")
	s := read()
	if i, j := strings.Index(s, `"msg":"access"`), strings.Index(s, `"msg":"trouble"`); i < 0 || j < i {
		t.Fatalf("after a warning: %q, want the info line then the warning", s)
	}
	log.Info("after")
	if strings.Contains(read(), `"after"`) {
		t.Fatal("info line after the warning written at once")
	}
	if err := closeLog(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(read(), `"msg":"after"`) {
		t.Fatal("close did not write out the buffered line")
	}

	// interval 0: unbuffered
	out.Reset()
	log, closeLog = NewBufferedLogger(w, slog.LevelInfo, 0)
	log.Info("now")
	if !strings.Contains(read(), `"msg":"now"`) {
		t.Fatal("interval 0 buffered a line")
	}
	_ = closeLog()

	// the timer writes lines out without any warning
	out.Reset()
	log, closeLog = NewBufferedLogger(w, slog.LevelInfo, 20*time.Millisecond)
	defer closeLog()
	log.Info("later")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(read(), `"msg":"later"`) {
		if time.Now().After(deadline) {
			t.Fatal("buffered line never written by the interval flush")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHTTPMetricsObserveCached: repeated observations of one label combination land in the
// same series (through the handle cache), different ones in their own, odd values in "other".
func TestHTTPMetricsObserveCached(t *testing.T) {
	m := NewHTTPMetrics(nil)
	for range 3 {
		m.Observe("/mcp", "POST", 200, time.Millisecond)
	}
	m.Observe("/mcp", "GET", 200, time.Millisecond)
	m.Observe("/mcp", "BREW", 999, time.Millisecond)
	m.Observe("/mcp", "BREW", -5, time.Millisecond)
	for _, c := range []struct {
		method, status string
		want           float64
	}{{"POST", "200", 3}, {"GET", "200", 1}, {"other", "other", 2}} {
		if got := testutil.ToFloat64(m.requests.WithLabelValues("/mcp", c.method, c.status)); got != c.want {
			t.Errorf("requests{%s,%s} = %v, want %v", c.method, c.status, got, c.want)
		}
	}
	if got := testutil.CollectAndCount(m.latency); got != 2 {
		t.Errorf("latency series = %d, want 2 (200 and other)", got)
	}
}

func BenchmarkHTTPMetricsObserve(b *testing.B) {
	m := NewHTTPMetrics(nil)
	for b.Loop() {
		m.Observe("/mcp", "POST", 200, time.Millisecond)
	}
}
