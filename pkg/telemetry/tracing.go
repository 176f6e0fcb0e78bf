package telemetry

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"

	"github.com/pollgrid/pollgrid/pkg/redact"
)

// Propagator is the W3C trace context pollgrid moves through NATS headers.
var Propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// TracingOptions configure SetupTracing.
type TracingOptions struct {
	// Lookup reads the OTEL_* variables; os.LookupEnv semantics. Nil reads
	// nothing (no exporter, default sampler).
	Lookup func(key string) (string, bool)
	// Redactor removes the config's secrets from every exported span; URL
	// credentials and token query parameters are always removed.
	Redactor *redact.Redactor
	// Processors receive every span besides the OTLP exporter (tests use an
	// in-memory recorder). They see spans already redacted.
	Processors []sdktrace.SpanProcessor
}

// SetupTracing installs a tracer provider for service.
//
// Spans are exported over OTLP/HTTP when OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
// or OTEL_EXPORTER_OTLP_ENDPOINT is set (other OTEL_EXPORTER_OTLP_* settings
// such as headers are read by the exporter from the process environment).
// Sampling follows OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, default
// parentbased_always_on; a bad value is an error, not a silent fallback.
//
// With no exporter and no processor nothing would ever read a span, so none
// is recorded: spans still get trace and span ids (logs and signals carry
// them) but cost almost nothing (see docs/benchmarks.md).
//
// Every span passes through a redacting processor before any exporter sees
// it: names, string attributes (url.full of the upstream HTTP client span),
// status texts and event attributes lose their secrets.
func SetupTracing(ctx context.Context, service string, opts TracingOptions) (*sdktrace.TracerProvider, error) {
	lookup := opts.Lookup
	if lookup == nil {
		lookup = func(string) (string, bool) { return "", false }
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(service)))
	if err != nil {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	sampler, err := SamplerFromEnv(lookup)
	if err != nil {
		return nil, err
	}
	processors := append([]sdktrace.SpanProcessor(nil), opts.Processors...)
	if endpoint := otlpTracesEndpoint(lookup); endpoint != "" {
		exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint))
		if err != nil {
			return nil, fmt.Errorf("otlp trace exporter %s: %w", redact.URL(endpoint), err)
		}
		processors = append(processors, sdktrace.NewBatchSpanProcessor(exp))
	}
	if len(processors) == 0 {
		sampler = sdktrace.NeverSample()
	}
	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(sampler)}
	for _, p := range processors {
		tpOpts = append(tpOpts, sdktrace.WithSpanProcessor(NewRedactingProcessor(p, opts.Redactor)))
	}
	tp := sdktrace.NewTracerProvider(tpOpts...)
	otel.SetTextMapPropagator(Propagator)
	return tp, nil
}

// Exporting reports whether SetupTracing with opts records spans for
// anything to read (an OTLP endpoint or a processor). When it does not,
// instrumentation that only feeds spans, such as a client span per upstream
// request, can be left out.
func Exporting(opts TracingOptions) bool {
	lookup := opts.Lookup
	if lookup == nil {
		lookup = func(string) (string, bool) { return "", false }
	}
	return len(opts.Processors) > 0 || otlpTracesEndpoint(lookup) != ""
}

// otlpTracesEndpoint is the full URL spans are posted to, "" for none. The
// generic endpoint gets the signal path appended, as the OTLP spec says.
func otlpTracesEndpoint(lookup func(string) (string, bool)) string {
	if v, ok := lookup("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); ok && strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v)
	}
	if v, ok := lookup("OTEL_EXPORTER_OTLP_ENDPOINT"); ok && strings.TrimSpace(v) != "" {
		return strings.TrimRight(strings.TrimSpace(v), "/") + "/v1/traces"
	}
	return ""
}

// SamplerFromEnv reads OTEL_TRACES_SAMPLER (always_on, always_off,
// traceidratio, parentbased_always_on, parentbased_always_off,
// parentbased_traceidratio; default parentbased_always_on) and
// OTEL_TRACES_SAMPLER_ARG (the ratio, 0 to 1; default 1).
func SamplerFromEnv(lookup func(string) (string, bool)) (sdktrace.Sampler, error) {
	name, _ := lookup("OTEL_TRACES_SAMPLER")
	name = strings.ToLower(strings.TrimSpace(name))
	arg, _ := lookup("OTEL_TRACES_SAMPLER_ARG")
	arg = strings.TrimSpace(arg)
	ratio := 1.0
	if arg != "" && strings.HasSuffix(name, "traceidratio") {
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return nil, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q: want a ratio from 0 to 1, such as 0.1", arg)
		}
		ratio = r
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio)), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(ratio), nil
	}
	return nil, fmt.Errorf("OTEL_TRACES_SAMPLER=%q: want one of parentbased_traceidratio, parentbased_always_on, "+
		"parentbased_always_off, traceidratio, always_on, always_off", name)
}
