// Package worker takes ticks from the one shared TICKS consumer and runs each
// poll under the connector's Redis lease: acquire (fencing token + state in
// one round trip), poll through package poll, commit fenced state, ack the
// tick, report. Workers are stateless; add replicas to scale.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/poll"
	"github.com/pollgrid/pollgrid/pkg/redact"
	"github.com/pollgrid/pollgrid/pkg/store"
	"github.com/pollgrid/pollgrid/pkg/telemetry"
	"github.com/pollgrid/pollgrid/pkg/upstream"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// Options configure a worker. Zero values take the defaults.
type Options struct {
	// ID names this worker instance in leases and reports; default host-pid.
	ID string
	// Concurrency bounds the polls running at once (WORKER_CONCURRENCY); default 4.
	Concurrency int
	// AckWait is how long a tick may go without an ack or an in-progress
	// signal before JetStream redelivers it to another worker; default 2s.
	// With the lease TTL it bounds how long a killed worker's connectors
	// wait: the worker signals progress four times per AckWait while a poll
	// runs, so a short AckWait costs only a small message per second per
	// poll that runs that long.
	AckWait time.Duration
	// Grace is how long in-flight polls may run after shutdown begins before
	// they are abandoned (lease released, tick redelivered); default 20s.
	Grace time.Duration
	// Filter restricts the worker to some types or names; default all.
	Filter bus.Filter
	// HTTP is the client connectors use; default upstream.NewClient with
	// as many idle connections per host as Concurrency (the services pass
	// one that also traces each request).
	HTTP       *http.Client
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Tracer     trace.TracerProvider
	Propagator propagation.TextMapPropagator
	Redactor   *redact.Redactor
}

