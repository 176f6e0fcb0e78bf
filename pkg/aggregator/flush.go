package aggregator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/history"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// pendingMsg is a message whose reports wait for the next flush.
type pendingMsg struct {
	msg     jetstream.Msg
	reports []*pollgridv1.PollReport
}

// handle takes one message of the REPORTS stream: a message that does not
// decode is terminated (redelivering it would not help), the invalid reports
// of one that does are dropped, and the rest wait for the next flush. Once
// FlushReports or FlushMessages wait, handle flushes at once, so a consumer
// that outpaces Redis waits for it. A message has no span of its own: the
// work is the flush's, whose span links to every poll it records.
func (a *Aggregator) handle(base context.Context, msg jetstream.Msg) {
	batch, err := bus.DecodeReports(msg.Data())
	if err != nil {
		a.reports.WithLabelValues("rejected").Inc()
		a.log.ErrorContext(base, "dropping malformed poll reports", "subject", msg.Subject(), "error", err)
		_ = msg.Term()
		return
	}
	reports := make([]*pollgridv1.PollReport, 0, len(batch.GetReports()))
	for _, r := range batch.GetReports() {
		if err := history.ValidateReport(r); err != nil {
			a.reports.WithLabelValues("rejected").Inc()
			a.log.ErrorContext(base, "dropping an invalid poll report", "subject", msg.Subject(), "error", err,
				"connector", r.GetConnector(), "type", r.GetConnectorType(), "trace_id", r.GetTraceId())
			continue
		}
		reports = append(reports, r)
	}
	if len(reports) == 0 {
		a.ack(msg)
		return
	}
	a.mu.Lock()
	a.pending = append(a.pending, pendingMsg{msg: msg, reports: reports})
	a.pendingReports += len(reports)
	full := a.pendingReports >= a.opts.FlushReports || len(a.pending) >= a.opts.FlushMessages
	a.mu.Unlock()
	if full {
		a.flush(base)
	}
}

// flushSpanDestination names where a flush's messages come from: every
// worker's report subject, pollgrid.reports.<worker>.
const flushSpanDestination = bus.ReportPrefix + ".*"

// startFlushSpan starts the span of one flush, after OpenTelemetry's
// messaging conventions for a batch processed: a consumer span named
// "process pollgrid.reports.*", a trace of its own (it serves many polls),
// linked to the span of each poll it records (bus.LinkReports).
func (a *Aggregator) startFlushSpan(ctx context.Context, batch []pendingMsg, reports []*pollgridv1.PollReport) (context.Context, trace.Span) {
	ctx, span := a.tracer.Start(ctx, "process "+flushSpanDestination, trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.operation.name", "process"),
			attribute.String("messaging.destination.template", flushSpanDestination),
			attribute.String("messaging.consumer.group.name", ConsumerName),
		))
	if !span.IsRecording() {
		return ctx, span
	}
	span.SetAttributes(attribute.Int("pollgrid.flush.jetstream_messages", len(batch)))
	if sameConnector(reports) {
		span.SetAttributes(attribute.String("pollgrid.connector", reports[0].GetConnector()),
			attribute.String("pollgrid.connector_type", reports[0].GetConnectorType()))
	}
	bus.LinkReports(span, a.opts.Propagator, reports)
	return ctx, span
}

func sameConnector(reports []*pollgridv1.PollReport) bool {
	for _, r := range reports[1:] {
		if r.GetConnector() != reports[0].GetConnector() {
			return false
		}
	}
	return true
}

// flush writes the pending reports with one RecordReports, then acknowledges
// their messages; when the write fails it returns them all to JetStream
// (nak), which delivers them again, to this replica or another. The write
// may have been applied in part (the pipeline holds one call per connector):
// those connectors then count their reports twice, the price of never
// losing one. Reports of connectors Redis refuses for good (see
// history.RejectedError) are dropped and counted as rejected.
func (a *Aggregator) flush(ctx context.Context) {
	a.flushing.Lock()
	defer a.flushing.Unlock()
	a.mu.Lock()
	batch, n := a.pending, a.pendingReports
	a.pending, a.pendingReports = nil, 0
	a.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	reports := make([]*pollgridv1.PollReport, 0, n)
	for _, p := range batch {
		reports = append(reports, p.reports...)
	}
	ctx, span := a.startFlushSpan(ctx, batch, reports)
	defer span.End()
	wctx, cancel := context.WithTimeout(ctx, writeTimeout)
	start := time.Now()
	err := a.history.RecordReports(wctx, reports)
	cancel()
	var rejected *history.RejectedError
	if errors.As(err, &rejected) {
		// The rest is written, and these would fail again: drop them rather
		// than hold every connector's reports back forever.
		dropped := 0
		for _, r := range reports {
			if rejected.Connectors[r.GetConnector()] != nil {
				dropped++
			}
		}
		a.reports.WithLabelValues("rejected").Add(float64(dropped))
		n -= dropped
		a.errors.WithLabelValues("redis", "record_report").Inc()
		a.log.ErrorContext(ctx, "dropping poll reports Redis refused", "reports", dropped, "error", err)
		span.SetAttributes(attribute.Int("pollgrid.flush.reports_rejected", dropped))
		err = nil
	}
	if err != nil {
		err = fmt.Errorf("record %d poll reports of %d messages: %w", n, len(batch), err)
		a.reports.WithLabelValues("retried").Add(float64(n))
		a.errors.WithLabelValues("redis", "record_report").Inc()
		a.log.WarnContext(ctx, "recording poll reports failed; they will be delivered again", "error", err)
		bus.RecordError(span, err)
		for _, p := range batch {
			if err := p.msg.NakWithDelay(time.Second); err != nil {
				a.errors.WithLabelValues("nats", "nak").Inc()
			}
		}
		return
	}
	a.reports.WithLabelValues("ok").Add(float64(n))
	for _, p := range batch {
		a.ack(p.msg)
	}
	a.log.DebugContext(ctx, "recorded poll reports", "reports", n, "messages", len(batch),
		slog.Duration("took", time.Since(start)))
}

func (a *Aggregator) ack(msg jetstream.Msg) {
	if err := msg.Ack(); err != nil {
		a.errors.WithLabelValues("nats", "ack").Inc()
	}
}
