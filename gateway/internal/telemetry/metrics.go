package telemetry

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a Prometheus registry with the Go runtime and process collectors.
func NewRegistry() *Registry {
	reg := &Registry{Registry: prometheus.NewRegistry()}
	reg.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// MetricsHandler serves reg at /metrics (mount it on the private metrics listener only).
func MetricsHandler(reg *Registry) http.Handler {
	return promhttp.HandlerFor(reg.Registry, promhttp.HandlerOpts{Registry: reg.Registry})
}

// HTTPMetrics counts requests and observes their latency per endpoint, method and status.
type HTTPMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// handles caches the two series of each label combination (few: endpoints are fixed,
	// methods normalised, statuses 100–599), saving the vectors' label hashing per request.
	handles sync.Map // seriesKey → *series
}

type seriesKey struct {
	endpoint, method string
	status           int
}

type series struct {
	count   prometheus.Counter
	latency prometheus.Observer
}

// NewHTTPMetrics registers mcpgate_http_requests_total and mcpgate_http_request_duration_seconds
// with reg (nil: not registered, still usable).
func NewHTTPMetrics(reg prometheus.Registerer) *HTTPMetrics {
	m := &HTTPMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpgate_http_requests_total",
			Help: "HTTP requests by endpoint, method and status.",
		}, []string{"endpoint", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mcpgate_http_request_duration_seconds",
			Help:    "HTTP request latency (until the handler returns; for streams, the stream's life) by endpoint and status.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 120},
		}, []string{"endpoint", "status"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.latency)
	}
	return m
}

// Observe records one finished request.
func (m *HTTPMetrics) Observe(endpoint, method string, status int, d time.Duration) {
	if status < 100 || status >= len(statusLabels) {
		status = 0 // "other"
	}
	k := seriesKey{endpoint: endpoint, method: normMethod(method), status: status}
	v, ok := m.handles.Load(k)
	if !ok {
		s := statusLabel(status)
		v, _ = m.handles.LoadOrStore(k, &series{
			count:   m.requests.WithLabelValues(k.endpoint, k.method, s),
			latency: m.latency.WithLabelValues(k.endpoint, s),
		})
	}
	sr := v.(*series)
	sr.count.Inc()
	sr.latency.Observe(d.Seconds())
}

// Middleware wraps next, recording its requests under endpoint.
func (m *HTTPMetrics) Middleware(endpoint string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := NewStatusWriter(w)
		next.ServeHTTP(sw, r)
		m.Observe(endpoint, r.Method, sw.Status(), time.Since(start))
	})
}

// normMethod keeps label cardinality bounded.
func normMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodDelete, http.MethodOptions, http.MethodHead, http.MethodPut, http.MethodPatch:
		return m
	}
	return "other"
}

var statusLabels = func() [600]string {
	var s [600]string
	for i := range s {
		s[i] = strconv.Itoa(i)
	}
	return s
}()

func statusLabel(code int) string {
	if code >= 100 && code < len(statusLabels) {
		return statusLabels[code]
	}
	return "other"
}

// StatusWriter records the status and byte count written through it. It keeps Flush and
// Unwrap working so http.ResponseController and streaming still reach the real writer.
type StatusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

// NewStatusWriter wraps w.
func NewStatusWriter(w http.ResponseWriter) *StatusWriter { return &StatusWriter{ResponseWriter: w} }

// WriteHeader records code and passes it on.
func (s *StatusWriter) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

// Write passes b on, recording an implicit 200.
func (s *StatusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

// Flush flushes the underlying writer when it can.
func (s *StatusWriter) Flush() {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	_ = http.NewResponseController(s.ResponseWriter).Flush()
}

// Unwrap returns the underlying writer (for http.ResponseController).
func (s *StatusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Status is the status sent (200 if the handler wrote nothing).
func (s *StatusWriter) Status() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}

// Bytes is the number of body bytes written.
func (s *StatusWriter) Bytes() int64 { return s.bytes }