func (o Options) withDefaults() Options {
	if o.ID == "" {
		host, _ := os.Hostname()
		o.ID = host + "-" + strconv.Itoa(os.Getpid())
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.AckWait <= 0 {
		o.AckWait = 2 * time.Second
	}
	if o.Grace <= 0 {
		o.Grace = 20 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.Tracer == nil {
		o.Tracer = noop.NewTracerProvider()
	}
	if o.Propagator == nil {
		o.Propagator = propagation.TraceContext{}
	}
	if o.HTTP == nil {
		o.HTTP = upstream.NewClient(upstream.Options{IdleConnsPerHost: o.Concurrency})
	}
	return o
}

// Worker consumes ticks and runs polls.
type Worker struct {
	opts     Options
	js       jetstream.JetStream
	store    *store.Store
	registry *connector.Registry
	runner   *poll.Runner
	tracer   trace.Tracer
	metrics  *metrics
	log      *slog.Logger
	reports  *reporter

	mu         sync.RWMutex
	connectors map[string]*instance
}

// instance is one configured connector. Its connector is built at its
// first tick, not when the config is applied, so that a worker with
// 100,000 connectors starts at once and builds only those it polls.
type instance struct {
	cfg  config.Connector
	conn func() (connector.Connector, error)
}

// New returns a worker for cfg.
func New(js jetstream.JetStream, st *store.Store, registry *connector.Registry, cfg *config.Config, opts Options) (*Worker, error) {
	opts = opts.withDefaults()
	if err := opts.Filter.Validate(); err != nil {
		return nil, err
	}
	tracer := opts.Tracer.Tracer("github.com/pollgrid/pollgrid/pkg/worker")
	w := &Worker{
		opts:     opts,
		js:       js,
		store:    st,
		registry: registry,
		tracer:   tracer,
		metrics:  newMetrics(opts.Registerer),
		log:      opts.Logger.With("worker", opts.ID),
	}
	w.reports = newReporter(js, opts.ID, w.log, w.metrics)
	w.runner = &poll.Runner{
		Publisher: &bus.SignalPublisher{JS: js, Tracer: tracer, Propagator: opts.Propagator},
		Seen:      st,
		Redactor:  opts.Redactor,
	}
	if err := w.Apply(cfg); err != nil {
		return nil, err
	}
	return w, nil
}

// Apply swaps in a new config (hot reload). Unchanged connectors keep their
// instance (and the connector built for it). The config was validated when
// it was loaded, types included, so building a connector later fails only
// where its type's checks and its constructor disagree: that poll fails and
// says so.
func (w *Worker) Apply(cfg *config.Config) error {
	deps := connector.Deps{HTTP: w.opts.HTTP, Logger: w.opts.Logger}
	w.mu.RLock()
	old := w.connectors
	w.mu.RUnlock()
	next := make(map[string]*instance, len(cfg.Connectors))
	types := map[string]bool{}
	for _, c := range cfg.Connectors {
		types[c.Type] = true
		if prev, ok := old[c.Name]; ok && sameConnector(prev.cfg, c) {
			next[c.Name] = &instance{cfg: c, conn: prev.conn}
			continue
		}
		next[c.Name] = &instance{cfg: c, conn: sync.OnceValues(func() (connector.Connector, error) {
			conn, err := w.registry.New(c.Type, c.Config, deps)
			if err != nil {
				return nil, fmt.Errorf("build connector %s: %w", c.Name, w.opts.Redactor.Error(err))
			}
			return conn, nil
		})}
	}
	w.mu.Lock()
	w.connectors = next
	w.mu.Unlock()
	for t := range types {
		w.metrics.initType(t)
	}
	return nil
}

func sameConnector(a, b config.Connector) bool {
	return a.Type == b.Type && string(a.Config) == string(b.Config)
}

func (w *Worker) lookup(name string) (*instance, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	in, ok := w.connectors[name]
	return in, ok
}

// Consumer creates (or updates) the durable consumer this worker shares
// with every worker of the same filter.
func (w *Worker) Consumer(ctx context.Context) (jetstream.Consumer, error) {
	cc := jetstream.ConsumerConfig{
		Durable:        w.opts.Filter.ConsumerName(),
		Description:    "pollgrid workers: one shared queue",
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        w.opts.AckWait,
		MaxDeliver:     -1,
		FilterSubjects: w.opts.Filter.Subjects(),
	}
	cons, err := w.js.CreateOrUpdateConsumer(ctx, bus.TicksStream, cc)
	if err != nil {
		return nil, fmt.Errorf("create consumer %s on %s (workers restricted by type or name must partition the types: "+
			"a work-queue stream refuses overlapping consumers): %w", cc.Durable, bus.TicksStream, err)
	}
	return cons, nil
}

// Run takes ticks until ctx ends, then lets in-flight polls finish within
// the grace period and returns.
func (w *Worker) Run(ctx context.Context) error {
	cons, err := w.Consumer(ctx)
	if err != nil {
		return err
	}
	reportCtx, stopReports := context.WithCancel(context.WithoutCancel(ctx))
	reportsDone := make(chan struct{})
	go func() { defer close(reportsDone); w.reports.run(reportCtx) }()
	defer func() { stopReports(); <-reportsDone }()
	// Polls run on their own context so that shutdown can give them a grace
	// period instead of cutting them off at once.
	pollCtx, abandon := context.WithCancelCause(context.WithoutCancel(ctx))
	defer abandon(nil)
	slots := make(chan struct{}, w.opts.Concurrency)
	w.metrics.concurrency.Set(float64(w.opts.Concurrency))
	// Concurrency long-lived goroutines run the polls: a fresh goroutine
	// per tick would grow its stack anew on every poll.
	ticks := make(chan jetstream.Msg)
	var pollers sync.WaitGroup
	for range w.opts.Concurrency {
		pollers.Go(func() {
			for msg := range ticks {
				w.handle(pollCtx, msg)
				<-slots
			}
		})
	}
	w.log.Info("worker started", "consumer", w.opts.Filter.ConsumerName(), "concurrency", w.opts.Concurrency)
	for ctx.Err() == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		// Take as many ticks as there are free slots, so that a busy worker
		// never holds ticks another worker could run now.
		free := 1
		for free < cap(slots) {
			select {
			case slots <- struct{}{}:
				free++
				continue
			default:
			}
			break
		}
		fetchCtx, cancelFetch := context.WithTimeout(ctx, 2*time.Second)
		batch, err := cons.Fetch(free, jetstream.FetchContext(fetchCtx))
		got := 0
		if err == nil {
			for msg := range batch.Messages() {
				got++
				ticks <- msg
			}
			err = batch.Error()
		}
		cancelFetch()
		for ; got < free; got++ {
			<-slots
		}
		if err != nil && ctx.Err() == nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			w.metrics.errors.WithLabelValues("nats", "fetch").Inc()
			w.log.Warn("fetch ticks failed", "error", err)
			if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
				// The TICKS stream was recreated (or the consumer
				// deleted by hand): make it again.
				if c, cerr := w.Consumer(ctx); cerr == nil {
					cons = c
				}
			}
			sleepCtx(ctx, time.Second)
		}
	}
	close(ticks)
	w.log.Info("worker stopping: waiting for in-flight polls", "grace", w.opts.Grace.String())
	done := make(chan struct{})
	go func() { pollers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(w.opts.Grace):
		abandon(errors.New("worker shutting down: grace period over"))
		<-done
	}
	return nil
}

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
	span.SetAttributes(attribute.String("pollgrid.outcome", outcomeLabel(report.GetOutcome())))
	if report.GetOutcome() == pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE {
		span.SetAttributes(attribute.String("error.type", bus.ErrorType(pollErr)))
		span.SetStatus(codes.Error, report.GetError())
	}
	if ctx.Err() != nil {
		// Abandoned at shutdown: hand the tick to another worker now
		// rather than after AckWait.
		_ = msg.Nak()
	} else if !naked {
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
		w.metrics.polls.WithLabelValues(c.Type, outcomeLabel(outcome)).Inc()
		if outcome != pollgridv1.PollOutcome_POLL_OUTCOME_SKIPPED {
			w.metrics.observeDuration(ctx, c.Type, took)
		}
		return report, naked, err
	}

	conn, err := in.conn()
	if err != nil {
		log.ErrorContext(ctx, "connector cannot be built", "error", err)
		return finish(pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE, err, false)
	}
	lease, state, err := w.acquire(ctx, c)
	var held *store.LeaseHeldError
	switch {
	case errors.As(err, &held):
		w.metrics.contention.WithLabelValues(c.Type).Inc()
		log.InfoContext(ctx, "lease held by another worker; tick retried after it expires", "remaining", held.Remaining.String())
		_ = msg.NakWithDelay(held.Remaining + 100*time.Millisecond)
		return finish(pollgridv1.PollOutcome_POLL_OUTCOME_SKIPPED, err, true)
	case err != nil:
		w.metrics.errors.WithLabelValues("redis", "acquire").Inc()
		log.ErrorContext(ctx, "acquire lease failed", "error", err)
		_ = msg.NakWithDelay(time.Second)
		return finish(pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE, err, true)
	}
	report.FencingToken = lease.Token
	if err := skipPaused(ctx, state); err != nil {
		_ = w.store.Release(context.WithoutCancel(ctx), lease)
		return finish(pollgridv1.PollOutcome_POLL_OUTCOME_SKIPPED, err, false)
	}
	w.countMissed(c, state)
	if !state.NotBefore.IsZero() && time.Now().Before(state.NotBefore) && !triggered(ctx) {
		_ = w.store.Release(context.WithoutCancel(ctx), lease)
		return finish(pollgridv1.PollOutcome_POLL_OUTCOME_SKIPPED,
			fmt.Errorf("upstream asked to wait until %s", state.NotBefore.UTC().Format(time.RFC3339)), false)
	}

	pollCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stopKeepAlive := w.keepAlive(pollCtx, cancel, lease, msg, log)
	out := w.runner.Run(pollCtx, c, conn, state)
	stopKeepAlive()

	report.ItemsFetched = int64(out.Fetched)
	report.ItemsPublished = int64(len(out.Signals))
	report.ItemsFailed = int64(len(out.Failed))
	report.NotModified = out.NotModified
	for _, f := range out.Failed {
		log.WarnContext(ctx, "item failed", "item", f.ID, "error", w.opts.Redactor.String(f.Err.Error()))
	}
	w.metrics.itemsFailed.WithLabelValues(c.Type).Add(float64(len(out.Failed)))

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
	log.InfoContext(ctx, "poll done", "fetched", out.Fetched, "published", len(out.Signals),
		"failed_items", len(out.Failed), "not_modified", out.NotModified, "token", lease.Token)
	return finish(pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS, nil, false)
}

