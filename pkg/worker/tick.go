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
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/failpoint"
	"github.com/pollgrid/pollgrid/pkg/poll"
	"github.com/pollgrid/pollgrid/pkg/store"
	"github.com/pollgrid/pollgrid/pkg/telemetry"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// handle runs one tick to the end: it always acks, naks or terms the tick.
func (w *Worker) handle(ctx context.Context, msg jetstream.Msg) {
	tick, err := bus.DecodeTick(msg.Data())
	if err != nil {
		w.metrics.badTicks.Inc()
		w.log.Error("dropping malformed tick", "subject", msg.Subject(), "error", err)
		_ = msg.Term()
		return
	}
	meta, _ := msg.Metadata()
	if meta != nil && meta.NumDelivered > 1 {
		w.metrics.redelivered.Inc()
	}
	ctx = w.opts.Propagator.Extract(ctx, bus.HeaderCarrier(msg.Headers()))
	ctx, span := bus.StartProcessSpan(ctx, w.tracer, msg, w.opts.Filter.ConsumerName(),
		attribute.String("pollgrid.connector", tick.GetConnector()),
		attribute.String("pollgrid.connector_type", tick.GetConnectorType()),
		attribute.Int64("pollgrid.tick.deliveries", int64(numDelivered(meta))))
	defer span.End()
	// Every line logged with ctx from here on, by the worker or by the
	// connector, names the connector and carries the trace and span ids.
	ctx = telemetry.ContextWithLogAttrs(ctx, slog.String("connector", tick.GetConnector()), slog.String("type", tick.GetConnectorType()))
	log := w.log

	in, ok := w.lookup(tick.GetConnector())
	if !ok || in.cfg.Type != tick.GetConnectorType() {
		// The scheduler's config may be newer than ours for a moment
		// during a reload: give it a few chances, then drop it.
		w.metrics.badTicks.Inc()
		log.WarnContext(ctx, "tick names no connector in this worker's config", "deliveries", numDelivered(meta))
		if numDelivered(meta) < 3 {
			_ = msg.NakWithDelay(2 * time.Second)
		} else {
			_ = msg.Term()
		}
		return
	}
	if !in.cfg.Enabled {
		// A tick fired just before the connector was disabled.
		log.DebugContext(ctx, "dropping the tick of a disabled connector")
		_ = msg.Ack()
		return
	}
	w.metrics.inFlight.Inc()
	defer w.metrics.inFlight.Dec()
	if intended, ok := bus.TickIntended(msg.Headers(), tick); ok {
		w.metrics.lateness.Observe(time.Since(intended).Seconds())
	}
	report, naked, pollErr := w.poll(ctx, in, msg, log)
	report.TraceId = span.SpanContext().TraceID().String()
	span.SetAttributes(attribute.String("pollgrid.outcome", bus.OutcomeName(report.GetOutcome())))
	if report.GetOutcome() == pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE {
		span.SetAttributes(attribute.String("error.type", bus.ErrorType(pollErr)))
		span.SetStatus(codes.Error, report.GetError())
	}
	if ctx.Err() != nil {
		// Abandoned at shutdown: hand the tick to another worker now
		// rather than after AckWait.
		_ = msg.Nak()
	} else if !naked {
		if report.GetItemsPublished() > 0 {
			failpoint.Hit(failpoint.AfterCommit)
		}
		// A plain ack: should it be lost, the redelivered tick finds the
		// lease free and polls once more, which fencing and the seen
		// versions make harmless.
		if err := msg.Ack(); err != nil {
			w.metrics.errors.WithLabelValues("nats", "ack").Inc()
			log.WarnContext(ctx, "ack tick failed (it will be redelivered)", "error", err)
		}
	}
	w.reports.add(report)
}

