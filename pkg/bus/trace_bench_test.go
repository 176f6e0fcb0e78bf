package bus

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// BenchmarkInjectSignalTrace is the cost, per signal, of its trace context
// headers: the W3C ones alone, and with their CloudEvents copies.
func BenchmarkInjectSignalTrace(b *testing.B) {
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x4b, 0xf9}, SpanID: trace.SpanID{0xb7, 0xad}, TraceFlags: trace.FlagsSampled}))
	b.Run("w3c", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			prop.Inject(ctx, HeaderCarrier(nats.Header{}))
		}
	})
	b.Run("w3c+cloudevents", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			InjectSignalTrace(ctx, prop, nats.Header{})
		}
	})
}

// BenchmarkLinkReports is the cost of a flush span's links over a batch of
// 2,000 sampled polls' reports (a worker's full batch): MaxLinks links,
// the rest counted.
func BenchmarkLinkReports(b *testing.B) {
	prop := propagation.TraceContext{}
	reports := make([]*pollgridv1.PollReport, 2000)
	for i := range reports {
		reports[i] = &pollgridv1.PollReport{Connector: "c"}
		sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{byte(i >> 8), byte(i), 1},
			SpanID: trace.SpanID{byte(i >> 8), byte(i), 2}, TraceFlags: trace.FlagsSampled})
		prop.Inject(trace.ContextWithSpanContext(context.Background(), sc), ReportCarrier{reports[i]})
	}
	tr := sdktrace.NewTracerProvider().Tracer("bench")
	b.ReportAllocs()
	for b.Loop() {
		_, span := tr.Start(context.Background(), "flush")
		LinkReports(span, prop, reports)
		span.End()
	}
}
