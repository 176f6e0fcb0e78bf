package scheduler

import (
	"context"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/pollgrid/pollgrid/pkg/catalog"
)

// First ticks are paced: firstTickBurst go at once, then firstTickRate a
// second. A few new connectors poll at once; an apply of 100,000 does not
// have the workers poll 100,000 connectors in the same seconds that the
// scheduler installs their schedules (their schedules spread them over
// one interval anyway). Those that wait and whose schedule fires before
// their turn get no first tick: the fire polls them.
const (
	firstTickBurst = 1000
	firstTickRate  = 200
	// firstTickEvery is how often Run sends the first ticks still waiting.
	firstTickEvery = 250 * time.Millisecond
)

// firstTicks holds the connectors waiting for their first tick, oldest
// first (Run's own).
type firstTicks struct {
	limit *rate.Limiter
	queue []waiting
}

// waiting is a connector waiting for its first tick, and when its schedule
// fires first.
type waiting struct {
	c     catalog.Defined
	fires time.Time
}

func newFirstTicks(burst int, perSecond float64) *firstTicks {
	return &firstTicks{limit: rate.NewLimiter(rate.Limit(perSecond), burst)}
}

// add returns those of cs whose first ticks may go at once, as far as the
// burst allows when none are waiting before them, and queues the others.
func (f *firstTicks) add(cs []catalog.Defined, now time.Time) []catalog.Defined {
	n := 0
	for len(f.queue) == 0 && n < len(cs) && f.limit.AllowN(now, 1) {
		n++
	}
	for _, c := range cs[n:] {
		f.queue = append(f.queue, waiting{c: c, fires: NextFire(c.Name, c.Interval, now)})
	}
	return cs[:n]
}

// take removes and returns the waiting connectors whose first tick may go
// now, dropping those whose schedule fires within a second.
func (f *firstTicks) take(now time.Time) []catalog.Defined {
	var out []catalog.Defined
	n := 0
	for n < len(f.queue) {
		w := f.queue[n]
		if w.fires.Sub(now) < time.Second {
			n++
			continue
		}
		if !f.limit.AllowN(now, 1) {
			break
		}
		out = append(out, w.c)
		n++
	}
	f.queue = f.queue[n:]
	if len(f.queue) == 0 {
		f.queue = nil // let a long queue's array go
	}
	return out
}

// clear forgets every waiting connector (leadership lost: the next
// leader's syncs decide).
func (f *firstTicks) clear() { f.queue = nil }

// NextFire is when the schedule of a connector installed at now first
// fires: at its Phase for a cron schedule (Spec), an interval after now for
// "@every" (which the install may start up to everySpread seconds later
// still).
func NextFire(name string, interval time.Duration, now time.Time) time.Time {
	if interval <= 0 {
		return now
	}
	if strings.HasPrefix(Spec(name, interval), "@every") {
		return now.Add(interval)
	}
	// A cron schedule's interval divides a minute, an hour or a day, so it
	// divides the time since the epoch at every UTC midnight: the fires are
	// at phase + k × interval.
	since := now.Sub(time.Unix(0, 0)) - Phase(name, interval)
	return now.Add(interval - since%interval)
}

// sendFirstTicks sends the first ticks of cs at once, or the waiting ones
// the pace allows now when cs is nil.
func (s *Scheduler) sendFirstTicks(ctx context.Context, cs []catalog.Defined) error {
	if cs == nil {
		cs = s.first.take(time.Now())
	}
	s.metrics.firstWaiting.Set(float64(len(s.first.queue)))
	if len(cs) == 0 {
		return nil
	}
	_, err := s.firstTicks(ctx, cs)
	return err
}

// dropFirstTicks forgets every waiting connector (leadership lost or
// taken anew: the leader's syncs decide).
func (s *Scheduler) dropFirstTicks() {
	s.first.clear()
	s.metrics.firstWaiting.Set(0)
}
