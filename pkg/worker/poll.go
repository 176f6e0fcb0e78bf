package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pollgrid/pollgrid/pkg/budget"
	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/failpoint"
	"github.com/pollgrid/pollgrid/pkg/poll"
	"github.com/pollgrid/pollgrid/pkg/store"
	"github.com/pollgrid/pollgrid/pkg/upstream"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// One poll under the connector's lease, step by step: refuse a definition
// this worker cannot poll, build the connector, claim the lease (held,
// paused, waiting), refuse a crash loop, poll under heartbeat, commit;
// then the report says how it went.

// leases is the lease store a poll runs under: *store.Store.
type leases interface {
	AcquireCarried(ctx context.Context, connector, owner string, ttl time.Duration, claim store.Claim,
		carried *store.Carried) (*store.Lease, store.State, error)
	Renew(ctx context.Context, l *store.Lease) error
	Commit(ctx context.Context, l *store.Lease, c store.Commit) error
}

// result is how a poll ended: its outcome, the error that says why (nil
// on success), and, when the tick should come back later rather than be
// acked, after how long.
type result struct {
	outcome pollgridv1.PollOutcome
	err     error
	retryIn time.Duration
}

func succeeded() result { return result{outcome: pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS} }
func failed(err error) result {
	return result{outcome: pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE, err: err}
}
func skipped(err error) result {
	return result{outcome: pollgridv1.PollOutcome_POLL_OUTCOME_SKIPPED, err: err}
}

// poll runs one poll of in under its lease and returns its report, with
// the poll's metrics recorded. A tick's poll keeps the tick in progress
// while it runs, and scheduled is the interval its tick fires at; a
// triggered one has no tick (nil, 0).
func (w *Worker) poll(ctx context.Context, in *instance, claim store.Claim, tickProgress progress,
	scheduled time.Duration) (*pollgridv1.PollReport, result) {
	c := in.cfg
	started := time.Now()
	report := &pollgridv1.PollReport{
		Connector: c.Name, ConnectorType: c.Type, Worker: w.opts.ID,
		StartedAt: timestamppb.New(started),
	}
	res := w.pollSteps(ctx, in, claim, tickProgress, scheduled, report)
	took := time.Since(started)
	report.Outcome = res.outcome
	report.Duration = durationpb.New(took)
	if res.err != nil {
		report.Error = w.opts.Redactor.String(res.err.Error())
	}
	w.metrics.polls.WithLabelValues(c.Type, bus.OutcomeName(res.outcome)).Inc()
	if res.outcome != pollgridv1.PollOutcome_POLL_OUTCOME_SKIPPED {
		w.metrics.observeDuration(ctx, c.Type, took)
	}
	return report, res
}

// pollSteps is the poll's route; each step that ends it says how.
func (w *Worker) pollSteps(ctx context.Context, in *instance, claim store.Claim, tickProgress progress, scheduled time.Duration,
	report *pollgridv1.PollReport) result {
	c := in.cfg
	if in.err != nil {
		w.log.ErrorContext(ctx, "connector definition cannot be polled", "error", in.err)
		return failed(in.err)
	}
	conn, err := w.connector(in)
	if err != nil {
		w.log.ErrorContext(ctx, "connector cannot be built", "error", err)
		return failed(err)
	}
	lease, state, refused := w.claim(ctx, in, claim)
	if lease == nil {
		return refused
	}
	report.FencingToken = lease.Token
	if state.Attempts > maxAttempts {
		w.countMissed(c, state)
		return w.refuseCrashLoop(ctx, in, lease, state)
	}
	out, deferred := w.pollUnderHeartbeat(ctx, c, conn, lease, state, tickProgress)
	if deferred != nil {
		// Counted once the connector is polled: its last poll stays.
		return w.deferPoll(ctx, in, lease, state, out, deferred)
	}
	w.countMissed(c, state)
	w.observe(ctx, c, out, state, report)
	ask := w.adapt(in, state, &out, scheduled)
	return w.commitOutcome(ctx, in, lease, out, report, ask)
}

