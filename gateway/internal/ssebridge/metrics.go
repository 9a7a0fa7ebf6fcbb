package ssebridge

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	streams          prometheus.Gauge
	subscriptionUp   prometheus.Gauge
	messages         *prometheus.CounterVec
	rejected         *prometheus.CounterVec
	closed           *prometheus.CounterVec
	dropped          *prometheus.CounterVec
	backendErrors    *prometheus.CounterVec
	keyRetries       *prometheus.CounterVec
	heartbeatErrors  prometheus.Counter
	grantCheckErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mcpgate_sse_streams", Help: "Legacy SSE streams open on this replica."}),
		subscriptionUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mcpgate_sse_subscription_up", Help: "1 when this replica's SSE pub/sub subscription is up (streams accepted)."}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpgate_sse_messages_total", Help: "SSE client messages accepted, by route (local, forwarded to another replica, received from another replica)."}, []string{"route"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpgate_sse_rejected_total", Help: "SSE streams and messages refused, by reason."}, []string{"reason"}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpgate_sse_streams_closed_total", Help: "SSE streams closed, by reason (client_gone, shutdown, slow_client, write_failed, grant_revoked, grant_gone)."}, []string{"reason"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpgate_sse_streams_dropped_total", Help: "SSE streams closed by the gateway because a limit was exceeded."}, []string{"reason"}),
		backendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpgate_sse_backend_errors_total", Help: "Backend failures of SSE messages, by kind."}, []string{"kind"}),
		keyRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpgate_sse_backend_key_retries_total", Help: "Backend 401s on SSE messages that triggered a function-key refresh, by result."}, []string{"result"}),
		heartbeatErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mcpgate_sse_heartbeat_errors_total", Help: "Failed refreshes of SSE stream keys."}),
		grantCheckErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mcpgate_sse_grant_check_errors_total", Help: "Failed periodic checks of the grants of open SSE streams."}),
	}
	if reg != nil {
		reg.MustRegister(m.streams, m.subscriptionUp, m.messages, m.rejected, m.closed, m.dropped, m.backendErrors, m.keyRetries, m.heartbeatErrors, m.grantCheckErrors)
	}
	return m
}
