package telemetry

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Registry is a Prometheus registry that also remembers the metrics registered through it
// (not the Go runtime and process collectors NewRegistry adds), so that the metrics
// reference in docs/metrics.md can be generated from what the gateway really registers.
type Registry struct {
	*prometheus.Registry
	mu      sync.Mutex
	metrics []MetricInfo
}

// MetricInfo describes one registered metric.
type MetricInfo struct {
	Name   string
	Type   string // counter, gauge, histogram, summary, or untyped
	Help   string
	Labels []string
}

// Register implements prometheus.Registerer and records the collector's metrics.
func (r *Registry) Register(c prometheus.Collector) error {
	if err := r.Registry.Register(c); err != nil {
		return err
	}
	typ := collectorType(c)
	descs := make(chan *prometheus.Desc)
	go func() { c.Describe(descs); close(descs) }()
	r.mu.Lock()
	defer r.mu.Unlock()
	for d := range descs {
		info, err := parseDesc(d.String())
		if err != nil {
			continue // a descriptor format this version does not know: left out of the reference
		}
		info.Type = typ
		r.metrics = append(r.metrics, info)
	}
	return nil
}

// MustRegister implements prometheus.Registerer.
func (r *Registry) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// Metrics returns the metrics registered through r, sorted by name.
func (r *Registry) Metrics() []MetricInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.metrics)
	slices.SortFunc(out, func(a, b MetricInfo) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// collectorType names the metric type of the usual collectors: vectors by their Go type,
// single metrics (and func metrics) by what they write.
func collectorType(c prometheus.Collector) string {
	switch c.(type) {
	case *prometheus.CounterVec:
		return "counter"
	case *prometheus.GaugeVec:
		return "gauge"
	case *prometheus.HistogramVec:
		return "histogram"
	case *prometheus.SummaryVec:
		return "summary"
	}
	if m, ok := c.(prometheus.Metric); ok {
		var out dto.Metric
		if m.Write(&out) == nil {
			switch {
			case out.Counter != nil:
				return "counter"
			case out.Gauge != nil:
				return "gauge"
			case out.Histogram != nil:
				return "histogram"
			case out.Summary != nil:
				return "summary"
			}
		}
	}
	return "untyped"
}

// parseDesc reads the name, help and variable labels from prometheus.Desc's String form:
//
//	Desc{fqName: "name", help: "help", unit: "", constLabels: {…}, variableLabels: {a,c(b)}}
func parseDesc(s string) (MetricInfo, error) {
	var info MetricInfo
	rest, ok := strings.CutPrefix(s, `Desc{fqName: `)
	if !ok {
		return info, fmt.Errorf("telemetry: unexpected descriptor %q", s)
	}
	q, err := strconv.QuotedPrefix(rest)
	if err != nil {
		return info, fmt.Errorf("telemetry: descriptor name in %q: %w", s, err)
	}
	info.Name, _ = strconv.Unquote(q)
	if rest, ok = strings.CutPrefix(rest[len(q):], `, help: `); !ok {
		return info, fmt.Errorf("telemetry: unexpected descriptor %q", s)
	}
	if q, err = strconv.QuotedPrefix(rest); err != nil {
		return info, fmt.Errorf("telemetry: descriptor help in %q: %w", s, err)
	}
	info.Help, _ = strconv.Unquote(q)
	_, labels, ok := strings.Cut(rest[len(q):], "variableLabels: {")
	if !ok {
		return info, fmt.Errorf("telemetry: unexpected descriptor %q", s)
	}
	labels = strings.TrimSuffix(labels, "}}")
	if labels != "" {
		for _, l := range strings.Split(labels, ",") {
			if c, ok := strings.CutPrefix(l, "c("); ok { // a label with a constraint
				l = strings.TrimSuffix(c, ")")
			}
			info.Labels = append(info.Labels, l)
		}
	}
	return info, nil
}

// MetricsMarkdown renders metrics as the table of docs/metrics.md.
func MetricsMarkdown(metrics []MetricInfo) string {
	var b strings.Builder
	b.WriteString("| metric | type | labels | meaning |\n|---|---|---|---|\n")
	for _, m := range metrics {
		labels := "—"
		if len(m.Labels) > 0 {
			labels = "`" + strings.Join(m.Labels, "`, `") + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", m.Name, m.Type, labels, strings.ReplaceAll(m.Help, "|", "\\|"))
	}
	return b.String()
}
