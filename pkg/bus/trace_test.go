package bus

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

func TestHeaderCarrierRoundTripsLowercaseTraceContext(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prop := propagation.TraceContext{}
	msg := &nats.Msg{Subject: "signals.weather-noaa.noaa-ca", Header: nats.Header{nats.MsgIdHdr: []string{"noaa-ca:a:1"}}}
	ctx, span := StartPublishSpan(context.Background(), tp.Tracer("t"), msg)
	prop.Inject(ctx, HeaderCarrier(msg.Header))
	span.End()

	// Lowercase on the wire, as W3C and CloudEvents binary mode expect.
	require.Contains(t, msg.Header, "traceparent")
	assert.NotContains(t, msg.Header, "Traceparent")
	got := trace.SpanContextFromContext(prop.Extract(context.Background(), HeaderCarrier(msg.Header)))
	assert.Equal(t, span.SpanContext().TraceID(), got.TraceID())
	assert.Equal(t, span.SpanContext().SpanID(), got.SpanID())
	assert.True(t, got.IsRemote())

	ended := rec.Ended()
	require.Len(t, ended, 1)
	assert.Equal(t, "publish signals.weather-noaa.noaa-ca", ended[0].Name())
	assert.Equal(t, trace.SpanKindProducer, ended[0].SpanKind())
	assert.Contains(t, ended[0].Attributes(), attribute.String("messaging.system", "nats"))
	assert.Contains(t, ended[0].Attributes(), attribute.String("messaging.destination.name", "signals.weather-noaa.noaa-ca"))
	assert.Contains(t, ended[0].Attributes(), attribute.String("messaging.message.id", "noaa-ca:a:1"))
}

func TestRecordAckNamesTheStreamSequence(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	msg := &nats.Msg{Subject: "pollgrid.tick.t.n", Header: nats.Header{}}
	_, span := StartPublishSpan(context.Background(), tp.Tracer("t"), msg)
	RecordAck(span, msg, &jetstream.PubAck{Stream: "TICKS", Sequence: 42})
	span.End()
	assert.Contains(t, rec.Ended()[0].Attributes(), attribute.String("messaging.message.id", "42"))
}

type statusError struct{ code int }

func (e *statusError) Error() string { return fmt.Sprintf("status %d", e.code) }

func TestErrorType(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"timeout", fmt.Errorf("poll x: %w", context.DeadlineExceeded), "timeout"},
		{"canceled", fmt.Errorf("poll x: %w", context.Canceled), "canceled"},
		{"innermost typed error", fmt.Errorf("poll x: %w", fmt.Errorf("fetch: %w", &statusError{503})), "*bus.statusError"},
		{"plain text error", fmt.Errorf("poll x: %w", errors.New("bad body")), "_OTHER"},
		{"nil", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { assert.Equal(t, tt.want, ErrorType(tt.err)) })
	}
}

// startJetStream runs an embedded NATS server with pollgrid's streams.
func startJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
	})
	require.NoError(t, err)
	go ns.Start()
	require.True(t, ns.ReadyForConnections(10*time.Second))
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err := nats.Connect(ns.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.NoError(t, EnsureStreams(context.Background(), js, StreamOptions{Memory: true}))
	return js
}

// A consumer that knows nothing of pollgrid joins the poll's trace: it
// reads traceparent and tracestate from a signal's headers with the plain
// W3C propagator (as docs/observability.md shows), and its span is a child
// of the signal's publish span, in the poll's trace. The CloudEvents
// extension's headers carry the same context.
func TestAConsumerJoinsThePollsTrace(t *testing.T) {
	js := startJetStream(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	state, err := trace.ParseTraceState("vendor=a b") // a tracestate the poll's caller set; a space needs escaping as ce-tracestate
	require.NoError(t, err)
	pollCtx, poll := tp.Tracer("worker").Start(context.Background(), "process pollgrid.tick.feed.news")
	pollCtx = trace.ContextWithSpanContext(pollCtx, poll.SpanContext().WithTraceState(state))
	pub := &SignalPublisher{JS: js, Tracer: tp.Tracer("worker"), Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})}
	signal := &pollgridv1.Signal{Connector: "news", ConnectorType: "feed", ItemId: "a1", Version: "v1", Change: ChangeCreated,
		ObservedAt: timestamppb.Now(), Data: []byte(`{"n":1}`), Sequence: 1}
	_, err = pub.PublishSignals(pollCtx, []*pollgridv1.Signal{signal})
	require.NoError(t, err)
	poll.End()

	cons, err := js.OrderedConsumer(context.Background(), SignalsStream, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	require.NoError(t, err)
	h := msg.Headers()
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{
		"traceparent": h.Get("traceparent"), "tracestate": h.Get("tracestate"),
	})
	_, consumed := tp.Tracer("consumer").Start(ctx, "process "+msg.Subject(), trace.WithSpanKind(trace.SpanKindConsumer))
	consumed.End()

	var publish, consumer sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch s.Name() {
		case "publish signals.feed.news":
			publish = s
		case "process signals.feed.news":
			consumer = s
		}
	}
	require.NotNil(t, publish)
	require.NotNil(t, consumer)
	assert.Equal(t, poll.SpanContext().SpanID(), publish.Parent().SpanID(), "the publish is a child of the poll")
	assert.Equal(t, poll.SpanContext().TraceID(), consumer.SpanContext().TraceID(), "the consumer's span is in the poll's trace")
	assert.Equal(t, publish.SpanContext().SpanID(), consumer.Parent().SpanID(), "a child of the signal's publish")
	assert.True(t, consumer.Parent().IsRemote())
	assert.Equal(t, "vendor=a b", consumer.SpanContext().TraceState().String())

	assert.Equal(t, "00-"+poll.SpanContext().TraceID().String()+"-"+publish.SpanContext().SpanID().String()+"-01", h.Get("traceparent"))
	assert.Equal(t, h.Get("traceparent"), h.Get("ce-traceparent"), "the CloudEvents extension carries the same context")
	assert.Equal(t, "vendor=a%20b", h.Get("ce-tracestate"), "percent-encoded as the NATS binding asks")
	assert.NotContains(t, h, "baggage", "no baggage was set, none is sent")
}

