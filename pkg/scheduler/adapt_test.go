package scheduler

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/catalog"
)

// adaptive is connector name at 6h, adaptive within [1h, 12h]; labels, when
// given, change its definition without changing its bounds.
func adaptive(name, max string, labels ...string) string {
	l := ""
	if len(labels) > 0 {
		l = fmt.Sprintf(`, "labels": {"v": %q}`, labels[0])
	}
	return fmt.Sprintf(`{"name": %q, "type": "fake", "interval": "6h", "adaptive": {"min": "1h", "max": %q}%s}`, name, max, l)
}

// runAdaptive starts the scheduler with its adapt requests taken, and
// applies file; it returns once every connector of it is scheduled.
func (fx *fixture) runAdaptive(t *testing.T, file string, connectors int) {
	t.Helper()
	sub, err := fx.s.WatchAdapt(fx.nc)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	require.NoError(t, fx.nc.Flush())
	fx.run(t, true)
	fx.apply(t, file)
	require.Eventually(t, func() bool { return fx.counter("install") == float64(connectors) }, inEffect, 10*time.Millisecond)
}

// ask sends an adapt request, as a worker does.
func (fx *fixture) ask(t *testing.T, req bus.Adapt) {
	t.Helper()
	data, err := json.Marshal(req)
	require.NoError(t, err)
	require.NoError(t, fx.nc.Publish(bus.AdaptSubject, data))
}

// firesEvery is the interval a connector's schedule fires at, as its spec
// and its tick say, or 0 when they disagree or it has none.
func (fx *fixture) firesEvery(t *testing.T, name string) time.Duration {
	t.Helper()
	s, ok := fx.schedule(t, "fake", name)
	if !ok {
		return 0
	}
	interval := s.tick.GetInterval().AsDuration()
	if s.spec != Spec(name, interval) {
		return 0
	}
	return interval
}

func (fx *fixture) adaptations() float64 { return testutil.ToFloat64(fx.s.metrics.adaptations) }
func (fx *fixture) adapted() float64     { return testutil.ToFloat64(fx.s.metrics.adapted) }

func TestAdaptRequestReinstallsTheSchedule(t *testing.T) {
	fx := newFixture(t)
	fx.runAdaptive(t, file(adaptive("a", "12h"), connB), 2)
	rev := fx.revision(t, "a")
	firstTicks := fx.counter("first_ticks")

	fx.ask(t, bus.Adapt{Connector: "a", Type: "fake", IntervalSeconds: 12 * 3600, Revision: rev})
	require.Eventually(t, func() bool { return fx.firesEvery(t, "a") == 12*time.Hour }, inEffect, 10*time.Millisecond,
		"the schedule does not fire at the interval asked for within %s", inEffect)
	s, _ := fx.schedule(t, "fake", "a")
	assert.Equal(t, Spec("a", 12*time.Hour), s.spec)
	assert.Equal(t, rev, s.tick.GetRevision())
	assert.Equal(t, 6*time.Hour, fx.firesEvery(t, "b"), "only the connector asked for changes")
	assert.Equal(t, firstTicks, fx.counter("first_ticks"), "an adaptation sends no first tick")
	assert.Equal(t, 1.0, fx.adaptations())
	assert.Equal(t, 1.0, fx.adapted())
}

func TestAdaptRequestsIgnored(t *testing.T) {
	fx := newFixture(t)
	// c answers a valid request after each ignored one: the leader takes
	// requests in order, so once c's schedule changed, the one before was
	// taken and dropped.
	fx.runAdaptive(t, file(adaptive("a", "12h", "1"), connB, adaptive("c", "12h")), 3)
	stale := fx.revision(t, "a")
	fx.apply(t, file(adaptive("a", "12h", "2"), connB, adaptive("c", "12h")))
	rev := fx.revision(t, "a")
	require.Eventually(t, func() bool {
		s, ok := fx.schedule(t, "fake", "a")
		return ok && s.tick.GetRevision() == rev
	}, inEffect, 10*time.Millisecond)
	cRev := fx.revision(t, "c")

	for i, tc := range []struct {
		name string
		req  bus.Adapt
	}{
		{"below min", bus.Adapt{Connector: "a", Type: "fake", IntervalSeconds: 1800, Revision: rev}},
		{"above max", bus.Adapt{Connector: "a", Type: "fake", IntervalSeconds: 24 * 3600, Revision: rev}},
		{"zero", bus.Adapt{Connector: "a", Type: "fake", IntervalSeconds: 0, Revision: rev}},
		{"negative", bus.Adapt{Connector: "a", Type: "fake", IntervalSeconds: -3600, Revision: rev}},
		{"stale revision", bus.Adapt{Connector: "a", Type: "fake", IntervalSeconds: 12 * 3600, Revision: stale}},
		{"other type", bus.Adapt{Connector: "a", Type: "other", IntervalSeconds: 12 * 3600, Revision: rev}},
		{"not adaptive", bus.Adapt{Connector: "b", Type: "fake", IntervalSeconds: 12 * 3600, Revision: fx.revision(t, "b")}},
		{"unknown connector", bus.Adapt{Connector: "zz", Type: "fake", IntervalSeconds: 12 * 3600, Revision: rev}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx.ask(t, tc.req)
			barrier := []time.Duration{2 * time.Hour, 3 * time.Hour}[i%2]
			fx.ask(t, bus.Adapt{Connector: "c", Type: "fake", IntervalSeconds: int64(barrier / time.Second), Revision: cRev})
			require.Eventually(t, func() bool { return fx.firesEvery(t, "c") == barrier }, inEffect, 10*time.Millisecond)
			assert.Equal(t, 6*time.Hour, fx.firesEvery(t, "a"))
			assert.Equal(t, 6*time.Hour, fx.firesEvery(t, "b"))
			assert.Equal(t, float64(i+1), fx.adaptations(), "only c's requests count")
		})
	}
	require.NoError(t, fx.nc.Publish(bus.AdaptSubject, []byte("not json")))
	require.NoError(t, fx.nc.Flush())
	assert.Equal(t, 1.0, fx.adapted(), "only c holds an effective interval")
}

