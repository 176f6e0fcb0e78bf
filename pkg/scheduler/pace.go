package scheduler

import (
	"math"
	"time"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/catalog"
)

// A connector whose workers cannot keep up with its schedule gets a sparser
// one until they do (the pace of its ticks).
//
// NATS fires a schedule whether or not the connector's last tick was taken:
// a fire that finds it still waiting replaces it (TICKS keeps one message per
// subject), and the fire was stored, then discarded, for nothing. nats-server
// has no way to skip such a fire: the scheduler (server/scheduler.go,
// getScheduledMessages) hands every due fire to the stream as a publish,
// strips any Nats-Expected-* header a definition could use to make the store
// conditional, and a stream with schedules refuses discard-new, the only
// per-subject limit that would refuse the fire. A pool of workers that serves
// 3,600 polls a second against 10,000 ticks a second offered therefore costs
// nats-server three fires per poll. So the fires have to become rarer.
//
// A worker sees that a connector fell behind when the time between its last
// two polls is at least one and a half of the interval its tick fires at (a
// fire was replaced; a tick's lateness cannot show it, since the tick
// delivered is always the newest fire) and asks for a stretch
// (bus.Adapt.BehindSeconds, that time). The leader then installs the
// connector at about that pace: the time, rounded up to whole seconds, at
// least a second more than it fires at now and at most maxStretch times its
// base interval (configured, or the adaptive connector's effective one). A
// request about ticks of a denser schedule than the one held (its
// ScheduledSeconds), or whose time between polls is no longer than the
// interval held, changes nothing: the many requests a saturated pool sends
// for ticks fired before the stretch install nothing, and a connector goes
// up one step per schedule it falls behind, not one per request.
//
// A worker that gets the ticks of a stretched connector on time asks, at most
// once per its AdaptEvery, for its interval (the adaptive request, or the
// configured interval); the leader then steps the stretch down halfway to the
// base interval, to the base once within a second of it. Down is slower than
// up, and halfway rather than at once: a pool that serves most of what is
// offered would fall behind again if every connector came back together.
// Each connector therefore changes its schedule at most once per
// AdaptEvery on the way down, and once per time it falls behind further on
// the way up.
//
// Like the adaptive intervals, the stretches are the leader's memory only:
// a new leader installs the base intervals, and a pool still behind asks
// again within a few polls.

// maxStretch bounds a stretch: a connector fires at least every maxStretch
// times its base interval however far behind its workers are.
const maxStretch = 16

// stretch is a connector's schedule made sparser: the interval it fires at,
// and the base interval it stretches. A base that changes (the definition,
// the adaptive interval) drops the stretch.
type stretch struct {
	interval time.Duration
	base     time.Duration
}

// takeBehind acts on a request saying a connector fell behind: it keeps a
// longer stretch when the request calls for one, and says to install it.
func (s *Scheduler) takeBehind(req bus.Adapt, c catalog.Defined, found bool) (catalog.Defined, bool) {
	why := checkRequest(req, c, found)
	if why == "" && (math.IsNaN(req.BehindSeconds) || req.BehindSeconds <= 0) {
		why = "no time between polls"
	}
	if why != "" {
		s.log.Debug("behind request ignored", "connector", req.Connector, "reason", why,
			"behind_seconds", req.BehindSeconds, "revision", req.Revision)
		return c, false
	}
	if held, ok := s.effective[c.Name]; ok && held.of(c) {
		c.Interval = held.interval
	}
	base := c.Interval
	current := base
	if held, ok := s.stretched[c.Name]; ok && held.base == base {
		current = held.interval
	}
	gap := time.Duration(req.BehindSeconds * float64(time.Second))
	scheduled := time.Duration(req.ScheduledSeconds * float64(time.Second))
	if gap <= current || (scheduled > 0 && scheduled < current) {
		// Asked about ticks of a denser schedule than the one held now.
		return c, false
	}
	want := stretchFor(base, current, gap)
	if want <= current {
		return c, false
	}
	s.stretched[c.Name] = stretch{interval: want, base: base}
	s.metrics.stretched.Set(float64(len(s.stretched)))
	s.metrics.stretches.WithLabelValues("up").Inc()
	// Debug, not Info: a saturated pool stretches thousands at once; the
	// metrics count them (pollgrid_scheduler_stretched_connectors).
	s.log.Debug("connector fell behind its schedule: its ticks fire less often until its workers keep up",
		"connector", c.Name, "interval", want.String(), "from", current.String(), "between_polls", gap.Round(time.Millisecond).String())
	c.Interval = want
	return c, true
}

// stretchFor is the interval a connector that fell behind is installed at:
// the time between its polls (gap) in whole seconds, rounded up, at least a
// second more than it fires at now, at most maxStretch times its base.
func stretchFor(base, current, gap time.Duration) time.Duration {
	want := max(gap, current+time.Second)
	if r := want % time.Second; r != 0 {
		want += time.Second - r
	}
	if limit := maxStretch * base; base > 0 && want > limit {
		want = limit
	}
	return want
}

// stepDown is the next interval of a stretch at interval over base: halfway
// down, in whole seconds, and base once within a second of it.
func stepDown(interval, base time.Duration) time.Duration {
	next := (base + (interval-base)/2).Round(time.Second)
	if next-base < time.Second || next >= interval {
		return base
	}
	return next
}

// caughtUp steps c's stretch down, c's ticks having come on time (c.Interval
// is its base), and returns the interval to install; held says whether a
// stretch was held.
func (s *Scheduler) caughtUp(c catalog.Defined) (interval time.Duration, held bool) {
	st, ok := s.stretched[c.Name]
	if !ok {
		return c.Interval, false
	}
	if st.base != c.Interval {
		s.drop(c.Name)
		return c.Interval, true
	}
	next := stepDown(st.interval, st.base)
	s.metrics.stretches.WithLabelValues("down").Inc()
	if next == st.base {
		s.drop(c.Name)
		s.log.Debug("connector caught up with its schedule: back to its interval", "connector", c.Name, "interval", next.String())
		return next, true
	}
	s.stretched[c.Name] = stretch{interval: next, base: st.base}
	s.log.Debug("connector keeps up with its stretched schedule: its ticks fire more often", "connector", c.Name,
		"interval", next.String(), "from", st.interval.String())
	return next, true
}

func (s *Scheduler) drop(name string) {
	delete(s.stretched, name)
	s.metrics.stretched.Set(float64(len(s.stretched)))
}

// withStretch gives each connector of cs whose stretch is held that
// interval, and drops the stretches whose base changed; cs carry their base
// intervals (withEffective applied).
func (s *Scheduler) withStretch(cs []catalog.Defined) {
	if len(s.stretched) == 0 {
		return
	}
	for i := range cs {
		st, ok := s.stretched[cs[i].Name]
		switch {
		case !ok:
		case st.base != cs[i].Interval:
			s.drop(cs[i].Name)
		default:
			cs[i].Interval = st.interval
		}
	}
}
