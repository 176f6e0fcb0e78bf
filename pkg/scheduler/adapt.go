package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/catalog"
	"github.com/pollgrid/pollgrid/pkg/config"
)

// An adaptive connector's workers compute its effective interval from what
// its polls find, and ask the scheduler (bus.AdaptSubject) to fire its ticks
// at it when the ticks say otherwise. The leader checks each request against
// the index, keeps the interval in memory (Scheduler.effective) and
// installs that one connector's schedule again; its full syncs and change
// passes install the effective interval wherever one is held, so that they
// do not undo it.
//
// The intervals are not stored anywhere else: a replica that becomes leader
// starts without them, and its first sync installs every connector at its
// configured interval. An adaptive connector then fires at that interval
// until its next poll, whose worker sees the tick's interval differ from
// the one it computed and asks again.
//
// Any connector's workers use the same subject to say it fell behind its
// schedule, or caught up with a stretched one (pace.go); the leader takes
// the requests waiting in batches, and installs the schedules they change
// together.

// adaptQueue is how many requests wait for the leader's loop; past it they
// are dropped (a worker asks again after a later poll).
const adaptQueue = 1024

// adapted is a connector's effective interval, with the adaptive bounds of
// the definition it was checked against: a definition whose bounds change
// drops it.
type adapted struct {
	interval time.Duration
	bounds   config.Adaptive
}

// of reports whether a was checked against c's adaptive bounds.
func (a adapted) of(c catalog.Defined) bool { return a.bounds == c.Adaptive }

