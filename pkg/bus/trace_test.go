package bus

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
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