// poll runs one connector under its lease and returns the report to send;
// naked is true when it already handed the tick back for a later retry.
func (w *Worker) poll(ctx context.Context, in *instance, msg jetstream.Msg, log *slog.Logger) (report *pollgridv1.PollReport, naked bool, pollErr error) {
	c := in.cfg
	started := time.Now()
	report = &pollgridv1.PollReport{
		Connector: c.Name, ConnectorType: c.Type, Worker: w.opts.ID,
		StartedAt: timestamppb.New(started),
	}
	finish := func(outcome pollgridv1.PollOutcome, err error, naked bool) (*pollgridv1.PollReport, bool, error) {
		took := time.Since(started)
		report.Outcome = outcome
		report.Duration = durationpb.New(took)
		if err != nil {
			report.Error = w.opts.Redactor.String(err.Error())
		}
		w.metrics.polls.WithLabelValues(c.Type, bus.OutcomeName(outcome)).Inc()
		if outcome != pollgridv1.PollOutcome_POLL_OUTCOME_SKIPPED {
			w.metrics.observeDuration(ctx, c.Type, took)
		}
		return report, naked, err
	}

	conn, err := w.connector(in)
	if err != nil {
		log.ErrorContext(ctx, "connector cannot be built", "error", err)
		return finish(pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE, err, false)
	}
	claim := store.ClaimTick
	if triggered(ctx) {
		claim = store.ClaimTrigger
	}
	lease, state, err := w.acquire(ctx, c, claim)
	var held *store.LeaseHeldError
	switch {
	case errors.As(err, &held):
		w.metrics.contention.WithLabelValues(c.Type).Inc()
		log.InfoContext(ctx, "lease held by another worker; tick retried after it expires", "remaining", held.Remaining.String())
		_ = msg.NakWithDelay(held.Remaining + 100*time.Millisecond)
		return finish(pollgridv1.PollOutcome_POLL_OUTCOME_SKIPPED, err, true)
	case errors.Is(err, store.ErrPaused):
		return finish(pollgridv1.PollOutcome_POLL_OUTCOME_SKIPPED, pausedReason(state), false)
	case errors.Is(err, store.ErrWaiting):
		return finish(pollgridv1.PollOutcome_POLL_OUTCOME_SKIPPED, waitReason(state), false)
	case err != nil:
		w.metrics.errors.WithLabelValues("redis", "acquire").Inc()
		log.ErrorContext(ctx, "acquire lease failed", "error", err)
		_ = msg.NakWithDelay(time.Second)
		return finish(pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE, err, true)
	}
	report.FencingToken = lease.Token
	w.countMissed(c, state)
	if state.Attempts > maxAttempts {
		// Its last polls all began fetching and never committed: each
		// time, the worker polling it died. Polling it again would likely
		// kill this one too; fail the poll (which backs off) and say why.
		w.metrics.crashLoops.WithLabelValues(c.Type).Inc()
		err := fmt.Errorf("poll %s: its last %d polls began and never finished (their workers died or were killed while polling it): "+
			"not polling it this time; it backs off like any failing connector (check the workers' logs and the connector's upstream)",
			c.Name, state.Attempts-1)
		log.ErrorContext(ctx, "connector crash loop", "error", err)
		failed := state
		failed.LastPoll = time.Now()
		failed.ConsecutiveFailures++
		failed.LastError = err.Error()
		failed.NotBefore = failed.LastPoll.Add(poll.Backoff(c.Interval, failed.ConsecutiveFailures))
		failed.NotBeforeBy = store.WaitBackoff
		if cerr := w.commit(ctx, lease, store.Commit{State: failed, Now: failed.LastPoll}); cerr != nil {
			log.ErrorContext(ctx, "recording the crash loop failed", "error", cerr)
		}
		return finish(pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE, err, false)
	}

	pollCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	hb := w.startHeartbeat(pollCtx, cancel, lease, msg, log)
	out := w.runner.Run(pollCtx, c, conn, state, hb.guard)
	hb.stop()
	var panicked *poll.PanicError
	if errors.As(out.Err, &panicked) {
		log.ErrorContext(ctx, "connector panicked; the poll failed", "panic", w.opts.Redactor.String(fmt.Sprint(panicked.Value)),
			"stack", string(panicked.Stack))
		w.metrics.panics.WithLabelValues(c.Type).Inc()
	}

	report.ItemsFetched = int64(out.Fetched)
	report.ItemsPublished = int64(len(out.Signals) - out.Duplicates)
	report.ItemsFailed = int64(len(out.Failed))
	report.NotModified = out.NotModified
	for _, f := range out.Failed[:len(out.Failed)-out.Untracked] {
		log.WarnContext(ctx, "item failed", "item", f.ID, "error", w.opts.Redactor.String(f.Err.Error()))
	}
	w.metrics.itemsFailed.WithLabelValues(c.Type).Add(float64(len(out.Failed)))
	w.seenCap(ctx, c, out, state, log)

	if out.Err == nil && len(out.Signals) > 0 {
		failpoint.Hit(failpoint.AfterPublish)
	}
	if err := w.commit(ctx, lease, out.Commit); err != nil {
		if errors.Is(err, store.ErrFenced) {
			w.metrics.fenced.WithLabelValues(c.Type).Inc()
		} else {
			w.metrics.errors.WithLabelValues("redis", "commit").Inc()
		}
		log.ErrorContext(ctx, "commit state failed; the next poll starts from the previous state", "error", err)
		return finish(pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE, err, false)
	}
	if out.Err != nil {
		report.RateLimited = rateLimited(out.Err)
		if report.RateLimited {
			w.metrics.rateLimited.WithLabelValues(c.Type).Inc()
		}
		log.WarnContext(ctx, "poll failed", "error", out.Err, "attempts", out.Attempts)
		return finish(pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE, out.Err, false)
	}
	for _, s := range out.Signals {
		w.metrics.signals.WithLabelValues(c.Type, s.GetChange()).Inc()
	}
	w.metrics.duplicates.WithLabelValues(c.Type).Add(float64(out.Duplicates))
	log.InfoContext(ctx, "poll done", "fetched", out.Fetched, "published", len(out.Signals),
		"failed_items", len(out.Failed), "not_modified", out.NotModified, "token", lease.Token)
	return finish(pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS, nil, false)
}

