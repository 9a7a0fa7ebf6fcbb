package oauth

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/gateway/internal/upstream"
)

// metrics are the auth-funnel counters: register → authorize → consent → callback → token →
// refresh → revoke, each with a small fixed set of outcomes.
type metrics struct {
	events *prometheus.CounterVec
	// upstreamErrors counts IdP errors by step (callback, refresh), bounded OAuth code and
	// bounded Entra AADSTS number (upstream.Error.MetricCode / MetricAADSTS).
	upstreamErrors *prometheus.CounterVec
	// refusals counts users refused by Config.Admit, by step (callback, refresh).
	refusals *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{events: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mcpgate",
		Subsystem: "oauth",
		Name:      "events_total",
		Help:      "Authorization-server funnel events by step (register, authorize, consent, callback, token, refresh, revoke) and outcome.",
	}, []string{"step", "outcome"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mcpgate",
			Subsystem: "oauth",
			Name:      "upstream_errors_total",
			Help:      "Errors from the upstream identity provider by step (callback, refresh), OAuth error code and Entra AADSTS number (known numbers, else other; none without one).",
		}, []string{"step", "error", "aadsts"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mcpgate",
			Subsystem: "oauth",
			Name:      "admission_refusals_total",
			Help:      "Signed-in users refused by the identity policy, by step (callback, refresh) and reason.",
		}, []string{"step", "reason"}),
	}
	if reg != nil {
		for _, c := range []**prometheus.CounterVec{&m.events, &m.upstreamErrors, &m.refusals} {
			if err := reg.Register(*c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if errors.As(err, &are) {
					if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
						*c = existing
						continue
					}
				}
				return nil, fmt.Errorf("oauth: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *metrics) event(step, outcome string) {
	m.events.WithLabelValues(step, outcome).Inc()
}

func (m *metrics) upstreamError(step string, e *upstream.Error) {
	m.upstreamErrors.WithLabelValues(step, e.MetricCode(), e.MetricAADSTS()).Inc()
}

func (m *metrics) refused(step, reason string) {
	m.refusals.WithLabelValues(step, reason).Inc()
}