func TestSyncsKeepTheEffectiveInterval(t *testing.T) {
	fx := newFixture(t)
	fx.runAdaptive(t, file(adaptive("a", "12h", "1"), connB), 2)
	fx.ask(t, bus.Adapt{Connector: "a", Type: "fake", IntervalSeconds: 12 * 3600, Revision: fx.revision(t, "a")})
	require.Eventually(t, func() bool { return fx.firesEvery(t, "a") == 12*time.Hour }, inEffect, 10*time.Millisecond)

	// Something installs the configured interval again (a resume on another
	// replica does): the full sync puts the effective one back.
	c, ok := fx.index.Connector("a")
	require.True(t, ok)
	configured, err := newDefinition(c)
	require.NoError(t, err)
	_, err = fx.js.PublishMsg(fx.ctx, configured.msg())
	require.NoError(t, err)
	require.Equal(t, 6*time.Hour, fx.firesEvery(t, "a"))
	fx.s.resync <- struct{}{}
	require.Eventually(t, func() bool { return fx.firesEvery(t, "a") == 12*time.Hour }, inEffect, 10*time.Millisecond,
		"the full sync did not install the effective interval")

	// A change of the definition that keeps its bounds keeps it too.
	fx.apply(t, file(adaptive("a", "12h", "2"), connB))
	rev := fx.revision(t, "a")
	require.Eventually(t, func() bool {
		s, ok := fx.schedule(t, "fake", "a")
		return ok && s.tick.GetRevision() == rev
	}, inEffect, 10*time.Millisecond)
	assert.Equal(t, 12*time.Hour, fx.firesEvery(t, "a"), "the change pass undid the effective interval")
	assert.Equal(t, 1.0, fx.adaptations())
	assert.Equal(t, 1.0, fx.adapted())
}

func TestChangedBoundsDropTheEffectiveInterval(t *testing.T) {
	fx := newFixture(t)
	fx.runAdaptive(t, file(adaptive("a", "12h"), connB), 2)
	fx.ask(t, bus.Adapt{Connector: "a", Type: "fake", IntervalSeconds: 12 * 3600, Revision: fx.revision(t, "a")})
	require.Eventually(t, func() bool { return fx.firesEvery(t, "a") == 12*time.Hour }, inEffect, 10*time.Millisecond)

	fx.apply(t, file(adaptive("a", "24h"), connB))
	rev := fx.revision(t, "a")
	require.Eventually(t, func() bool {
		s, ok := fx.schedule(t, "fake", "a")
		return ok && s.tick.GetRevision() == rev
	}, inEffect, 10*time.Millisecond)
	assert.Equal(t, 6*time.Hour, fx.firesEvery(t, "a"), "new bounds: back to the configured interval")
	assert.Zero(t, fx.adapted())

	fx.ask(t, bus.Adapt{Connector: "a", Type: "fake", IntervalSeconds: 24 * 3600, Revision: rev})
	require.Eventually(t, func() bool { return fx.firesEvery(t, "a") == 24*time.Hour }, inEffect, 10*time.Millisecond)
	assert.Equal(t, 1.0, fx.adapted())

	fx.apply(t, file(connB)) // deleted: its interval goes with it
	require.Eventually(t, func() bool { _, ok := fx.schedule(t, "fake", "a"); return !ok }, inEffect, 10*time.Millisecond)
	assert.Zero(t, fx.adapted())
}

func TestCheckAdapt(t *testing.T) {
	a := catalog.Defined{Revision: 5, Name: "a", Type: "fake", Interval: time.Minute}
	a.Adaptive.Min, a.Adaptive.Max = 10*time.Second, 10*time.Minute
	fixed := a
	fixed.Adaptive.Min, fixed.Adaptive.Max = 0, 0
	req := func(secs int64, rev uint64) bus.Adapt {
		return bus.Adapt{Connector: "a", Type: "fake", IntervalSeconds: secs, Revision: rev}
	}
	for _, tc := range []struct {
		name  string
		req   bus.Adapt
		c     catalog.Defined
		found bool
		want  time.Duration
	}{
		{"at min", req(10, 5), a, true, 10 * time.Second},
		{"at max", req(600, 5), a, true, 10 * time.Minute},
		{"newer revision than the index", req(30, 6), a, true, 30 * time.Second},
		{"below min", req(9, 5), a, true, 0},
		{"above max", req(601, 5), a, true, 0},
		{"overflowing", req(1<<62, 5), a, true, 0},
		{"older revision", req(30, 4), a, true, 0},
		{"not adaptive", req(30, 5), fixed, true, 0},
		{"not found", req(30, 5), catalog.Defined{}, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why := checkAdapt(tc.req, tc.c, tc.found)
			assert.Equal(t, tc.want, got)
			assert.Equal(t, tc.want == 0, why != "", "a request is dropped with a reason: %q", why)
		})
	}
}
