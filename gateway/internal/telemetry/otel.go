package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// OTel is the OpenTelemetry setup: enabled only when OTEL_EXPORTER_OTLP_ENDPOINT (or the
// traces/metrics specific variants) is set. When disabled, its wrappers return their input
// unchanged so the hot path pays nothing.
type OTel struct {
	enabled  bool
	shutdown []func(context.Context) error
}

// OTLPConfigured reports whether the standard OTLP endpoint variables are set.
func OTLPConfigured() bool {
	for _, v := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"} {
		if os.Getenv(v) != "" {
			return true
		}
	}
	return false
}

// SetupOTel installs global OTLP/HTTP trace and metric providers (configured by the standard
// OTEL_* environment variables) and the W3C trace-context propagator when OTLPConfigured.
// Otherwise it returns a disabled OTel. Call Shutdown on exit to flush.
func SetupOTel(ctx context.Context, serviceName, version string) (*OTel, error) {
	if !OTLPConfigured() {
		return &OTel{}, nil
	}
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName(serviceName), semconv.ServiceVersion(version)))
	if err != nil {
		return nil, fmt.Errorf("otel resource: %w", err)
	}
	texp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("otel trace exporter: %w", err)
	}
	mexp, err := otlpmetrichttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("otel metric exporter: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(texp), sdktrace.WithResource(res))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(mexp)), sdkmetric.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetMeterProvider(mp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return &OTel{enabled: true, shutdown: []func(context.Context) error{tp.Shutdown, mp.Shutdown}}, nil
}

// Enabled reports whether traces and metrics are exported.
func (o *OTel) Enabled() bool { return o != nil && o.enabled }

// Handler wraps h with a server span named operation (unchanged when disabled).
func (o *OTel) Handler(h http.Handler, operation string) http.Handler {
	if !o.Enabled() {
		return h
	}
	return otelhttp.NewHandler(h, operation)
}

// Transport wraps rt with client spans that pass the trace context to the backend
// (unchanged when disabled).
func (o *OTel) Transport(rt http.RoundTripper) http.RoundTripper {
	if !o.Enabled() {
		return rt
	}
	return otelhttp.NewTransport(rt)
}

// Shutdown flushes and stops the providers.
func (o *OTel) Shutdown(ctx context.Context) error {
	if o == nil {
		return nil
	}
	var errs []error
	for _, f := range o.shutdown {
		errs = append(errs, f(ctx))
	}
	return errors.Join(errs...)
}
