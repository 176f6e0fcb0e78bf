package scheduler

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/bus"
)

const (
	connA10s = `{"name": "a", "type": "fake", "interval": "10s"}`
	connA20s = `{"name": "a", "type": "fake", "interval": "20s"}`
)

func (fx *fixture) stretched() float64 { return testutil.ToFloat64(fx.s.metrics.stretched) }

// behind is a worker's request for a connector that fell behind: its last
// two polls were between apart.
func behind(name string, rev uint64, between time.Duration) bus.Adapt {
	return bus.Adapt{Connector: name, Type: "fake", BehindSeconds: between.Seconds(), Revision: rev}
}

// caughtUp is a worker's request for a connector that is not adaptive and
// got the ticks of its stretched schedule on time: its own interval again.
func caughtUp(name string, rev uint64, interval time.Duration) bus.Adapt {
	return bus.Adapt{Connector: name, Type: "fake", IntervalSeconds: int64(interval / time.Second), Revision: rev}
}

// firesAt waits for a's schedule to fire every want.
func (fx *fixture) firesAt(t *testing.T, name string, want time.Duration, msg string) {
	t.Helper()
	require.Eventually(t, func() bool { return fx.firesEvery(t, name) == want }, inEffect, 10*time.Millisecond,
		"%s: %s's schedule does not fire every %s (it fires every %s)", msg, name, want, fx.firesEvery(t, name))
}

func TestBehindStretchesTheScheduleUntilItCatchesUp(t *testing.T) {
	fx := newFixture(t)
	fx.runAdaptive(t, file(connA10s, connB), 2)
	rev := fx.revision(t, "a")

	fx.ask(t, behind("a", rev, 24300*time.Millisecond))
	fx.firesAt(t, "a", 25*time.Second, "the time between its polls, whole seconds up")
	assert.Equal(t, 6*time.Hour, fx.firesEvery(t, "b"), "only the connector behind changes")
	assert.Equal(t, 1.0, fx.stretched())

	// Requests for ticks fired before the stretch change nothing, however
	// far behind they say it was.
	installs := fx.counter("install")
	for range 5 {
		fx.ask(t, behind("a", rev, 20*time.Second))
	}
	stale := behind("a", rev, time.Minute)
	stale.ScheduledSeconds = 10
	fx.ask(t, stale)
	fx.ask(t, behind("b", fx.revision(t, "b"), 13*time.Hour)) // the barrier: requests are taken in order
	fx.firesAt(t, "b", 13*time.Hour, "b fell behind")
	assert.Equal(t, 25*time.Second, fx.firesEvery(t, "a"), "a request about ticks of a denser schedule stretched it")
	installs++ // b's
	fx.ask(t, behind("a", rev, 5*time.Minute))
	fx.firesAt(t, "a", 160*time.Second, "further behind: at most 16 times its interval")
	assert.Equal(t, installs+1, fx.counter("install"), "only the request that called for a sparser schedule installed one")

	// On time: halfway down each time, then its interval.
	for _, want := range []time.Duration{85, 48, 29, 20, 15, 13, 12, 11, 10} {
		fx.ask(t, caughtUp("a", rev, 10*time.Second))
		fx.firesAt(t, "a", want*time.Second, "caught up")
	}
	assert.Equal(t, 1.0, fx.stretched(), "only b is stretched")
	s, ok := fx.schedule(t, "fake", "a")
	require.True(t, ok)
	assert.Equal(t, Spec("a", 10*time.Second), s.spec, "back at its phase")

	// Caught up and not stretched: nothing to install.
	installs = fx.counter("install")
	fx.ask(t, caughtUp("a", rev, 10*time.Second))
	fx.ask(t, behind("a", rev, 30*time.Second)) // the barrier: its install follows the request before
	fx.firesAt(t, "a", 30*time.Second, "behind again")
	assert.Equal(t, installs+1, fx.counter("install"))
}

