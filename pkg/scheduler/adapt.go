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
func checkAdapt(req bus.Adapt, c catalog.Defined, found bool) (time.Duration, string) {
	interval := time.Duration(req.IntervalSeconds) * time.Second
	switch {
	case !found:
		return 0, "no such connector in the catalog"
	case c.Type != req.Type:
		return 0, "the connector's type differs"
	case !c.Adaptive.On():
		return 0, "the connector is not adaptive"
	case req.Revision < c.Revision:
		return 0, "computed from an older definition"
	case req.IntervalSeconds <= 0 || req.IntervalSeconds > int64(c.Adaptive.Max/time.Second) ||
		interval < c.Adaptive.Min || interval > c.Adaptive.Max:
		return 0, "the interval is outside the connector's adaptive bounds"
	}
	return interval, ""
}

// adapt acts on one request: it keeps the interval asked for and, when the
// schedules follow the catalog already (inLine), installs the connector's
// schedule with it. Otherwise the full sync that is coming installs it.
func (s *Scheduler) adapt(ctx context.Context, req bus.Adapt, inLine bool) error {
	c, found := s.index.Connector(req.Connector)
	interval, why := checkAdapt(req, c, found)
	if why != "" {
		s.log.Debug("adapt request ignored", "connector", req.Connector, "reason", why,
			"interval_seconds", req.IntervalSeconds, "revision", req.Revision)
		return nil
	}
	from := c.Interval
	if held, ok := s.effective[c.Name]; ok && held.of(c) {
		from = held.interval
	}
	s.effective[c.Name] = adapted{interval: interval, bounds: c.Adaptive}
	s.metrics.adapted.Set(float64(len(s.effective)))
	if interval != from {
		s.metrics.adaptations.Inc()
	}
	if !inLine {
		return nil
	}
	// The worker asks only when the ticks it gets disagree, so the schedule
	// is installed even when the interval held is the same: it may have
	// been replaced (a resume installs the configured interval).
	c.Interval = interval
	active, err := s.active(ctx, []catalog.Defined{c})
	if err != nil || len(active) == 0 {
		return err // disabled or paused: enabling or resuming installs it
	}
	d, err := newDefinition(c)
	if err != nil {
		return err
	}
	if err := s.publishAll(ctx, []*nats.Msg{d.msg()}); err != nil {
		return fmt.Errorf("adapt %s: %w", c.Name, err)
	}
	s.metrics.changes.WithLabelValues("install").Inc()
	if interval != from {
		s.log.Info("connector's interval adapted", "connector", c.Name, "interval", interval.String(), "from", from.String())
	}
	return nil
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

// forgetDeleted drops the effective intervals of the connectors the index no
// longer holds: every one not in all (sorted by name), or, given names, those
// of names not in all.
func (s *Scheduler) forgetDeleted(all []catalog.Defined, names []string) {
	if len(s.effective) == 0 {
		return
	}
	if names == nil {
		for name := range s.effective {
			if _, ok := find(all, name); !ok {
				delete(s.effective, name)
			}
		}
	} else {
		for _, name := range names {
			if _, ok := find(all, name); !ok {
				delete(s.effective, name)
			}
		}
	}
	s.metrics.adapted.Set(float64(len(s.effective)))
}