// claim takes the connector's lease, or says why there is no poll: the
// lease is held (the tick comes back when it expires), the connector is
// paused or waits (the reason names whose wait), or Redis failed.
func (w *Worker) claim(ctx context.Context, in *instance, claim store.Claim) (*store.Lease, store.State, result) {
	c := in.cfg
	lease, state, err := w.acquire(ctx, in, claim)
	var held *store.LeaseHeldError
	switch {
	case err == nil:
		return lease, state, result{}
	case errors.As(err, &held):
		w.metrics.contention.WithLabelValues(c.Type).Inc()
		w.log.InfoContext(ctx, "lease held by another worker; tick retried after it expires", "remaining", held.Remaining.String())
		res := skipped(err)
		res.retryIn = held.Remaining + 100*time.Millisecond
		return nil, state, res
	case errors.Is(err, store.ErrPaused):
		return nil, state, skipped(pausedReason(state))
	case errors.Is(err, store.ErrWaiting):
		return nil, state, skipped(waitReason(state))
	default:
		w.metrics.errors.WithLabelValues("redis", "acquire").Inc()
		w.log.ErrorContext(ctx, "acquire lease failed", "error", err)
		res := failed(err)
		res.retryIn = time.Second
		return nil, state, res
	}
}

// refuseCrashLoop fails a connector whose last polls all began fetching
// and never committed: each time, the worker polling it died. Polling it
// again would likely kill this one too; the failure is committed like any
// other, so it backs off, and says why.
func (w *Worker) refuseCrashLoop(ctx context.Context, in *instance, lease *store.Lease, state store.State) result {
	c := in.cfg
	w.metrics.crashLoops.WithLabelValues(c.Type).Inc()
	err := fmt.Errorf("poll %s: its last %d polls began and never finished (their workers died or were killed while polling it): "+
		"not polling it this time; it backs off like any failing connector (check the workers' logs and the connector's upstream)",
		c.Name, state.Attempts-1)
	w.log.ErrorContext(ctx, "connector crash loop", "error", err)
	now := time.Now()
	if cerr := w.commit(ctx, in, lease, store.Commit{State: poll.Failed(state, c, err, now, time.Time{}), Now: now}); cerr != nil {
		w.log.ErrorContext(ctx, "recording the crash loop failed", "error", cerr)
	}
	return failed(err)
}

// pollUnderHeartbeat runs the poll while a heartbeat keeps the lease and
// the tick alive; a lost lease cancels it. A connector on a budget draws
// each request from it (budget.Share); a poll that failed because its
// budget was spent comes back with the deferral.
func (w *Worker) pollUnderHeartbeat(ctx context.Context, c config.Connector, conn connector.Connector, lease *store.Lease, state store.State,
	tickProgress progress) (poll.Outcome, *budget.DeferredError) {
	pollCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var share *budget.Share
	if c.Budget.Name != "" && w.opts.Budgets != nil {
		share = w.opts.Budgets.Share(c.Budget, state.LastPoll, time.Now(), w.log)
		pollCtx = upstream.WithBudget(pollCtx, share)
	}
	hb := w.startHeartbeat(pollCtx, cancel, lease, tickProgress)
	out := w.runner.Run(pollCtx, c, conn, state, hb.guard)
	hb.stop()
	if share != nil && out.Err != nil && share.Deferred() != nil {
		return out, share.Deferred()
	}
	var panicked *poll.PanicError
	if errors.As(out.Err, &panicked) {
		w.log.ErrorContext(ctx, "connector panicked; the poll failed", "panic", w.opts.Redactor.String(fmt.Sprint(panicked.Value)),
			"stack", string(panicked.Stack))
		w.metrics.panics.WithLabelValues(c.Type).Inc()
	}
	return out, nil
}

// deferPoll ends a poll its budget deferred: skipped, not failed. The
// state stays as it was (no failure counted, no back-off, the last poll
// unmoved, so that the connector's turn on the budget comes sooner), but
// for a wait the upstream asked for on the way; the lease is released.
// Logged at debug level: the report says it, and a busy budget defers
// many polls a second.
func (w *Worker) deferPoll(ctx context.Context, in *instance, lease *store.Lease, state store.State, out poll.Outcome,
	deferred *budget.DeferredError) result {
	next := state
	if asked := out.Commit.State; asked.NotBeforeBy == store.WaitUpstream && asked.NotBefore.After(next.NotBefore) {
		next.NotBefore, next.NotBeforeBy = asked.NotBefore, store.WaitUpstream
	}
	if err := w.commit(ctx, in, lease, store.Commit{State: next, Now: time.Now()}); err != nil {
		w.log.WarnContext(ctx, "releasing a deferred poll's lease failed (it expires)", "error", err)
	}
	w.log.DebugContext(ctx, "poll deferred by its budget", "budget", deferred.Budget, "until", deferred.Until)
	return skipped(deferred)
}

