package telemetry

import (
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegistryRecordsMetrics(t *testing.T) {
	reg := NewRegistry()
	reg.MustRegister(
		prometheus.NewCounterVec(prometheus.CounterOpts{Name: "b_total", Help: `counts "b", with quotes`}, []string{"x", "y"}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "a_loaded", Help: "1 when loaded."}, func() float64 { return 1 }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "c_failures_total", Help: "Failures."}, func() float64 { return 0 }),
		prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "d_seconds", Help: "Latency."}, []string{"endpoint"}),
	)
	cv := prometheus.V2.NewCounterVec(prometheus.CounterVecOpts{
		CounterOpts:    prometheus.CounterOpts{Name: "e_total", Help: "Constrained."},
		VariableLabels: prometheus.ConstrainedLabels{{Name: "path", Constraint: strings.ToLower}},
	})
	reg.MustRegister(cv)
	got := reg.Metrics()
	want := []MetricInfo{
		{Name: "a_loaded", Type: "gauge", Help: "1 when loaded."},
		{Name: "b_total", Type: "counter", Help: `counts "b", with quotes`, Labels: []string{"x", "y"}},
		{Name: "c_failures_total", Type: "counter", Help: "Failures."},
		{Name: "d_seconds", Type: "histogram", Help: "Latency.", Labels: []string{"endpoint"}},
		{Name: "e_total", Type: "counter", Help: "Constrained.", Labels: []string{"path"}},
	}
	if !slices.EqualFunc(got, want, func(a, b MetricInfo) bool {
		return a.Name == b.Name && a.Type == b.Type && a.Help == b.Help && slices.Equal(a.Labels, b.Labels)
	}) {
		t.Fatalf("Metrics() =\n%+v\nwant\n%+v", got, want)
	}
	// A refused registration is not recorded; the registry still serves what it holds.
	if err := reg.Register(prometheus.NewCounter(prometheus.CounterOpts{Name: "b_total", Help: "again"})); err == nil {
		t.Fatal("a duplicate name was registered")
	}
	if len(reg.Metrics()) != len(want) {
		t.Fatalf("the refused collector was recorded: %d metrics", len(reg.Metrics()))
	}
	rec := httptest.NewRecorder()
	MetricsHandler(reg).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if body := rec.Body.String(); !strings.Contains(body, "a_loaded 1") || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("/metrics lacks registered or runtime metrics:\n%.400s", body)
	}
}

func TestParseDescRefusesOtherFormats(t *testing.T) {
	for _, s := range []string{"", "Desc{}", `Desc{fqName: "x"`, `Desc{fqName: "x", help: "y", unit: ""}`, `Desc{fqName: x, help: "y"}`} {
		if _, err := parseDesc(s); err == nil {
			t.Errorf("parseDesc(%q) succeeded", s)
		}
	}
}
