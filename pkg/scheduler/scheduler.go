// Package scheduler keeps one JetStream message schedule per enabled
// connector of the catalog (pkg/catalog) in the TICKS stream: NATS itself
// then fires every tick, at a fixed phase within each connector's interval
// (see Spec), whether or not a scheduler runs. The scheduler installs,
// changes and removes schedules as the catalog changes, and sends a new or
// overdue connector its first tick at once rather than an interval later.
//
// Keeping the schedules is idempotent, so two replicas doing it at once do
// no harm; still, only the replica holding the Redis leader lease does it,
// so that replicas whose indexes lag one another do not undo each other.
// The leader follows the catalog's changes connector by connector, and
// re-reads every installed schedule when it becomes leader and every
// Resync, which repairs a TICKS stream that was lost or recreated. An
// adaptive connector's schedule fires at the effective interval its workers
// ask for, within its bounds (adapt.go).
package scheduler

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/catalog"
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
	// Resync is how often the leader compares every installed schedule
	// with the catalog and repairs any difference; default 5m.
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
	// index is the connector catalog as it is now, kept by Catalog.Follow.
	index   *catalog.Index
	log     *slog.Logger
	metrics *metrics
	// resync asks Run to sync now (an operator paused or resumed a
	// connector, maybe on another replica).
	resync chan struct{}
	// adapts are the workers' requests for an adaptive connector's
	// interval (WatchAdapt), for Run.
	adapts chan bus.Adapt
	// effective holds the adaptive connectors' effective intervals (Run's
	// own; adapt.go): at most one per connector the index holds.
	effective map[string]adapted
	// first are the new connectors waiting for their first tick (Run's
	// own; first.go).
	first *firstTicks
	// jitterWarned: the first full sync since this replica became leader
	// warned of the connectors whose jitter is ignored (Run's own).
	jitterWarned bool
	// resyncPause is how a periodic resync yields between two pages of
	// schedules it reads (pauseForPace; tests count the calls).
	resyncPause func(ctx context.Context, took time.Duration) error

	leader      atomic.Bool // read by Leader from other goroutines
	leaderSince time.Time   // last successful leader renewal (lead's own)
}

// New returns a scheduler for the connectors of index, electing its leader
// with election. Something else keeps index in line with the catalog
// (Catalog.Follow); the scheduler only reads it.
func New(js jetstream.JetStream, st *store.Store, election *leader.Elector, index *catalog.Index, opts Options) *Scheduler {
	opts = opts.withDefaults()
	return &Scheduler{
		opts:      opts,
		js:        js,
		store:     st,
		election:  election,
		index:     index,
		log:       opts.Logger.With("scheduler", opts.ID),
		metrics:   newMetrics(opts.Registerer),
		resync:    make(chan struct{}, 1),
		adapts:    make(chan bus.Adapt, adaptQueue),
		effective: map[string]adapted{},
		first:     newFirstTicks(firstTickBurst, firstTickRate),

		resyncPause: pauseForPace,
	}
}

// changeDelay is how long the leader waits after a first change of the
// catalog before it takes the changed connectors: an apply of many writes
// them over a few milliseconds, and they are better installed together.
const changeDelay = 150 * time.Millisecond

// retryDelay is how soon a failed sync is tried again.
const retryDelay = 5 * time.Second

