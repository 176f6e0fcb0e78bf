package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// The spans of NATS messages, named and attributed after OpenTelemetry's
// messaging conventions: a producer span per publish, a consumer span per
// message processed, the links of a span that handles a batch of poll
// reports, and how a failure is recorded on any of them.

// StartPublishSpan starts a producer span named after the messaging
// conventions: "publish <subject>".
func StartPublishSpan(ctx context.Context, tracer trace.Tracer, msg *nats.Msg) (context.Context, trace.Span) {
	attrs := []attribute.KeyValue{
		attribute.String("messaging.system", "nats"),
		attribute.String("messaging.operation.type", "send"),
		attribute.String("messaging.destination.name", msg.Subject),
	}
	if id := msg.Header.Get(nats.MsgIdHdr); id != "" {
		attrs = append(attrs, attribute.String("messaging.message.id", id))
	}
	return tracer.Start(ctx, "publish "+msg.Subject, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
}

// StartProcessSpan starts the consumer span of a JetStream message, named
// "process <subject>", as a child of the context extracted from its headers.
// messaging.message.id is the Nats-Msg-Id when the publisher set one, else
// the message's stream sequence (what JetStream itself identifies it by).
func StartProcessSpan(ctx context.Context, tracer trace.Tracer, msg jetstream.Msg, group string, extra ...attribute.KeyValue) (context.Context, trace.Span) {
	attrs := []attribute.KeyValue{
		attribute.String("messaging.system", "nats"),
		attribute.String("messaging.operation.type", "process"),
		attribute.String("messaging.destination.name", msg.Subject()),
		attribute.String("messaging.consumer.group.name", group),
	}
	if id := msg.Headers().Get(nats.MsgIdHdr); id != "" {
		attrs = append(attrs, attribute.String("messaging.message.id", id))
	} else if meta, err := msg.Metadata(); err == nil {
		attrs = append(attrs, attribute.String("messaging.message.id", strconv.FormatUint(meta.Sequence.Stream, 10)))
	}
	return tracer.Start(ctx, "process "+msg.Subject(), trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(append(attrs, extra...)...))
}

// MaxLinks caps the links of a span that stands for a batch of poll reports
// (a worker's publish of its reports, the aggregator's flush) to the polls
// they report: the OpenTelemetry SDK's default limit, past which it would
// drop links without saying which. A flush may hold thousands of reports;
// how many polls went unlinked is the span's pollgrid.links.dropped.
const MaxLinks = 128

// LinkReports describes a batch of poll reports on its span, after
// OpenTelemetry's messaging conventions for batches: each report is a
// message whose creation context is its poll's span (the trace context the
// worker put in it), messaging.batch.message_count counts them, and the
// span links to each poll's span, at most MaxLinks of them, the rest
// counted in pollgrid.links.dropped. Reports of unsampled polls carry no
// context and get no link. Nothing is parsed when the span does not record.
func LinkReports(span trace.Span, prop propagation.TextMapPropagator, reports []*pollgridv1.PollReport) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attribute.Int("messaging.batch.message_count", len(reports)))
	// A report delivered twice is one poll: same traceparent. Past the cap
	// the rest are only counted, not parsed.
	seen := make(map[string]bool, len(reports))
	linked, dropped := 0, 0
	for _, r := range reports {
		if r.GetTraceparent() == "" || seen[r.GetTraceparent()] {
			continue
		}
		seen[r.GetTraceparent()] = true
		if linked == MaxLinks {
			dropped++
			continue
		}
		sc := trace.SpanContextFromContext(prop.Extract(context.Background(), ReportCarrier{r}))
		if !sc.IsValid() {
			continue
		}
		linked++
		span.AddLink(trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{
			attribute.String("pollgrid.connector", r.GetConnector()),
		}})
	}
	span.SetAttributes(attribute.Int("pollgrid.links.dropped", dropped))
}

// RecordAck adds what JetStream's acknowledgement says about a published
// message to its producer span: the stream sequence as messaging.message.id
// (when no Nats-Msg-Id named it already), and whether it was a duplicate.
func RecordAck(span trace.Span, msg *nats.Msg, ack *jetstream.PubAck) {
	if ack == nil {
		return
	}
	if msg.Header.Get(nats.MsgIdHdr) == "" {
		span.SetAttributes(attribute.String("messaging.message.id", strconv.FormatUint(ack.Sequence, 10)))
	}
	if ack.Duplicate {
		span.SetAttributes(attribute.Bool("pollgrid.duplicate", true))
	}
}

// RecordError marks a span failed with the error's type and text.
func RecordError(span trace.Span, err error) {
	span.RecordError(err)
	span.SetAttributes(attribute.String("error.type", ErrorType(err)))
	span.SetStatus(codes.Error, err.Error())
}

// ErrorType is the low-cardinality error.type of err: "timeout" and
// "canceled" for the context errors, else the Go type of the innermost
// error of its wrap chain (the one that says what went wrong, such as
// *upstream.StatusError), "_OTHER" when that is a plain errors.New.
func ErrorType(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	inner := err
	for next := errors.Unwrap(inner); next != nil; next = errors.Unwrap(inner) {
		inner = next
	}
	t := fmt.Sprintf("%T", inner)
	if t == "*errors.errorString" || t == "*fmt.wrapError" || t == "*fmt.wrapErrors" || t == "*errors.joinError" {
		return "_OTHER"
	}
	return t
}
