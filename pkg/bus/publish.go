package bus

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// SignalPublisher publishes signals to the SIGNALS stream and waits for
// every acknowledgement, so the caller may move its cursor afterwards. Each
// signal has a producer span of its own, a child of the poll's, whose trace
// context the signal carries (InjectSignalTrace): a consumer's span joins
// the poll's trace.
type SignalPublisher struct {
	JS         jetstream.JetStream
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
}

// PublishSignals publishes all signals asynchronously, then waits for all
// acks, and says how many JetStream dropped as duplicates. Any failure fails
// the whole batch: the poll's cursor must not move, and the next poll
// re-publishes (JetStream drops what already landed).
func (p *SignalPublisher) PublishSignals(ctx context.Context, signals []*pollgridv1.Signal) (duplicates int, err error) {
	type pending struct {
		future jetstream.PubAckFuture
		span   trace.Span
	}
	waits := make([]pending, 0, len(signals))
	defer func() {
		for _, w := range waits {
			w.span.End()
		}
	}()
	for _, s := range signals {
		msg := SignalMsg(s)
		_, span := StartPublishSpan(ctx, p.Tracer, msg)
		InjectSignalTrace(trace.ContextWithSpan(ctx, span), p.Propagator, msg.Header)
		f, err := p.JS.PublishMsgAsync(msg)
		if err != nil {
			RecordError(span, err)
			span.End()
			return 0, fmt.Errorf("publish %s: %w", msg.Subject, err)
		}
		waits = append(waits, pending{future: f, span: span})
	}
	for _, w := range waits {
		select {
		case ack := <-w.future.Ok():
			RecordAck(w.span, w.future.Msg(), ack)
			if ack.Duplicate {
				duplicates++
			}
		case err := <-w.future.Err():
			RecordError(w.span, err)
			return 0, fmt.Errorf("publish %s: %w", w.future.Msg().Subject, err)
		case <-ctx.Done():
			return 0, fmt.Errorf("publish signals: waiting for acks: %w", context.Cause(ctx))
		}
	}
	return duplicates, nil
}