// WatchAdapt takes the workers' requests to change an adaptive connector's
// interval (bus.AdaptSubject) to Run; a replica that does not lead ignores
// them.
func (s *Scheduler) WatchAdapt(nc *nats.Conn) (*nats.Subscription, error) {
	sub, err := nc.Subscribe(bus.AdaptSubject, func(m *nats.Msg) {
		if !s.leader.Load() {
			return
		}
		var req bus.Adapt
		if err := json.Unmarshal(m.Data, &req); err != nil {
			s.log.Debug("adapt request ignored: not JSON", "error", err)
			return
		}
		select {
		case s.adapts <- req:
		default:
			s.log.Debug("adapt request ignored: too many waiting", "connector", req.Connector)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", bus.AdaptSubject, err)
	}
	return sub, nil
}

// checkAdapt returns the interval req asks for, or why it is dropped; c is
// the connector the index holds under req.Connector (found says whether).
// A connector that is not adaptive may only ask for its configured
// interval: it caught up after falling behind (pace.go).
func checkAdapt(req bus.Adapt, c catalog.Defined, found bool) (time.Duration, string) {
	interval := time.Duration(req.IntervalSeconds) * time.Second
	if why := checkRequest(req, c, found); why != "" {
		return 0, why
	}
	switch {
	case !c.Adaptive.On():
		if req.IntervalSeconds > 0 && interval == c.Interval {
			return interval, ""
		}
		return 0, "the connector is not adaptive"
	case req.IntervalSeconds <= 0 || req.IntervalSeconds > int64(c.Adaptive.Max/time.Second) ||
		interval < c.Adaptive.Min || interval > c.Adaptive.Max:
		return 0, "the interval is outside the connector's adaptive bounds"
	}
	return interval, ""
}

// checkRequest is what every request must be: of a connector the index
// holds, as the worker saw it or older.
func checkRequest(req bus.Adapt, c catalog.Defined, found bool) string {
	switch {
	case !found:
		return "no such connector in the catalog"
	case c.Type != req.Type:
		return "the connector's type differs"
	case req.Revision < c.Revision:
		return "computed from an older definition"
	}
	return ""
}

// takeAdapts returns first and the requests waiting behind it, up to a
// page: a pool of workers that falls behind asks for many connectors at
// once, and their schedules are installed in one asynchronous batch.
func (s *Scheduler) takeAdapts(first bus.Adapt) []bus.Adapt {
	reqs := []bus.Adapt{first}
	for len(reqs) < pageSize {
		select {
		case req := <-s.adapts:
			reqs = append(reqs, req)
		default:
			return reqs
		}
	}
	return reqs
}

// adapt acts on requests: it keeps the intervals they ask for (an adaptive
// connector's effective interval, a stretch for one that fell behind or
// caught up) and, when the schedules follow the catalog already (inLine),
// installs the schedules whose interval changed. Otherwise the full sync
// that is coming installs them.
func (s *Scheduler) adapt(ctx context.Context, reqs []bus.Adapt, inLine bool) error {
	changed := map[string]catalog.Defined{}
	for _, req := range reqs {
		c, install := s.take(req)
		if install {
			changed[c.Name] = c
		}
	}
	if !inLine || len(changed) == 0 {
		return nil
	}
	cs := make([]catalog.Defined, 0, len(changed))
	for _, c := range changed {
		cs = append(cs, c)
	}
	active, err := s.active(ctx, cs)
	if err != nil {
		return err // disabled or paused: enabling or resuming installs it
	}
	msgs := make([]*nats.Msg, 0, len(active))
	for _, c := range active {
		d, err := newDefinition(c)
		if err != nil {
			return err
		}
		msgs = append(msgs, d.msg())
	}
	if err := s.publishAll(ctx, msgs); err != nil {
		return fmt.Errorf("adapt %d schedules: %w", len(msgs), err)
	}
	s.metrics.changes.WithLabelValues("install").Add(float64(len(msgs)))
	return nil
}

// take acts on one request and returns the connector as its schedule
// should now be, with install true when that schedule is to be installed.
func (s *Scheduler) take(req bus.Adapt) (catalog.Defined, bool) {
	c, found := s.index.Connector(req.Connector)
	if req.BehindSeconds != 0 {
		return s.takeBehind(req, c, found)
	}
	interval, why := checkAdapt(req, c, found)
	if why != "" {
		s.log.Debug("adapt request ignored", "connector", req.Connector, "reason", why,
			"interval_seconds", req.IntervalSeconds, "revision", req.Revision)
		return c, false
	}
	if c.Adaptive.On() {
		from := c.Interval
		if held, ok := s.effective[c.Name]; ok && held.of(c) {
			from = held.interval
		}
		s.effective[c.Name] = adapted{interval: interval, bounds: c.Adaptive}
		s.metrics.adapted.Set(float64(len(s.effective)))
		if interval != from {
			s.metrics.adaptations.Inc()
			s.log.Info("connector's interval adapted", "connector", c.Name, "interval", interval.String(), "from", from.String())
		}
		c.Interval = interval
	}
	// The worker asks only when the ticks it gets disagree, so the
	// schedule is installed even when the interval held is the same: it
	// may have been replaced (a resume installs the configured interval).
	// Its ticks came on time, so a stretch steps down (pace.go).
	interval, held := s.caughtUp(c)
	c.Interval = interval
	return c, held || c.Adaptive.On()
}

// withEffective gives each connector of cs whose effective interval is held
// that interval, and drops the intervals of those whose adaptive bounds
// changed since.
func (s *Scheduler) withEffective(cs []catalog.Defined) {
	if len(s.effective) == 0 {
		return
	}
	for i := range cs {
		held, ok := s.effective[cs[i].Name]
		switch {
		case !ok:
		case !held.of(cs[i]):
			delete(s.effective, cs[i].Name)
		default:
			cs[i].Interval = held.interval
		}
	}
	s.metrics.adapted.Set(float64(len(s.effective)))
}

// forgetDeleted drops the effective intervals and stretches (pace.go) of
// the connectors the index no longer holds: every one not in all (sorted by
// name), or, given names, those of names not in all.
func (s *Scheduler) forgetDeleted(all []catalog.Defined, names []string) {
	if len(s.effective)+len(s.stretched) == 0 {
		return
	}
	gone := func(name string) {
		if _, ok := find(all, name); !ok {
			delete(s.effective, name)
			delete(s.stretched, name)
		}
	}
	if names == nil {
		for name := range s.effective {
			gone(name)
		}
		for name := range s.stretched {
			gone(name)
		}
	} else {
		for _, name := range names {
			gone(name)
		}
	}
	s.metrics.adapted.Set(float64(len(s.effective)))
	s.metrics.stretched.Set(float64(len(s.stretched)))
}
