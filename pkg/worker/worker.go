// Package worker takes ticks from the one shared TICKS consumer and runs each
// poll under the connector's Redis lease: acquire (fencing token + state in
// one round trip), poll through package poll, commit fenced state, ack the
// tick, report: two Redis round trips a poll. Workers are stateless; add
// replicas to scale. What a worker keeps of a connector's state between
// its polls (store.Carried: the state its last commit wrote) only spares
// the next acquire sending it back, and only while no one else took the
// lease or wrote the state since; otherwise the state is read.
//
// A worker reads each connector's definition from the catalog (NATS KV)
// when a tick first names it, resolves its ${VAR} from its own
// environment, and keeps a bounded cache of the connectors it polls
// (definitions.go): it never holds the whole set.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/pollgrid/pollgrid/pkg/budget"
	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/clock"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/poll"
	"github.com/pollgrid/pollgrid/pkg/redact"
	"github.com/pollgrid/pollgrid/pkg/store"
	"github.com/pollgrid/pollgrid/pkg/telemetry"
	"github.com/pollgrid/pollgrid/pkg/upstream"
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
	// Propagator reads a tick's trace context from its headers, and writes
	// the poll's into every signal's headers and into its report; default
	// W3C trace context.
	Propagator propagation.TextMapPropagator
	Redactor   *redact.Redactor
	// Budgets draws the requests of connectors that name a budget from it,
	// in Redis, shared with every worker; nil leaves budgets undrawn (a
	// test's worker, which says so in its log when a connector has one).
	Budgets *budget.Limiter
	// Env resolves the ${VAR} references of the definitions the worker
	// reads: the worker's own environment (secrets stay where they are
	// used); nil has no variables.
	Env config.Env
	// DefinitionsCache is how many connectors the worker keeps read and
	// built (WORKER_DEFINITIONS_CACHE); default DefaultDefinitionsCache.
	// A connector past it is read from the catalog again at its next tick.
	DefinitionsCache int
	// AdaptEvery is the least time between two requests of an adaptive
	// connector to change its schedule (WORKER_ADAPT_EVERY): its schedule
	// changes at most this often; default 2m.
	AdaptEvery time.Duration
	// Now is the clock of the adaptive intervals' requests; default
	// time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.ID == "" {
		o.ID = telemetry.InstanceID()
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
	if o.DefinitionsCache <= 0 {
		o.DefinitionsCache = DefaultDefinitionsCache
	}
	if o.AdaptEvery <= 0 {
		o.AdaptEvery = DefaultAdaptEvery
	}
	if o.Now == nil {
		o.Now = time.Now
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
	store    *store.Store // the admin verbs' resets
	leases   leases
	registry *connector.Registry
	runner   *poll.Runner
	tracer   trace.Tracer
	metrics  *metrics
	log      *slog.Logger
	reports  *reporter
	defs     *definitions
	// adapts takes the adaptive connectors' requests to the scheduler.
	adapts adaptPublisher
	// noBudgets warns once that connectors on a budget draw from none.
	noBudgets sync.Once
}

// instance is one connector's definition as this worker read it. Its
// connector is built at its first poll, not when it is read, and kept
// while the definition's type and config stay the same.
type instance struct {
	cfg   config.Connector
	built *built
	// revision is the catalog revision cfg was read from.
	revision uint64
	// err, when set, is why this worker cannot poll the definition (it
	// fails its check, or names a ${VAR} unset here): its polls fail
	// with it, and cfg holds only the name (and the tick's type).
	err error
}

// built is a connector built once, at first use.
type built struct {
	once sync.Once
	conn connector.Connector
	err  error
	// carried is the state this worker's last commit of the connector
	// left, for its next acquire (store.Carried); nil for none. It goes
	// with the connector: kept while the definition's type and config
	// stay, dropped with it from the definitions cache.
	carried atomic.Pointer[store.Carried]
}

// carried is the state the worker carries for in's next acquire, if any.
func (in *instance) carried() *store.Carried {
	if in.built == nil {
		return nil
	}
	return in.built.carried.Load()
}

// carry keeps c (nil: nothing) for in's next acquire.
func (in *instance) carry(c *store.Carried) {
	if in.built != nil {
		in.built.carried.Store(c)
	}
}

// connector returns the instance's connector, building it the first time.
func (w *Worker) connector(in *instance) (connector.Connector, error) {
	in.built.once.Do(func() {
		deps := connector.Deps{HTTP: w.opts.HTTP, Logger: w.opts.Logger}
		in.built.conn, in.built.err = w.registry.New(in.cfg.Type, in.cfg.Config, deps)
		if in.built.err != nil {
			in.built.err = fmt.Errorf("build connector %s: %w", in.cfg.Name, w.opts.Redactor.Error(in.built.err))
		}
	})
	return in.built.conn, in.built.err
}

// New returns a worker that polls the connectors cat defines.
func New(js jetstream.JetStream, st *store.Store, registry *connector.Registry, cat DefinitionReader, opts Options) (*Worker, error) {
	opts = opts.withDefaults()
	if err := opts.Filter.Validate(); err != nil {
		return nil, err
	}
	if cat == nil {
		return nil, errors.New("worker: no catalog to read connector definitions from")
	}
	defs, err := newDefinitions(cat, opts.Env, registry, opts.Redactor, opts.DefinitionsCache)
	if err != nil {
		return nil, err
	}
	tracer := opts.Tracer.Tracer("github.com/pollgrid/pollgrid/pkg/worker")
	w := &Worker{
		opts:     opts,
		js:       js,
		store:    st,
		leases:   st,
		registry: registry,
		tracer:   tracer,
		metrics:  newMetrics(opts.Registerer),
		log:      opts.Logger.With("worker", opts.ID),
		defs:     defs,
		adapts:   js.Conn(),
	}
	defs.declare = w.declareBudget
	w.reports = newReporter(js, opts.ID, w.log, w.metrics, tracer, opts.Propagator)
	w.runner = &poll.Runner{
		Publisher: &bus.SignalPublisher{JS: js, Tracer: tracer, Propagator: opts.Propagator},
		Seen:      st,
		Redactor:  opts.Redactor,
	}
	types := opts.Filter.Types
	if len(types) == 0 {
		types = registry.Types()
	}
	for _, t := range types {
		w.metrics.initType(t)
	}
	return w, nil
}

// declareBudget starts a budget's metrics at zero when the worker first
// meets it (and again when it reads it anew: that costs nothing).
func (w *Worker) declareBudget(name string) {
	if w.opts.Budgets != nil {
		w.opts.Budgets.Declare([]string{name})
	}
}

func sameConnector(a, b config.Connector) bool {
	return a.Type == b.Type && string(a.Config) == string(b.Config)
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
			_ = clock.Sleep(ctx, time.Second) // a stop ends the wait and then the loop
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
