package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/catalog"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/failpoint"
	"github.com/pollgrid/pollgrid/pkg/store"
	"github.com/pollgrid/pollgrid/pkg/telemetry"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// A tick's route, each step a function of its own: handle decodes it and
// opens its span; run looks its connector up (admit), polls it under the
// lease (poll, in poll.go), answers JetStream (answer) and queues the
// report.

// tickAck is how a tick's route answers JetStream about the tick;
// jetstream.Msg is one.
type tickAck interface {
	Ack() error
	Nak() error
	NakWithDelay(delay time.Duration) error
	Term() error
	progress
}

// progress tells JetStream that a tick's poll still runs, so that it is not
// redelivered meanwhile. A triggered poll has no tick, and no progress.
type progress interface {
	InProgress() error
}

// tick is a decoded tick as its route needs it.
type tick struct {
	*pollgridv1.Tick
	// deliveries counts the times JetStream delivered it, this one included.
	deliveries uint64
	// intended is when it was meant to fire; zero when unknown.
	intended time.Time
}

// handle runs one tick to the end: it always acks, naks or terms the tick.
func (w *Worker) handle(ctx context.Context, msg jetstream.Msg) {
	decoded, ok := w.decode(msg.Data(), msg.Subject(), msg)
	if !ok {
		return
	}
	meta, _ := msg.Metadata()
	t := tick{Tick: decoded, deliveries: numDelivered(meta)}
	if intended, ok := bus.TickIntended(msg.Headers(), decoded); ok {
		t.intended = intended
	}
	if t.deliveries > 1 {
		w.metrics.redelivered.Inc()
	}
	ctx = w.opts.Propagator.Extract(ctx, bus.HeaderCarrier(msg.Headers()))
	ctx, span := bus.StartProcessSpan(ctx, w.tracer, msg, w.opts.Filter.ConsumerName(),
		attribute.String("pollgrid.connector", t.GetConnector()),
		attribute.String("pollgrid.connector_type", t.GetConnectorType()),
		attribute.Int64("pollgrid.tick.deliveries", int64(t.deliveries)))
	defer span.End()
	if !t.intended.IsZero() && span.IsRecording() {
		// No messaging convention names a message's intended time.
		span.SetAttributes(attribute.String("pollgrid.tick.intended_time", t.intended.UTC().Format(time.RFC3339Nano)))
	}
	// Every line logged with ctx from here on, by the worker or by the
	// connector, names the connector and carries the trace and span ids.
	ctx = telemetry.ContextWithLogAttrs(ctx, slog.String("connector", t.GetConnector()), slog.String("type", t.GetConnectorType()))
	w.run(ctx, t, msg)
}

// decode reads a tick; one that cannot be read is dropped for good.
func (w *Worker) decode(data []byte, subject string, ack tickAck) (*pollgridv1.Tick, bool) {
	t, err := bus.DecodeTick(data)
	if err != nil {
		w.metrics.badTicks.Inc()
		w.log.Error("dropping malformed tick", "subject", subject, "error", err)
		_ = ack.Term()
		return nil, false
	}
	return t, true
}

// run takes a decoded tick through its connector's poll to JetStream's
// answer and the report. The tick's span, if any, comes in ctx.
func (w *Worker) run(ctx context.Context, t tick, ack tickAck) {
	in, ok := w.admit(ctx, t, ack)
	if !ok {
		return
	}
	w.metrics.inFlight.Inc()
	defer w.metrics.inFlight.Dec()
	span := trace.SpanFromContext(ctx)
	if !t.intended.IsZero() {
		// The span says what the histogram counts, for this tick.
		late := time.Since(t.intended).Seconds()
		w.metrics.lateness.Observe(late)
		span.SetAttributes(attribute.Float64("pollgrid.tick.lateness_seconds", late))
	}
	report, res := w.poll(ctx, in, store.ClaimTick, ack, t.GetInterval().AsDuration())
	bus.InjectReportTrace(ctx, w.opts.Propagator, report)
	span.SetAttributes(attribute.String("pollgrid.outcome", bus.OutcomeName(report.GetOutcome())))
	if report.GetOutcome() == pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE {
		span.SetAttributes(attribute.String("error.type", bus.ErrorType(res.err)))
		span.SetStatus(codes.Error, report.GetError())
	}
	w.answer(ctx, ack, report, res)
	w.reports.add(report)
}

