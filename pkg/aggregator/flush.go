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

// maxLinks caps the links of a message's span to the polls it reports (the
// OpenTelemetry SDK keeps 128 by default).
const maxLinks = 128

// pendingMsg is a message whose reports wait for the next flush. Its span
// stays open until the message is acknowledged or returned.
type pendingMsg struct {
	msg     jetstream.Msg
	span    trace.Span
	reports []*pollgridv1.PollReport
}

// handle takes one message of the REPORTS stream: a message that does not
// decode is terminated (redelivering it would not help), the invalid reports
// of one that does are dropped, and the rest wait for the next flush. Once
// FlushReports or FlushMessages wait, handle flushes at once, so a consumer
// that outpaces Redis waits for it.
func (a *Aggregator) handle(base context.Context, msg jetstream.Msg) {
	ctx := a.opts.Propagator.Extract(base, bus.HeaderCarrier(msg.Headers()))
	ctx, span := bus.StartProcessSpan(ctx, a.tracer, msg, ConsumerName)
	batch, err := bus.DecodeReports(msg.Data())
	if err != nil {
		bus.RecordError(span, err)
		span.End()
		a.reports.WithLabelValues("rejected").Inc()
		a.log.ErrorContext(ctx, "dropping malformed poll reports", "subject", msg.Subject(), "error", err)
		_ = msg.Term()
		return
	}
	reports := make([]*pollgridv1.PollReport, 0, len(batch.GetReports()))
	for _, r := range batch.GetReports() {
		if err := history.ValidateReport(r); err != nil {
			a.reports.WithLabelValues("rejected").Inc()
			a.log.ErrorContext(ctx, "dropping an invalid poll report", "subject", msg.Subject(), "error", err,
				"connector", r.GetConnector(), "type", r.GetConnectorType(), "trace_id", r.GetTraceId())
			continue
		}
		reports = append(reports, r)
	}
	describe(span, reports)
	if len(reports) == 0 {
		span.End()
		a.ack(msg)
		return
	}
	a.mu.Lock()
	a.pending = append(a.pending, pendingMsg{msg: msg, span: span, reports: reports})
	a.pendingReports += len(reports)
	full := a.pendingReports >= a.opts.FlushReports || len(a.pending) >= a.opts.FlushMessages
	a.mu.Unlock()
	if full {
		a.flush(base)
	}
}

// describe tells on a message's span what it carries. The span is a child of
// the message's publish (its trace context is in the headers) and links to
// the trace of each poll it reports, rather than posing as a child of one.
func describe(span trace.Span, reports []*pollgridv1.PollReport) {
	span.SetAttributes(attribute.Int("pollgrid.reports", len(reports)))
	if len(reports) > 0 && sameConnector(reports) {
		span.SetAttributes(attribute.String("pollgrid.connector", reports[0].GetConnector()),
			attribute.String("pollgrid.connector_type", reports[0].GetConnectorType()))
	}
	if !span.IsRecording() {
		return
	}
	linked := map[trace.TraceID]bool{}
	for _, r := range reports {
		id, err := trace.TraceIDFromHex(r.GetTraceId())
		if err != nil || linked[id] {
			continue
		}
		if len(linked) == maxLinks {
			span.SetAttributes(attribute.Bool("pollgrid.links_capped", true))
			return
		}
		linked[id] = true
		// A report has its poll's trace id, not its span id: the link names the
		// trace (and the connector, which keeps the SDK from dropping a link
		// without a valid span context).
		span.AddLink(trace.Link{
			SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: id}),
			Attributes:  []attribute.KeyValue{attribute.String("pollgrid.connector", r.GetConnector())},
		})
	}
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
		err = nil
	}
	if err != nil {
		err = fmt.Errorf("record %d poll reports of %d messages: %w", n, len(batch), err)
		a.reports.WithLabelValues("retried").Add(float64(n))
		a.errors.WithLabelValues("redis", "record_report").Inc()
		a.log.WarnContext(ctx, "recording poll reports failed; they will be delivered again", "error", err)
		for _, p := range batch {
			bus.RecordError(p.span, err)
			p.span.End()
			if err := p.msg.NakWithDelay(time.Second); err != nil {
				a.errors.WithLabelValues("nats", "nak").Inc()
			}
		}
		return
	}
	a.reports.WithLabelValues("ok").Add(float64(n))
	for _, p := range batch {
		p.span.End()
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
