package telemetry

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// pollSpans makes the spans of one poll as the worker does: the consumer
// span from the tick's traceparent, lease acquire, the upstream request,
// two signal publishes with their traceparent, the commit and the report.
func pollSpans(tr trace.Tracer, tick propagation.MapCarrier) {
	ctx := Propagator.Extract(context.Background(), tick)
	ctx, span := tr.Start(ctx, "process pollgrid.tick.weather-noaa.noaa-ca", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("messaging.system", "nats"), attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", "pollgrid.tick.weather-noaa.noaa-ca"),
			attribute.String("messaging.consumer.group.name", "workers"), attribute.String("pollgrid.connector", "noaa-ca"),
			attribute.String("pollgrid.connector_type", "weather-noaa")))
	for _, name := range []string{"lease acquire", "GET", "publish signals.a", "publish signals.b", "state commit", "publish pollgrid.report.a"} {
		cctx, child := tr.Start(ctx, name, trace.WithAttributes(attribute.String("messaging.destination.name", name)))
		Propagator.Inject(cctx, propagation.MapCarrier{})
		child.End()
	}
	span.End()
}

// BenchmarkTracingNoExporter is the cost of tracing one poll (7 spans, 7
// header injections) with no OTLP endpoint configured, next to the noop
// provider (the floor) and to an SDK that records and exports (to nowhere).
func BenchmarkTracingNoExporter(b *testing.B) {
	tick := propagation.MapCarrier{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	noExporter, err := SetupTracing(context.Background(), "bench", TracingOptions{})
	if err != nil {
		b.Fatal(err)
	}
	exporting, err := SetupTracing(context.Background(), "bench", TracingOptions{
		Processors: []sdktrace.SpanProcessor{sdktrace.NewBatchSpanProcessor(discard{})}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = exporting.Shutdown(context.Background()) })
	for _, bc := range []struct {
		name string
		tp   trace.TracerProvider
	}{
		{"noop", noop.NewTracerProvider()},
		{"no-endpoint", noExporter},
		{"exporting", exporting},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tr := bc.tp.Tracer("bench")
			b.ReportAllocs()
			for b.Loop() {
				pollSpans(tr, tick)
			}
		})
	}
}
