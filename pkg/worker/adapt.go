package worker

import (
	"context"
	"encoding/json"
	"time"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/poll"
	"github.com/pollgrid/pollgrid/pkg/store"
)

// Adaptive intervals (docs/connector-framework.md, "Adaptive intervals"):
// after each poll of an adaptive connector the worker moves its effective
// interval E, kept in the connector's state (it travels with the lease,
// so every worker continues from the same E), and asks the scheduler to
// fire the connector's ticks at it when the tick says they fire at another
// interval, at most once per Options.AdaptEvery.
//
// The pace of any connector ("Falling behind"): after a poll that came
// at least one and a half intervals after the previous one, the worker asks
// the scheduler for a sparser schedule (the scheduler decides how sparse,
// pkg/scheduler/pace.go), and once the ticks of a stretched schedule come on
// time, for the connector's own interval again.

// adaptPublisher sends a request to the scheduler: *nats.Conn (core NATS,
// no reply: a lost request is asked again AdaptEvery later).
type adaptPublisher interface {
	Publish(subject string, data []byte) error
}

const (
	// adaptGrowth is E's step after a poll that found no change.
	adaptGrowth = 1.5
	// DefaultAdaptEvery is Options.AdaptEvery's default: the least time
	// between two requests for a connector, so its schedule changes at
	// most this often.
	DefaultAdaptEvery = 2 * time.Minute
)

// found is what a poll says of the upstream's pace.
type found int

const (
	// foundNothing: the poll failed or was deferred; it says nothing.
	foundNothing found = iota
	// foundChanges: the poll published signals; a burst has begun.
	foundChanges
	// foundNoChange: the upstream answered 304, the same items, or no new
	// versions.
	foundNoChange
)

// foundBy reads what a committed poll found.
func foundBy(out poll.Outcome) found {
	switch {
	case out.Err != nil:
		return foundNothing
	case len(out.Signals) > 0:
		return foundChanges
	}
	return foundNoChange
}

// nextEffective is the rule: E becomes min after changes (react at once),
// grows by half (up to max) after none, and stays after a poll that found
// nothing out; a connector that never polled starts from its interval. E is
// never below floor (its fair share of its budget, 0 without one) nor
// outside the adaptive bounds.
func nextEffective(a config.Adaptive, interval, floor, prev time.Duration, f found) time.Duration {
	e := prev
	if e <= 0 {
		e = interval
	}
	switch f {
	case foundChanges:
		e = a.Min
	case foundNoChange:
		e = time.Duration(float64(e) * adaptGrowth)
	}
	return a.Clamp(e, floor)
}

// adaptRequest is a request to send, and the interval the tick that led
// to it fired at.
type adaptRequest struct {
	bus.Adapt
	scheduled time.Duration
}

