package mcpproxy

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/gateway/internal/telemetry"
)

type metrics struct {
	http          *telemetry.HTTPMetrics
	rateLimited   prometheus.Counter
	unavailable   prometheus.Counter
	backendErrors *prometheus.CounterVec
	keyRetries    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, shared *telemetry.HTTPMetrics) *metrics {
	m := &metrics{
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mcpgate_mcp_rate_limited_total",
			Help: "MCP requests refused by the per-user rate limit.",
		}),
		unavailable: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mcpgate_mcp_store_unavailable_total",
			Help: "MCP requests refused with 503 because grants could not be verified.",
		}),
		backendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpgate_mcp_backend_errors_total",
			Help: "Backend failures by kind (unreachable, timeout, unauthorized, error_status: a 5xx or 403 answer replaced by the gateway's error, no_key, body_too_large).",
		}, []string{"kind"}),
		keyRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpgate_mcp_backend_key_retries_total",
			Help: "Backend 401s that triggered a function-key refresh, by result (retried, same_key, error).",
		}, []string{"result"}),
	}
	switch {
	case shared != nil:
		m.http = shared
	default:
		m.http = telemetry.NewHTTPMetrics(reg)
	}
	if reg != nil {
		reg.MustRegister(m.rateLimited, m.unavailable, m.backendErrors, m.keyRetries)
	}
	return m
}

func (m *metrics) observe(endpoint, method string, status int, d time.Duration) {
	m.http.Observe(endpoint, method, status, d)
}