// observe counts what the poll fetched, published and failed, in the
// report and the metrics, and logs the items that failed.
func (w *Worker) observe(ctx context.Context, c config.Connector, out poll.Outcome, state store.State, report *pollgridv1.PollReport) {
	report.ItemsFetched = int64(out.Fetched)
	report.ItemsPublished = int64(len(out.Signals) - out.Duplicates)
	report.ItemsFailed = int64(len(out.Failed))
	report.NotModified = out.NotModified
	for _, f := range out.Failed[:len(out.Failed)-out.Untracked] {
		w.log.WarnContext(ctx, "item failed", "item", f.ID, "error", w.opts.Redactor.String(f.Err.Error()))
	}
	w.metrics.itemsFailed.WithLabelValues(c.Type).Add(float64(len(out.Failed)))
	w.seenCap(ctx, c, out, state)
}

// commitOutcome writes the poll's state under the lease (a failed poll's
// too: its failure and back-off) and says how the poll ended. An adaptive
// connector's request to the scheduler (ask, nil for none) goes once the
// commit that records it is written.
func (w *Worker) commitOutcome(ctx context.Context, in *instance, lease *store.Lease, out poll.Outcome, report *pollgridv1.PollReport,
	ask *adaptRequest) result {
	c := in.cfg
	if out.Err == nil && len(out.Signals) > 0 {
		failpoint.Hit(failpoint.AfterPublish)
	}
	if err := w.commit(ctx, in, lease, out.Commit); err != nil {
		if errors.Is(err, store.ErrFenced) {
			w.metrics.fenced.WithLabelValues(c.Type).Inc()
		} else {
			w.metrics.errors.WithLabelValues("redis", "commit").Inc()
		}
		w.log.ErrorContext(ctx, "commit state failed; the next poll starts from the previous state", "error", err)
		return failed(err)
	}
	if ask != nil {
		w.askAdapt(ctx, ask)
	}
	if out.Err != nil {
		report.RateLimited = rateLimited(out.Err)
		if report.RateLimited {
			w.metrics.rateLimited.WithLabelValues(c.Type).Inc()
		}
		w.log.WarnContext(ctx, "poll failed", "error", out.Err, "attempts", out.Attempts)
		return failed(out.Err)
	}
	for _, s := range out.Signals {
		w.metrics.signals.WithLabelValues(c.Type, s.GetChange()).Inc()
	}
	w.metrics.duplicates.WithLabelValues(c.Type).Add(float64(out.Duplicates))
	w.log.InfoContext(ctx, "poll done", "fetched", out.Fetched, "published", len(out.Signals),
		"failed_items", len(out.Failed), "not_modified", out.NotModified, "token", lease.Token)
	return succeeded()
}

// acquire takes the lease with the state this worker's last commit of the
// connector left, if it has it: then, unless someone else wrote the state
// since, Redis sends back the token alone (store.Carried).
func (w *Worker) acquire(ctx context.Context, in *instance, claim store.Claim) (*store.Lease, store.State, error) {
	c := in.cfg
	ctx, span := w.tracer.Start(ctx, "lease acquire", trace.WithAttributes(attribute.String("pollgrid.connector", c.Name)))
	defer span.End()
	lease, state, err := w.leases.AcquireCarried(ctx, c.Name, w.opts.ID, c.LeaseTTL, claim, in.carried())
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

// commit writes c under lease, and keeps what it left for the next
// acquire; a failed commit (fenced, or its answer lost) keeps nothing.
func (w *Worker) commit(ctx context.Context, in *instance, lease *store.Lease, c store.Commit) error {
	// Commit even when the poll's context was abandoned: a failure record
	// and the lease release are worth the round trip.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	ctx, span := w.tracer.Start(ctx, "state commit", trace.WithAttributes(
		attribute.Int64("pollgrid.fencing_token", int64(lease.Token)), attribute.Int("pollgrid.seen_items", len(c.Seen))))
	defer span.End()
	err := w.leases.Commit(ctx, lease, c)
	in.carry(lease.Carry()) // nil when it failed
	if err != nil {
		bus.RecordError(span, err)
		return err
	}
	return nil
}

// countMissed counts the whole intervals that passed since the connector
// last became due (its last poll, or the end of a wait the upstream asked
// for) without a poll. An adaptive connector is due at its effective
// interval; one on a budget expects no more than its fair share: what it
// waits for its turn is not missed.
func (w *Worker) countMissed(c config.Connector, st store.State) {
	interval := c.ScheduledInterval(st.EffectiveInterval)
	if c.Budget.Name != "" {
		interval = max(interval, c.Budget.Fair())
	}
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
	if missed := int(time.Since(since)/interval) - 1; missed > 0 {
		w.metrics.missed.WithLabelValues(c.Type).Add(float64(missed))
	}
}