func TestPercentEncode(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"printable ASCII is kept", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"},
		{"space, quote and percent", `a b"c%d`, "a%20b%22c%25d"},
		{"UTF-8 bytes", "Euro € 😀", "Euro%20%E2%82%AC%20%F0%9F%98%80"},
		{"control characters", "a\tb\x7f", "a%09b%7F"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { assert.Equal(t, tt.want, percentEncode(tt.in)) })
	}
}

// A report carries its poll's span context when the poll is sampled, and
// only its trace id when it is not.
func TestReportCarriesItsSampledPoll(t *testing.T) {
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	sampled := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{0x4b, 0xf9}, SpanID: trace.SpanID{0xb7, 0xad},
		TraceFlags: trace.FlagsSampled})
	r := &pollgridv1.PollReport{}
	InjectReportTrace(trace.ContextWithSpanContext(context.Background(), sampled), prop, r)
	assert.Equal(t, sampled.TraceID().String(), r.GetTraceId())
	assert.Equal(t, "00-"+sampled.TraceID().String()+"-"+sampled.SpanID().String()+"-01", r.GetTraceparent())
	back := trace.SpanContextFromContext(prop.Extract(context.Background(), ReportCarrier{r}))
	assert.True(t, back.Equal(sampled.WithRemote(true)), "read back: %v", back)
	assert.Equal(t, []string{"traceparent"}, ReportCarrier{r}.Keys())

	unsampled := &pollgridv1.PollReport{}
	InjectReportTrace(trace.ContextWithSpanContext(context.Background(), sampled.WithTraceFlags(0)), prop, unsampled)
	assert.Equal(t, sampled.TraceID().String(), unsampled.GetTraceId(), "the trace id still names the poll")
	assert.Empty(t, unsampled.GetTraceparent(), "no link can lead to an unexported span")
}

// A batch span links to each sampled poll once, at most MaxLinks of them,
// and says how many it left out.
func TestLinkReportsIsBounded(t *testing.T) {
	prop := propagation.TraceContext{}
	report := func(i int, flags trace.TraceFlags) *pollgridv1.PollReport {
		sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{byte(i >> 8), byte(i), 1},
			SpanID: trace.SpanID{byte(i >> 8), byte(i), 2}, TraceFlags: flags})
		r := &pollgridv1.PollReport{Connector: fmt.Sprintf("c%d", i)}
		prop.Inject(trace.ContextWithSpanContext(context.Background(), sc), ReportCarrier{r})
		return r
	}
	tests := []struct {
		name                string
		reports             []*pollgridv1.PollReport
		wantLinks, wantDrop int
	}{
		{name: "a few polls", reports: []*pollgridv1.PollReport{report(1, 1), report(2, 1), {Connector: "untraced"}}, wantLinks: 2},
		{name: "a report delivered twice is one poll", reports: []*pollgridv1.PollReport{report(1, 1), report(1, 1)}, wantLinks: 1},
		{name: "past the cap", reports: func() []*pollgridv1.PollReport {
			var rs []*pollgridv1.PollReport
			for i := 1; i <= MaxLinks+72; i++ {
				rs = append(rs, report(i, 1), report(i, 1))
			}
			return rs
		}(), wantLinks: MaxLinks, wantDrop: 72},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			_, span := tp.Tracer("t").Start(context.Background(), "batch")
			LinkReports(span, prop, tt.reports)
			span.End()
			s := rec.Ended()[0]
			assert.Len(t, s.Links(), tt.wantLinks)
			assert.Zero(t, s.DroppedLinks(), "the SDK dropped none: the cap is ours")
			assert.Contains(t, s.Attributes(), attribute.Int("pollgrid.links.dropped", tt.wantDrop))
			assert.Contains(t, s.Attributes(), attribute.Int("messaging.batch.message_count", len(tt.reports)))
			if len(s.Links()) > 0 {
				l := s.Links()[0]
				assert.Equal(t, trace.SpanID{0, 1, 2}, l.SpanContext.SpanID(), "the poll's span, not only its trace")
				assert.Contains(t, l.Attributes, attribute.String("pollgrid.connector", "c1"))
			}
		})
	}
}