// adapt moves the effective interval in the state the poll commits, and
// returns the request to send once that commit is written, if any (none
// for a triggered poll, whose scheduled interval is 0):
//   - the connector fell behind its schedule (behindBy): a request for a
//     sparser schedule, not again within twice the time between its polls;
//   - its tick fired at another interval than the one it wants (an adaptive
//     connector's effective interval; for one that is not adaptive, its
//     configured interval when the tick's is longer: the scheduler stretched
//     it, and it kept up): a request for that interval, at most once per
//     AdaptEvery.
//
// A connector that is not adaptive (any more) has its effective interval
// cleared.
func (w *Worker) adapt(in *instance, prev store.State, out *poll.Outcome, scheduled time.Duration) *adaptRequest {
	c := in.cfg
	next := &out.Commit.State
	next.EffectiveInterval = 0
	if c.Adaptive.On() {
		var floor time.Duration
		if c.Budget.Name != "" {
			floor = c.Budget.Fair()
		}
		next.EffectiveInterval = nextEffective(c.Adaptive, c.Interval, floor, prev.EffectiveInterval, foundBy(*out))
	}
	if scheduled <= 0 {
		return nil
	}
	now := w.opts.Now()
	since := func(d time.Duration) bool {
		return prev.AdaptRequestedAt.IsZero() || now.Sub(prev.AdaptRequestedAt) >= d
	}
	// An adaptive connector's previous poll came at its previous interval.
	if gap, ok := behindBy(prev, next.LastPoll, max(scheduled, c.ScheduledInterval(prev.EffectiveInterval))); ok {
		if !since(2 * gap) {
			return nil // asked already; the scheduler takes a while
		}
		next.AdaptRequestedAt = now
		return &adaptRequest{Adapt: bus.Adapt{Connector: c.Name, Type: c.Type, BehindSeconds: gap.Seconds(),
			ScheduledSeconds: scheduled.Seconds(), Revision: in.revision},
			scheduled: scheduled}
	}
	asked := c.ScheduledInterval(next.EffectiveInterval)
	if !c.Adaptive.On() && scheduled <= asked {
		// On time at its own interval: nothing to ask, nor to remember.
		next.AdaptRequestedAt = time.Time{}
		return nil
	}
	if asked == scheduled || !since(w.opts.AdaptEvery) {
		return nil
	}
	next.AdaptRequestedAt = now
	return &adaptRequest{Adapt: bus.Adapt{Connector: c.Name, Type: c.Type, IntervalSeconds: int64(asked / time.Second), Revision: in.revision},
		scheduled: scheduled}
}

// behindFactor: a connector polled this many intervals (its tick's) or more
// after its previous poll fell behind its schedule. Its fires come on whole
// seconds, so an on-time connector's polls are an interval apart give or
// take the difference of their latenesses; one and a half intervals means a
// fire found the connector's tick still waiting and replaced it. A tick's
// own lateness cannot say so: the tick delivered is the newest fire.
const behindFactor = 1.5

// behindMost: a connector polled more than this many intervals after its
// previous poll was not kept behind by its workers' pace but by something
// else (its interval shortened, the workers down for a while), which a
// sparser schedule would not help; the scheduler stretches no further.
const behindMost = 16

// behindBy reports whether a connector polled at polled fell behind its
// schedule of ticks every scheduled, and the time since its previous poll
// (gap). A wait (back-off, an upstream's Retry-After) or a pause since then
// counts from its end, as the missed-ticks metric does: those polls were
// skipped on purpose.
func behindBy(prev store.State, polled time.Time, scheduled time.Duration) (gap time.Duration, behind bool) {
	from := prev.LastPoll
	if prev.NotBefore.After(from) {
		from = prev.NotBefore
	}
	if prev.ResumedAt.After(from) {
		from = prev.ResumedAt
	}
	if from.IsZero() || polled.IsZero() {
		return 0, false
	}
	gap = polled.Sub(from)
	return gap, float64(gap) >= behindFactor*float64(scheduled) && gap <= behindMost*scheduled
}

// askAdapt sends a request to the scheduler. A failure is logged, not
// counted against the poll: the request is asked again AdaptEvery later.
func (w *Worker) askAdapt(ctx context.Context, req *adaptRequest) {
	data, err := json.Marshal(req.Adapt)
	if err == nil {
		err = w.adapts.Publish(bus.AdaptSubject, data)
	}
	if err != nil {
		w.metrics.errors.WithLabelValues("nats", "adapt").Inc()
		w.log.WarnContext(ctx, "asking the scheduler for the connector's effective interval failed; asked again later",
			"interval_seconds", req.IntervalSeconds, "error", err)
		return
	}
	if req.BehindSeconds > 0 {
		w.log.InfoContext(ctx, "the connector fell behind its schedule: asked the scheduler for a sparser one",
			"between_polls", (time.Duration(req.BehindSeconds * float64(time.Second))).Round(time.Millisecond).String(),
			"ticks_every", req.scheduled.String())
		return
	}
	w.log.InfoContext(ctx, "asked the scheduler to fire the connector's ticks at its interval",
		"interval", (time.Duration(req.IntervalSeconds) * time.Second).String(), "ticks_every", req.scheduled.String())
}