func (w *Worker) acquire(ctx context.Context, c config.Connector) (*store.Lease, store.State, error) {
	ctx, span := w.tracer.Start(ctx, "lease acquire", trace.WithAttributes(attribute.String("pollgrid.connector", c.Name)))
	defer span.End()
	lease, state, err := w.store.Acquire(ctx, c.Name, w.opts.ID, c.LeaseTTL)
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

// keepAlive renews the lease and tells JetStream the tick is in progress,
// both four times per the shorter of the lease TTL and AckWait, so one late
// heartbeat loses neither. Nothing runs for a poll shorter than one beat
// (most of them). A failed renewal cancels the poll: another worker may own
// the connector now. stop returns once no heartbeat runs.
func (w *Worker) keepAlive(ctx context.Context, cancel context.CancelCauseFunc, lease *store.Lease, msg jetstream.Msg, log *slog.Logger) (stop func()) {
	period := min(lease.TTL, w.opts.AckWait) / 4
	var (
		mu      sync.Mutex
		stopped bool
		running sync.WaitGroup
		timer   *time.Timer
	)
	timer = time.AfterFunc(period, func() {
		mu.Lock()
		if stopped {
			mu.Unlock()
			return
		}
		running.Add(1)
		mu.Unlock()
		defer running.Done()
		if err := msg.InProgress(); err != nil {
			w.metrics.errors.WithLabelValues("nats", "in_progress").Inc()
		}
		if err := w.store.Renew(ctx, lease); err != nil {
			if ctx.Err() == nil {
				w.metrics.errors.WithLabelValues("redis", "renew").Inc()
				log.ErrorContext(ctx, "lease renewal failed: cancelling the poll", "error", err)
				cancel(fmt.Errorf("lease lost: %w", err))
			}
			return
		}
		mu.Lock()
		if !stopped {
			timer.Reset(period)
		}
		mu.Unlock()
	})
	return func() {
		mu.Lock()
		stopped = true
		timer.Stop()
		mu.Unlock()
		running.Wait()
	}
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

func outcomeLabel(o pollgridv1.PollOutcome) string {
	switch o {
	case pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS:
		return "success"
	case pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE:
		return "failure"
	case pollgridv1.PollOutcome_POLL_OUTCOME_SKIPPED:
		return "skipped"
	}
	return "unknown"
}

func numDelivered(meta *jetstream.MsgMetadata) uint64 {
	if meta == nil {
		return 1
	}
	return meta.NumDelivered
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