// Run keeps the schedules until ctx ends, then resigns leadership. The
// schedules stay installed: NATS goes on firing ticks without a scheduler.
//
// The leader syncs every schedule (a full sync) when it becomes leader,
// every Resync and when asked (pollctl resync, pause, resume); in between
// it changes only the schedules of the connectors the catalog changed. The
// periodic sync yields to the polls between the pages it reads
// (resyncPace), which makes it three times as long; every sync applies the
// changes made meanwhile between its pages (sync). The leader touches nothing before the index holds
// the whole catalog: an index still filling would have it remove the
// schedules of the connectors not read yet.
func (s *Scheduler) Run(ctx context.Context) error {
	elected := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { s.lead(ctx, elected) })

	syncTimer := time.NewTimer(time.Hour)
	syncTimer.Stop()
	defer syncTimer.Stop()
	changeTimer := time.NewTimer(time.Hour)
	changeTimer.Stop()
	defer changeTimer.Stop()
	changePending := false
	synced := s.index.Synced()
	ready := false // the index holds the whole catalog
	// inLine: a full sync succeeded since this replica became leader, so
	// the schedules follow the changes one by one.
	inLine := false
	// periodic: the sync timer is set for the periodic resync (Resync
	// after a sync that succeeded), which yields to the polls as it reads.
	periodic := false
	firstTimer := time.NewTicker(firstTickEvery)
	defer firstTimer.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait() // resigns
			s.log.Info("scheduler stopped")
			return nil
		case <-elected:
			inLine, s.jitterWarned = false, false
			// A new leader starts without effective intervals (adapt.go)
			// and without the first ticks a former term left waiting.
			clear(s.effective)
			s.dropFirstTicks()
			s.metrics.adapted.Set(0)
			if ready {
				syncTimer.Reset(0)
				periodic = false
			} else {
				s.log.Info("waiting for the connector catalog before keeping the schedules", "bucket", catalog.Bucket)
			}
		case <-synced:
			synced, ready = nil, true
			if s.leader.Load() {
				syncTimer.Reset(0)
				periodic = false
			}
		case <-s.resync:
			if s.leader.Load() && ready {
				syncTimer.Reset(0)
				periodic = false
			}
		case <-s.index.Changed():
			switch {
			case !s.leader.Load():
				s.index.TakeDirty() // the next leader's full sync covers them
			case inLine && !changePending:
				changePending = true
				changeTimer.Reset(changeDelay)
			}
			// Otherwise a full sync is coming, and takes them.
		case req := <-s.adapts:
			if !s.leader.Load() || !ready {
				continue
			}
			if err := s.adapt(ctx, req, inLine); err != nil && ctx.Err() == nil {
				s.metrics.errors.WithLabelValues("nats", "schedules").Inc()
				s.log.Warn("adapting a connector's interval failed; its next request or sync installs it",
					"connector", req.Connector, "error", err)
			}
		case <-changeTimer.C:
			changePending = false
			if !s.leader.Load() || !inLine {
				continue
			}
			if err := s.applyChanges(ctx, nil); err != nil && ctx.Err() == nil {
				// The changed connectors were taken: a full sync finds them.
				s.metrics.errors.WithLabelValues("nats", "schedules").Inc()
				s.log.Warn("changing schedules failed; syncing them all soon", "error", err)
				inLine = false
				syncTimer.Reset(retryDelay)
				periodic = false
			}
		case <-firstTimer.C:
			if !s.leader.Load() {
				s.dropFirstTicks()
				continue
			}
			if err := s.sendFirstTicks(ctx, nil); err != nil && ctx.Err() == nil {
				s.metrics.errors.WithLabelValues("nats", "first_ticks").Inc()
				s.log.Warn("sending first ticks failed; their schedules poll them", "error", err)
			}
		case <-syncTimer.C:
			if !s.leader.Load() || !ready {
				continue
			}
			next := s.opts.Resync
			err := s.sync(ctx, periodic)
			periodic = err == nil
			if err != nil {
				if ctx.Err() != nil {
					continue
				}
				s.metrics.errors.WithLabelValues("nats", "schedules").Inc()
				s.log.Warn("keeping the schedules failed; trying again", "error", err)
				next = min(next, retryDelay)
			} else {
				inLine = true
			}
			syncTimer.Reset(next)
		}
	}
}

// lead takes and renews the leader lease every LeaderTTL/3 until ctx ends,
// then resigns it, and tells elected each time this replica becomes
// leader. It runs apart from the syncs, which can take longer than the lease.
func (s *Scheduler) lead(ctx context.Context, elected chan<- struct{}) {
	tick := time.NewTicker(s.opts.LeaderTTL / 3)
	defer tick.Stop()
	for {
		if s.campaign(ctx) {
			select {
			case elected <- struct{}{}:
			default: // one is pending already
			}
		}
		select {
		case <-ctx.Done():
			if s.leader.Load() {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
				_ = s.election.Resign(rctx, LeaderRole, s.opts.ID)
				cancel()
			}
			return
		case <-tick.C:
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
		if ctx.Err() != nil {
			return false // stopping
		}
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
	s.metrics.adapted.Set(0)
	s.log.Warn("stepped down as leader", "reason", why)
}

// warnIgnoredJitter names the enabled connectors of cs that set jitter,
// which the fixed phases make meaningless.
func (s *Scheduler) warnIgnoredJitter(cs []catalog.Defined) {
	const most = 20 // a log line, not a listing
	var names []string
	n := 0
	for _, c := range cs {
		if c.Enabled && c.Jitter > 0 {
			if n++; n <= most {
				names = append(names, c.Name)
			}
		}
	}
	if n > 0 {
		s.log.Warn("jitter is ignored: each connector's ticks keep a fixed phase within its interval, derived from its name; remove the field",
			"connectors", names, "count", n)
	}
}

// Leader reports whether this replica keeps the schedules now (tests, /readyz).
func (s *Scheduler) Leader() bool { return s.leader.Load() }