func (w *Worker) acquire(ctx context.Context, c config.Connector, claim store.Claim) (*store.Lease, store.State, error) {
	ctx, span := w.tracer.Start(ctx, "lease acquire", trace.WithAttributes(attribute.String("pollgrid.connector", c.Name)))
	defer span.End()
	lease, state, err := w.store.Acquire(ctx, c.Name, w.opts.ID, c.LeaseTTL, claim)
	if errors.Is(err, store.ErrPaused) || errors.Is(err, store.ErrWaiting) {
		return nil, state, err // not a failure: nothing to do yet
	}
	if err != nil {
		bus.RecordError(span, err)
		return nil, state, err
	}
	span.SetAttributes(attribute.Int64("pollgrid.fencing_token", int64(lease.Token)))
	return lease, state, nil
}

func (w *Worker) commit(ctx context.Context, lease *store.Lease, c store.Commit) error {
	// Commit even when the poll's context was abandoned: a failure record
	// and the lease release are worth the round trip.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	ctx, span := w.tracer.Start(ctx, "state commit", trace.WithAttributes(
		attribute.Int64("pollgrid.fencing_token", int64(lease.Token)), attribute.Int("pollgrid.seen_items", len(c.Seen))))
	defer span.End()
	if err := w.store.Commit(ctx, lease, c); err != nil {
		bus.RecordError(span, err)
		return err
	}
	return nil
}

// countMissed counts the whole intervals that passed since the connector
// last became due (its last poll, or the end of a wait the upstream asked
// for) without a poll.
func (w *Worker) countMissed(c config.Connector, st store.State) {
	since := st.LastPoll
	if st.NotBefore.After(since) {
		since = st.NotBefore
	}
	if st.ResumedAt.After(since) { // a pause misses nothing
		since = st.ResumedAt
	}
	if since.IsZero() {
		return
	}
	if missed := int(time.Since(since)/c.Interval) - 1; missed > 0 {
		w.metrics.missed.WithLabelValues(c.Type).Add(float64(missed))
	}
}

func numDelivered(meta *jetstream.MsgMetadata) uint64 {
	if meta == nil {
		return 1
	}
	return meta.NumDelivered
}
