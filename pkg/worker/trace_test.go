package worker

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/connector"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// One tick's trace, as a worker makes it from a real JetStream message:
// the tick's span says when the tick was meant to fire and how late it
// started; the signal carries the trace to a consumer, whose span joins it;
// the report carries the poll's span context, and the span that publishes
// the batch of reports links to it.
func TestATicksTraceReachesItsSignalAndReport(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	fx := newFixture(t, Options{Tracer: tp, Propagator: prop})
	fx.onPoll(func(context.Context, connector.State) (connector.Result, error) {
		return connector.Result{Items: []connector.Item{{ID: "a1", Version: "v1", Data: []byte(`{"n":1}`)}}}, nil
	})
	ctx := context.Background()

	// A tick the scheduler meant for 1.5s ago (a NATS-fired one says the
	// same through its Nats-Schedule-Next header; bus.TickIntended reads both).
	intended := time.Now().Add(-1500 * time.Millisecond).UTC()
	data, err := bus.EncodeTick(&pollgridv1.Tick{Connector: "feed", ConnectorType: feedType,
		DueAt: timestamppb.New(intended), Interval: durationpb.New(time.Minute)})
	require.NoError(t, err)
	_, err = fx.js.Publish(ctx, bus.TickSubject(feedType, "feed"), data)
	require.NoError(t, err)
	cons, err := fx.w.Consumer(ctx)
	require.NoError(t, err)
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	require.NoError(t, err)
	fx.w.handle(ctx, msg)

	process := spanNamed(t, rec, "process pollgrid.tick.fake.feed")
	pa := attrsOf(process.Attributes())
	assert.Equal(t, intended.Format(time.RFC3339Nano), pa["pollgrid.tick.intended_time"].AsString())
	late := pa["pollgrid.tick.lateness_seconds"].AsFloat64()
	assert.GreaterOrEqual(t, late, 1.5)
	assert.Less(t, late, 60.0)

	// The signal: a consumer extracts its traceparent and joins the poll's trace.
	sigs, err := fx.js.OrderedConsumer(ctx, bus.SignalsStream, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	sig, err := sigs.Next(jetstream.FetchMaxWait(5 * time.Second))
	require.NoError(t, err)
	consumerCtx := propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": sig.Headers().Get("traceparent")})
	_, consumed := tp.Tracer("consumer").Start(consumerCtx, "process "+sig.Subject(), trace.WithSpanKind(trace.SpanKindConsumer))
	consumed.End()
	publish := spanNamed(t, rec, "publish "+sig.Subject())
	consumer := spanNamed(t, rec, "process "+sig.Subject())
	assert.Equal(t, process.SpanContext().SpanID(), publish.Parent().SpanID())
	assert.Equal(t, publish.SpanContext().SpanID(), consumer.Parent().SpanID())
	assert.Equal(t, process.SpanContext().TraceID(), consumer.SpanContext().TraceID(), "one trace from the tick to the consumer")
	assert.Equal(t, sig.Headers().Get("traceparent"), sig.Headers().Get("ce-traceparent"))

	// The report: the poll's span context, and the batch's publish span links to it.
	report := fx.onlyReport(t)
	assert.Equal(t, process.SpanContext().TraceID().String(), report.GetTraceId())
	assert.Equal(t, "00-"+process.SpanContext().TraceID().String()+"-"+process.SpanContext().SpanID().String()+"-01",
		report.GetTraceparent())
	fx.w.reports.flush(ctx)
	sent := spanNamed(t, rec, "publish "+bus.ReportSubject(fx.w.opts.ID))
	assert.False(t, sent.Parent().IsValid(), "the batch serves many polls: a trace of its own")
	require.Len(t, sent.Links(), 1)
	assert.Equal(t, process.SpanContext().SpanID(), sent.Links()[0].SpanContext.SpanID())
	assert.Equal(t, process.SpanContext().TraceID(), sent.Links()[0].SpanContext.TraceID())
	sa := attrsOf(sent.Attributes())
	assert.Equal(t, int64(1), sa["messaging.batch.message_count"].AsInt64())
	assert.Equal(t, int64(0), sa["pollgrid.links.dropped"].AsInt64())
	assert.Equal(t, trace.SpanKindProducer, sent.SpanKind())
}

// An unsampled poll's report names its trace but carries no span context.
func TestAnUnsampledPollsReportCarriesNoContext(t *testing.T) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	fx := newFixture(t, Options{Tracer: tp})
	ctx, span := tp.Tracer("t").Start(context.Background(), "tick")
	fx.w.run(ctx, tickOf(feed()), &answers{})
	span.End()
	report := fx.onlyReport(t)
	assert.Equal(t, span.SpanContext().TraceID().String(), report.GetTraceId())
	assert.Empty(t, report.GetTraceparent())
}

func spanNamed(t *testing.T, rec *tracetest.SpanRecorder, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	for _, s := range rec.Ended() {
		if s.Name() == name {
			return s
		}
	}
	require.Failf(t, "no span", "no span named %q", name)
	return nil
}

func attrsOf(kvs []attribute.KeyValue) map[string]attribute.Value {
	out := map[string]attribute.Value{}
	for _, kv := range kvs {
		out[string(kv.Key)] = kv.Value
	}
	return out
}