func TestBehindRequestsIgnored(t *testing.T) {
	fx := newFixture(t)
	fx.runAdaptive(t, file(connA10s, connB), 2)
	rev := fx.revision(t, "a")
	installs := fx.counter("install")
	for _, req := range []bus.Adapt{
		behind("zz", rev, time.Minute),
		{Connector: "a", Type: "other", BehindSeconds: 60, Revision: rev},
		behind("a", rev-1, time.Minute),
		behind("a", rev, -time.Minute),
		behind("a", rev, 10*time.Second),   // no sparser than now
		caughtUp("a", rev, 20*time.Second), // not its interval, and a is not adaptive
	} {
		fx.ask(t, req)
	}
	fx.ask(t, behind("b", fx.revision(t, "b"), 13*time.Hour))
	fx.firesAt(t, "b", 13*time.Hour, "the barrier")
	assert.Equal(t, installs+1, fx.counter("install"), "only b's request installed a schedule")
	assert.Equal(t, 10*time.Second, fx.firesEvery(t, "a"))
	assert.Equal(t, 1.0, fx.stretched())
}

func TestSyncsKeepTheStretchUntilTheIntervalChanges(t *testing.T) {
	fx := newFixture(t)
	fx.runAdaptive(t, file(connA10s, connB), 2)
	fx.ask(t, behind("a", fx.revision(t, "a"), 30*time.Second))
	fx.firesAt(t, "a", 30*time.Second, "behind")

	fx.s.resync <- struct{}{}
	fx.apply(t, file(connA10s, `{"name": "b", "type": "fake", "interval": "7h"}`)) // a change pass too
	fx.firesAt(t, "b", 7*time.Hour, "b changed")
	assert.Equal(t, 30*time.Second, fx.firesEvery(t, "a"), "a sync or a change pass undid the stretch")

	// A new interval is a new base: the stretch goes.
	fx.apply(t, file(connA20s, connB))
	fx.firesAt(t, "a", 20*time.Second, "a's interval changed")
	assert.Zero(t, fx.stretched())
}

func TestAdaptiveConnectorStretchesFromItsEffectiveInterval(t *testing.T) {
	fx := newFixture(t)
	fx.runAdaptive(t, file(adaptive("a", "12h"), connB), 2)
	rev := fx.revision(t, "a")
	fx.ask(t, bus.Adapt{Connector: "a", Type: "fake", IntervalSeconds: 3600, Revision: rev})
	fx.firesAt(t, "a", time.Hour, "adapted")
	fx.ask(t, behind("a", rev, 3*time.Hour))
	fx.firesAt(t, "a", 3*time.Hour, "behind")
	// The worker asks for its effective interval again: it kept up.
	fx.ask(t, bus.Adapt{Connector: "a", Type: "fake", IntervalSeconds: 3600, Revision: rev})
	fx.firesAt(t, "a", 2*time.Hour, "halfway down")
	// A new effective interval is a new base.
	fx.ask(t, bus.Adapt{Connector: "a", Type: "fake", IntervalSeconds: 7200, Revision: rev})
	fx.firesAt(t, "a", 2*time.Hour, "adapted")
	assert.Zero(t, fx.stretched())
}

func TestStretchFor(t *testing.T) {
	for _, tc := range []struct {
		name                       string
		base, current, gap, expect time.Duration
	}{
		{"the time between polls, rounded up", time.Second, time.Second, 2800 * time.Millisecond, 3 * time.Second},
		{"whole seconds stay", time.Second, time.Second, 2 * time.Second, 2 * time.Second},
		{"at least a second more than now", 10 * time.Second, 20 * time.Second, 15 * time.Second, 21 * time.Second},
		{"at most 16 times the base", time.Second, 2 * time.Second, time.Minute, 16 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.expect, stretchFor(tc.base, tc.current, tc.gap))
		})
	}
}

func TestStepDown(t *testing.T) {
	for _, tc := range []struct{ interval, base, expect time.Duration }{
		{16 * time.Second, time.Second, 9 * time.Second},
		{3 * time.Second, time.Second, 2 * time.Second},
		{2 * time.Second, time.Second, time.Second},
		{11 * time.Second, 10 * time.Second, 10 * time.Second},
		{3 * time.Hour, time.Hour, 2 * time.Hour},
	} {
		assert.Equal(t, tc.expect, stepDown(tc.interval, tc.base), "%s over %s", tc.interval, tc.base)
	}
}
