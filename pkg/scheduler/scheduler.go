// Package scheduler keeps one JetStream message schedule per enabled
// connector in the TICKS stream, in line with the config: NATS itself then
// fires every tick, at a fixed phase within each connector's interval (see
// Spec), whether or not a scheduler runs. The scheduler installs, changes and
// removes schedules, and sends a new or overdue connector its first tick at
// once rather than an interval later.
//
// Keeping the schedules is idempotent, so two replicas doing it at once do
// no harm; still, only the replica holding the Redis leader lease does it, so
// that replicas with different configs (a reload half done) do not undo each
// other. The leader also re-reads the installed schedules every Resync, which
// repairs a TICKS stream that was lost or recreated.
package scheduler

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/leader"
	"github.com/pollgrid/pollgrid/pkg/store"
	"github.com/pollgrid/pollgrid/pkg/telemetry"
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
	// Resync is how often the leader compares the installed schedules with
	// the config and repairs any difference; default 5m.
	Resync     time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

func (o Options) withDefaults() Options {
	if o.ID == "" {
		o.ID = telemetry.InstanceID()
	}
	if o.LeaderTTL <= 0 {
		o.LeaderTTL = 10 * time.Second
	}
	if o.Resync <= 0 {
		o.Resync = 5 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	return o
}

// Scheduler keeps the connectors' message schedules.
type Scheduler struct {
	opts  Options
	js    jetstream.JetStream
	store *store.Store
	// election holds the leader lease among the replicas.
	election *leader.Elector
	log      *slog.Logger
	metrics  *metrics
	reload   chan *config.Config
	cfg      *config.Config
	// current is the config for the admin verbs, which run on other
	// goroutines than Run (cfg is Run's own).
	current atomic.Pointer[config.Config]
	// resync asks Run to sync now (an operator paused or resumed a
	// connector, maybe on another replica).
	resync chan struct{}

	leader      atomic.Bool // read by Leader from other goroutines
	leaderSince time.Time   // last successful leader renewal
}

// New returns a scheduler for cfg, electing its leader with election.
func New(js jetstream.JetStream, st *store.Store, election *leader.Elector, cfg *config.Config, opts Options) *Scheduler {
	opts = opts.withDefaults()
	s := &Scheduler{
		opts:     opts,
		js:       js,
		store:    st,
		election: election,
		log:      opts.Logger.With("scheduler", opts.ID),
		metrics:  newMetrics(opts.Registerer),
		reload:   make(chan *config.Config, 1),
		cfg:      cfg,
		resync:   make(chan struct{}, 1),
	}
	s.current.Store(cfg)
	return s
}

// Apply hands a new, validated config to the running scheduler; the leader
// brings the schedules in line with it at once.
func (s *Scheduler) Apply(cfg *config.Config) {
	s.current.Store(cfg)
	for {
		select {
		case s.reload <- cfg:
			return
		case <-s.reload: // drop an older pending config
		}
	}
}

// Run keeps the schedules until ctx ends, then resigns leadership. The
// schedules stay installed: NATS goes on firing ticks without a scheduler.
func (s *Scheduler) Run(ctx context.Context) error {
	s.warnIgnoredJitter()
	leaderTick := time.NewTicker(s.opts.LeaderTTL / 3)
	defer leaderTick.Stop()
	// The sync timer runs only while this replica leads: at once when it
	// becomes leader or the config changes, then every Resync, sooner
	// after a failed attempt.
	syncTimer := time.NewTimer(time.Hour)
	syncTimer.Stop()
	defer syncTimer.Stop()
	if s.campaign(ctx) {
		syncTimer.Reset(0)
	}
	for {
		select {
		case <-ctx.Done():
			if s.leader.Load() {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
				_ = s.election.Resign(rctx, LeaderRole, s.opts.ID)
				cancel()
			}
			s.log.Info("scheduler stopped")
			return nil
		case <-leaderTick.C:
			if s.campaign(ctx) {
				syncTimer.Reset(0)
			}
		case cfg := <-s.reload:
			s.cfg = cfg
			s.warnIgnoredJitter()
			if s.leader.Load() {
				syncTimer.Reset(0)
			}
		case <-s.resync:
			if s.leader.Load() {
				syncTimer.Reset(0)
			}
		case <-syncTimer.C:
			if !s.leader.Load() {
				continue
			}
			next := s.opts.Resync
			if err := s.sync(ctx); err != nil && ctx.Err() == nil {
				s.metrics.errors.WithLabelValues("nats", "schedules").Inc()
				s.log.Warn("keeping the schedules failed; trying again", "error", err)
				next = min(next, 5*time.Second)
			}
			syncTimer.Reset(next)
		}
	}
}

// campaign takes or renews the leader lease and reports whether this
// replica has just become leader. A leader that cannot renew steps down
// before its lease can expire, so two leaders never overlap.
func (s *Scheduler) campaign(ctx context.Context) (elected bool) {
	ok, err := s.election.Acquire(ctx, LeaderRole, s.opts.ID, s.opts.LeaderTTL)
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
		return true
	case ok:
		s.leaderSince = time.Now()
	case s.leader.Load():
		s.stepDown("another replica holds the leader lease")
	}
	return false
}

func (s *Scheduler) stepDown(why string) {
	s.leader.Store(false)
	s.metrics.leader.Set(0)
	s.metrics.scheduled.Set(0)
	s.log.Warn("stepped down as leader", "reason", why)
}

func (s *Scheduler) warnIgnoredJitter() {
	var names []string
	for _, c := range s.cfg.Enabled() {
		if c.Jitter > 0 {
			names = append(names, c.Name)
		}
	}
	if len(names) > 0 {
		s.log.Warn("jitter is ignored: each connector's ticks keep a fixed phase within its interval, derived from its name; remove the field",
			"connectors", names)
	}
}

// Leader reports whether this replica keeps the schedules now (tests, /readyz).
func (s *Scheduler) Leader() bool { return s.leader.Load() }