// admit finds the definition of the connector a tick names, or answers
// the tick itself: a deleted connector's tick is acked and dropped, and so
// is a disabled one's, or one planned for another type (its definition
// changed since); when the catalog cannot be read the tick comes back. A
// definition this worker cannot poll is admitted: its poll fails and
// says why.
func (w *Worker) admit(ctx context.Context, t tick, ack tickAck) (*instance, bool) {
	name := t.GetConnector()
	in, err := w.defs.connector(ctx, name, t.GetRevision(), false)
	if err == nil && in.err == nil && in.cfg.Type != t.GetConnectorType() && t.GetRevision() <= in.revision {
		// Held from before the type changed, perhaps: read it again.
		in, err = w.defs.connector(ctx, name, 0, true)
	}
	switch {
	case errors.Is(err, catalog.ErrNotFound):
		// A tick planned before the connector was deleted.
		if w.defs.firstGone(name) {
			w.log.InfoContext(ctx, "dropping the ticks of a connector deleted from the catalog")
		} else {
			w.log.DebugContext(ctx, "dropping the tick of a connector deleted from the catalog")
		}
		_ = ack.Ack()
		return nil, false
	case err != nil:
		w.metrics.errors.WithLabelValues("nats", "catalog").Inc()
		w.log.WarnContext(ctx, "reading the connector's definition failed; the tick comes back", "error", err)
		_ = ack.NakWithDelay(catalogRetry)
		return nil, false
	case in.err != nil:
		return &instance{cfg: config.Connector{Name: name, Type: t.GetConnectorType()}, revision: in.revision, err: in.err}, true
	case in.cfg.Type != t.GetConnectorType():
		w.metrics.badTicks.Inc()
		w.log.WarnContext(ctx, "dropping a tick planned for another type: the connector's definition changed since",
			"defined_type", in.cfg.Type, "revision", in.revision)
		_ = ack.Ack()
		return nil, false
	case !in.cfg.Enabled:
		// A tick fired just before the connector was disabled.
		w.log.DebugContext(ctx, "dropping the tick of a disabled connector")
		_ = ack.Ack()
		return nil, false
	}
	if in.cfg.Budget.Name == "" {
		return in, true
	}
	in, err = w.withBudget(ctx, in, t.GetBudgetSharers())
	if err != nil {
		w.metrics.errors.WithLabelValues("nats", "catalog").Inc()
		w.log.WarnContext(ctx, "reading the connector's budget failed; the tick comes back", "error", err)
		_ = ack.NakWithDelay(catalogRetry)
		return nil, false
	}
	return in, true
}

// catalogRetry is when a tick comes back after the catalog could not be
// read.
const catalogRetry = 2 * time.Second

// withBudget returns in with its budget's definition, shared by sharers
// connectors (the tick says how many; 0 counts as 1). A budget the
// connector cannot poll with makes its poll fail; the error is a catalog
// that cannot be read.
func (w *Worker) withBudget(ctx context.Context, in *instance, sharers uint32) (*instance, error) {
	name := in.cfg.Budget.Name
	b, err := w.defs.budget(ctx, name)
	if err != nil {
		return nil, err
	}
	linked := *in
	if b.err != nil {
		linked.err = fmt.Errorf("connector %s: %w", in.cfg.Name, b.err)
		return &linked, nil
	}
	if w.opts.Budgets == nil {
		w.noBudgets.Do(func() {
			w.log.Warn("this worker has no budget limiter: its connectors' requests draw from no budget")
		})
	}
	linked.cfg.Budget = b.budget
	linked.cfg.Budget.Connectors = max(1, int(sharers))
	return &linked, nil
}

// answer tells JetStream how the tick's poll ended: come back later (the
// lease was held, or Redis failed), hand it to another worker now (this one
// is shutting down), or done.
func (w *Worker) answer(ctx context.Context, ack tickAck, report *pollgridv1.PollReport, res result) {
	switch {
	case res.retryIn > 0:
		_ = ack.NakWithDelay(res.retryIn)
	case ctx.Err() != nil:
		// Abandoned at shutdown: hand the tick to another worker now
		// rather than after AckWait.
		_ = ack.Nak()
	default:
		if report.GetItemsPublished() > 0 {
			failpoint.Hit(failpoint.AfterCommit)
		}
		// A plain ack: should it be lost, the redelivered tick finds the
		// lease free and polls once more, which fencing and the seen
		// versions make harmless.
		if err := ack.Ack(); err != nil {
			w.metrics.errors.WithLabelValues("nats", "ack").Inc()
			w.log.WarnContext(ctx, "ack tick failed (it will be redelivered)", "error", err)
		}
	}
}

func numDelivered(meta *jetstream.MsgMetadata) uint64 {
	if meta == nil {
		return 1
	}
	return meta.NumDelivered
}
