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
// returns the request to send once that commit is written, if any: when
// the tick fired at another interval (scheduled; 0 for a triggered poll,
// which asks nothing) and no request went for AdaptEvery. A connector that
// is not adaptive (any more) has its effective interval cleared.
func (w *Worker) adapt(in *instance, prev store.State, out *poll.Outcome, scheduled time.Duration) *adaptRequest {
	c := in.cfg
	next := &out.Commit.State
	if !c.Adaptive.On() {
		next.EffectiveInterval, next.AdaptRequestedAt = 0, time.Time{}
		return nil
	}
	var floor time.Duration
	if c.Budget.Name != "" {
		floor = c.Budget.Fair()
	}
	next.EffectiveInterval = nextEffective(c.Adaptive, c.Interval, floor, prev.EffectiveInterval, foundBy(*out))
	if scheduled <= 0 {
		return nil
	}
	asked := c.ScheduledInterval(next.EffectiveInterval)
	now := w.opts.Now()
	if asked == scheduled || (!prev.AdaptRequestedAt.IsZero() && now.Sub(prev.AdaptRequestedAt) < w.opts.AdaptEvery) {
		return nil
	}
	next.AdaptRequestedAt = now
	return &adaptRequest{Adapt: bus.Adapt{Connector: c.Name, Type: c.Type, IntervalSeconds: int64(asked / time.Second), Revision: in.revision},
		scheduled: scheduled}
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
	w.log.InfoContext(ctx, "asked the scheduler to fire the connector's ticks at its effective interval",
		"interval", (time.Duration(req.IntervalSeconds) * time.Second).String(), "ticks_every", req.scheduled.String())
}
