package oauth

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the auth-funnel counters: register → authorize → consent → callback → token →
// refresh → revoke, each with a small fixed set of outcomes.
type metrics struct {
	events *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{events: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mcpgate",
		Subsystem: "oauth",
		Name:      "events_total",
		Help:      "Authorization-server funnel events by step (register, authorize, consent, callback, token, refresh, revoke) and outcome.",
	}, []string{"step", "outcome"})}
	if reg != nil {
		if err := reg.Register(m.events); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
					m.events = existing
					return m, nil
				}
			}
			return nil, fmt.Errorf("oauth: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) event(step, outcome string) {
	m.events.WithLabelValues(step, outcome).Inc()
}
