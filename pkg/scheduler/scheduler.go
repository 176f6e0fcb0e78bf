// Package scheduler decides when each enabled connector is due and
// publishes its tick to the TICKS stream. Replicas elect one leader through a
// Redis lease; only the leader publishes, so polls are never doubled. Due
// times continue from each connector's stored last poll, so a restart does
// not poll everything at once.
package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/store"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// LeaderRole is the Redis leader lease the scheduler replicas share.
const LeaderRole = "scheduler"

// Options configure a scheduler. Zero values take the defaults.
type Options struct {
	// ID names this replica in the leader lease; default host-pid.
	ID string
	// LeaderTTL is the leader lease's TTL; a dead leader is replaced
	// within it. Default 10s.
	LeaderTTL time.Duration
	// StartupSpread spreads connectors that are overdue (or never polled)
	// when a leader starts, over min(interval, StartupSpread). Default 10s.
	StartupSpread time.Duration
	Logger        *slog.Logger
	Registerer    prometheus.Registerer
	Tracer        trace.TracerProvider
	Propagator    propagation.TextMapPropagator
}

func (o Options) withDefaults() Options {
	if o.ID == "" {
		host, _ := os.Hostname()
		o.ID = host + "-" + strconv.Itoa(os.Getpid())
	}
	if o.LeaderTTL <= 0 {
		o.LeaderTTL = 10 * time.Second
	}
	if o.StartupSpread <= 0 {
		o.StartupSpread = 10 * time.Second
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
	return o
}

// Scheduler publishes ticks.
type Scheduler struct {
	opts    Options
	js      jetstream.JetStream
	store   *store.Store
	tracer  trace.Tracer
	log     *slog.Logger
	metrics *metrics
	reload  chan *config.Config
	cfg     *config.Config

	queue       *queue
	leader      atomic.Bool // read by Leader from other goroutines
	leaderSince time.Time   // last successful leader renewal
}

// New returns a scheduler for cfg.
func New(js jetstream.JetStream, st *store.Store, cfg *config.Config, opts Options) *Scheduler {
	opts = opts.withDefaults()
	return &Scheduler{
		opts:    opts,
		js:      js,
		store:   st,
		tracer:  opts.Tracer.Tracer("github.com/pollgrid/pollgrid/pkg/scheduler"),
		log:     opts.Logger.With("scheduler", opts.ID),
		metrics: newMetrics(opts.Registerer),
		reload:  make(chan *config.Config, 1),
		cfg:     cfg,
		queue:   newQueue(),
	}
}

// Apply hands a new, validated config to the running scheduler: new
// connectors get scheduled, removed or disabled ones stop, changed intervals
// apply from the connector's last due time.
func (s *Scheduler) Apply(cfg *config.Config) {
	for {
		select {
		case s.reload <- cfg:
			return
		case <-s.reload: // drop an older pending config
		}
	}
}

// Run schedules until ctx ends, then resigns leadership.
func (s *Scheduler) Run(ctx context.Context) error {
	leaderTick := time.NewTicker(s.opts.LeaderTTL / 3)
	defer leaderTick.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	s.campaign(ctx)
	for {
		s.resetTimer(timer)
		select {
		case <-ctx.Done():
			if s.leader.Load() {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
				_ = s.store.ResignLeader(rctx, LeaderRole, s.opts.ID)
				cancel()
			}
			s.log.Info("scheduler stopped")
			return nil
		case <-leaderTick.C:
			s.campaign(ctx)
		case cfg := <-s.reload:
			s.cfg = cfg
			if s.leader.Load() {
				s.plan(ctx)
			}
		case <-timer.C:
			s.publishDue(ctx)
		}
	}
}

// campaign takes or renews the leader lease. A leader that cannot renew
// steps down before its lease can expire, so two leaders never overlap.
func (s *Scheduler) campaign(ctx context.Context) {
	ok, err := s.store.AcquireLeader(ctx, LeaderRole, s.opts.ID, s.opts.LeaderTTL)
	switch {
	case err != nil:
		s.metrics.errors.WithLabelValues("redis", "leader").Inc()
		s.log.Warn("leader lease renewal failed", "error", err)
		if s.leader.Load() && time.Since(s.leaderSince) > s.opts.LeaderTTL*2/3 {
			s.stepDown("cannot renew the leader lease")
		}
	case ok && !s.leader.Load():
		s.leader.Store(true)
		s.leaderSince = time.Now()
		s.metrics.leader.Set(1)
		s.log.Info("became leader")
		s.plan(ctx)
	case ok:
		s.leaderSince = time.Now()
	case s.leader.Load():
		s.stepDown("another replica holds the leader lease")
	}
}

func (s *Scheduler) stepDown(why string) {
	s.leader.Store(false)
	s.metrics.leader.Set(0)
	s.queue.Clear()
	s.metrics.scheduled.Set(0)
	s.log.Warn("stepped down as leader", "reason", why)
}

// plan brings the queue in line with the config. Connectors already
// scheduled keep their phase; new ones continue from their last poll.
func (s *Scheduler) plan(ctx context.Context) {
	wanted := map[string]config.Connector{}
	var fresh []string
	for _, c := range s.cfg.Enabled() {
		wanted[c.Name] = c
		s.metrics.published.WithLabelValues(c.Type)
		s.metrics.coalesced.WithLabelValues(c.Type)
		if _, ok := s.queue.Get(c.Name); !ok {
			fresh = append(fresh, c.Name)
		}
	}
	for name := range s.queue.byName {
		if _, ok := wanted[name]; !ok {
			s.queue.Remove(name)
			s.log.Info("connector unscheduled", "connector", name)
		}
	}
	lastPolls, err := s.store.LastPolls(ctx, fresh)
	if err != nil {
		// Without history, spreading the start is still safe.
		s.metrics.errors.WithLabelValues("redis", "last_polls").Inc()
		s.log.Warn("reading last polls failed; spreading first ticks", "error", err)
	}
	now := time.Now()
	for name, c := range wanted {
		e, ok := s.queue.Get(name)
		if !ok {
			s.queue.Set(c, s.firstDue(c, lastPolls[name], now))
			continue
		}
		if e.c.Interval != c.Interval {
			// Apply the new interval from the previous due time.
			s.queue.Set(c, e.due.Add(c.Interval-e.c.Interval))
			continue
		}
		e.c = c
	}
	s.metrics.scheduled.Set(float64(s.queue.Len()))
}

// firstDue continues from the stored last poll; an overdue or never-polled
// connector is spread over the start-up window instead of all firing at once.
func (s *Scheduler) firstDue(c config.Connector, lastPoll, now time.Time) time.Time {
	if !lastPoll.IsZero() {
		if due := lastPoll.Add(c.Interval).Add(jitter(c.Jitter)); due.After(now) {
			return due
		}
	}
	return now.Add(jitter(min(c.Interval, s.opts.StartupSpread)))
}

func (s *Scheduler) resetTimer(t *time.Timer) {
	wait := time.Hour
	if e := s.queue.Peek(); e != nil {
		wait = max(time.Until(e.due), 0)
	}
	t.Reset(wait)
}

// publishDue publishes the tick of every connector whose time has come.
func (s *Scheduler) publishDue(ctx context.Context) {
	now := time.Now()
	for e := s.queue.Peek(); e != nil && !e.due.After(now) && ctx.Err() == nil; e = s.queue.Peek() {
		c, due := e.c, e.due
		next := due.Add(c.Interval).Add(jitter(c.Jitter))
		if err := s.publish(ctx, c, due); err != nil && !bus.IsCoalesced(err) {
			// NATS is unreachable: try again shortly rather than skip a
			// whole interval.
			next = now.Add(min(time.Second, c.Interval))
		}
		if next.Before(now) {
			// The scheduler itself fell behind: do not burst to catch up.
			next = now.Add(c.Interval)
		}
		s.queue.Set(c, next)
	}
}

func (s *Scheduler) publish(ctx context.Context, c config.Connector, due time.Time) error {
	data, err := bus.EncodeTick(&pollgridv1.Tick{
		Connector: c.Name, ConnectorType: c.Type,
		DueAt: timestamppb.New(due), PublishedAt: timestamppb.Now(),
	})
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: bus.TickSubject(c.Type, c.Name), Data: data, Header: nats.Header{}}
	ctx, span := bus.StartPublishSpan(ctx, s.tracer, msg)
	defer span.End()
	s.opts.Propagator.Inject(ctx, bus.HeaderCarrier(msg.Header))
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ack, err := s.js.PublishMsg(ctx, msg)
	bus.RecordAck(span, msg, ack)
	switch {
	case err == nil:
		s.metrics.published.WithLabelValues(c.Type).Inc()
		return nil
	case bus.IsCoalesced(err):
		// The previous tick is still pending or running: this is how a slow
		// connector is polled back to back, never in parallel.
		s.metrics.coalesced.WithLabelValues(c.Type).Inc()
		span.SetAttributes(attribute.Bool("pollgrid.tick.coalesced", true))
		s.log.DebugContext(ctx, "tick coalesced", "connector", c.Name)
		return err
	default:
		bus.RecordError(span, err)
		s.metrics.errors.WithLabelValues("nats", "publish_tick").Inc()
		s.log.WarnContext(ctx, "publish tick failed", "connector", c.Name, "error", err)
		return fmt.Errorf("publish tick %s: %w", c.Name, err)
	}
}

// jitter is a uniform random duration in [0, d).
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d)))
}

// Leader reports whether this replica publishes ticks now (tests, /readyz).
func (s *Scheduler) Leader() bool { return s.leader.Load() }
