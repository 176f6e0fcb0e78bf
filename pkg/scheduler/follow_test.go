package scheduler

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/catalog"
)

// file writes a connectors file of the connectors given as JSON objects.
func file(connectors ...string) string {
	return `{"connectors": [` + strings.Join(connectors, ",") + `]}`
}

// The intervals divide a day, so their schedules are cron expressions that
// fire at most a few times a day: none fires during a test.
const (
	connA     = `{"name": "a", "type": "fake", "interval": "6h"}`
	connB     = `{"name": "b", "type": "fake", "interval": "6h"}`
	connA12h  = `{"name": "a", "type": "fake", "interval": "12h"}`
	connAOff  = `{"name": "a", "type": "fake", "interval": "6h", "enabled": false}`
	connOther = `{"name": "a", "type": "other", "interval": "6h"}`
)

func TestNothingRemovedBeforeTheCatalogIsRead(t *testing.T) {
	fx := newFixture(t)
	// A schedule and a pending tick of a connector the catalog does not hold.
	orphan := catalog.Defined{Name: "orphan", Type: "fake", Enabled: true, Interval: 6 * time.Hour}
	d, err := newDefinition(orphan)
	require.NoError(t, err)
	_, err = fx.js.PublishMsg(fx.ctx, d.msg())
	require.NoError(t, err)
	_, err = fx.js.Publish(fx.ctx, bus.TickSubject("fake", "orphan"), d.body)
	require.NoError(t, err)

	fx.run(t, false) // leads, but the index follows nothing yet
	assert.Never(t, func() bool {
		_, ok := fx.schedule(t, "fake", "orphan")
		return !ok
	}, 500*time.Millisecond, 20*time.Millisecond, "a schedule was removed before the index held the catalog")
	_, ok := fx.pending(t, "fake", "orphan")
	assert.True(t, ok, "its pending tick stays too")

	fx.follow(t) // an empty catalog: now the orphan goes
	require.Eventually(t, func() bool {
		_, ok := fx.schedule(t, "fake", "orphan")
		return !ok
	}, inEffect, 10*time.Millisecond)
	_, ok = fx.pending(t, "fake", "orphan")
	assert.False(t, ok, "its pending tick was removed with it")
}

func TestNewConnectorScheduledAtOnce(t *testing.T) {
	fx := newFixture(t)
	fx.run(t, true)
	fx.apply(t, file(connA))
	rev := fx.revision(t, "a")

	require.Eventually(t, func() bool {
		_, scheduled := fx.schedule(t, "fake", "a")
		_, ticked := fx.pending(t, "fake", "a")
		return scheduled && ticked
	}, inEffect, 10*time.Millisecond, "no schedule and first tick within %s", inEffect)
	sched, _ := fx.schedule(t, "fake", "a")
	assert.Equal(t, Spec("a", 6*time.Hour), sched.spec)
	assert.Equal(t, "a", sched.tick.GetConnector())
	assert.Equal(t, 6*time.Hour, sched.tick.GetInterval().AsDuration())
	assert.Equal(t, rev, sched.tick.GetRevision())
	assert.Zero(t, sched.tick.GetBudgetSharers())
	first, _ := fx.pending(t, "fake", "a")
	assert.NotNil(t, first.tick.GetDueAt(), "a first tick is due now, not a fire of the schedule")
	assert.Equal(t, rev, first.tick.GetRevision(), "the first tick carries the revision too")
	assert.Equal(t, 1.0, fx.counter("first_ticks"))
	assert.Equal(t, 1.0, fx.counter("scheduled"))
}

func TestIntervalChangeReinstallsWithoutAFullRead(t *testing.T) {
	fx := newFixture(t)
	fx.run(t, true)
	fx.apply(t, file(connA, connB))
	require.Eventually(t, func() bool { return fx.counter("install") == 2 }, inEffect, 10*time.Millisecond)
	reads := fx.watchReads(t)

	fx.apply(t, file(connA12h, connB))
	rev := fx.revision(t, "a")
	require.Eventually(t, func() bool {
		s, ok := fx.schedule(t, "fake", "a")
		return ok && s.tick.GetRevision() == rev
	}, inEffect, 10*time.Millisecond, "the changed interval is not in effect within %s", inEffect)
	s, _ := fx.schedule(t, "fake", "a")
	assert.Equal(t, Spec("a", 12*time.Hour), s.spec)
	assert.Equal(t, 12*time.Hour, s.tick.GetInterval().AsDuration())
	assert.Equal(t, 3.0, fx.counter("install"), "b, unchanged, is not installed again")
	assert.Equal(t, 2.0, fx.counter("first_ticks"), "a connector changed is not new: no second first tick")
	assert.Zero(t, reads.all.Load(), "a change read every schedule")
	assert.Equal(t, int64(1), reads.some.Load())
	assert.Equal(t, 2.0, fx.counter("scheduled"))
}

func TestDeletedConnectorLosesScheduleAndPendingTick(t *testing.T) {
	fx := newFixture(t)
	fx.run(t, true)
	fx.apply(t, file(connA, connB))
	require.Eventually(t, func() bool { _, ok := fx.pending(t, "fake", "a"); return ok }, inEffect, 10*time.Millisecond)

	fx.apply(t, file(connB))
	require.Eventually(t, func() bool {
		_, scheduled := fx.schedule(t, "fake", "a")
		_, ticked := fx.pending(t, "fake", "a")
		return !scheduled && !ticked
	}, inEffect, 10*time.Millisecond, "a deleted connector's schedule or pending tick is left after %s", inEffect)
	_, ok := fx.schedule(t, "fake", "b")
	assert.True(t, ok, "the other connector keeps its schedule")
	assert.Equal(t, 1.0, fx.counter("remove"))
	assert.Equal(t, 1.0, fx.counter("scheduled"))
}

func TestDisabledConnectorLosesItsSchedule(t *testing.T) {
	fx := newFixture(t)
	fx.run(t, true)
	fx.apply(t, file(connA))
	require.Eventually(t, func() bool { _, ok := fx.pending(t, "fake", "a"); return ok }, inEffect, 10*time.Millisecond)

	fx.apply(t, file(connAOff))
	require.Eventually(t, func() bool {
		_, scheduled := fx.schedule(t, "fake", "a")
		_, ticked := fx.pending(t, "fake", "a")
		return !scheduled && !ticked
	}, inEffect, 10*time.Millisecond)
	assert.Zero(t, fx.counter("scheduled"))

	fx.apply(t, file(connA)) // enabled again: a new schedule, and a first tick (never polled)
	require.Eventually(t, func() bool {
		_, scheduled := fx.schedule(t, "fake", "a")
		_, ticked := fx.pending(t, "fake", "a")
		return scheduled && ticked
	}, inEffect, 10*time.Millisecond)
}

func TestTypeChangeMovesTheSchedule(t *testing.T) {
	fx := newFixture(t)
	fx.run(t, true)
	fx.apply(t, file(connA))
	require.Eventually(t, func() bool { _, ok := fx.schedule(t, "fake", "a"); return ok }, inEffect, 10*time.Millisecond)

	fx.apply(t, file(connOther))
	require.Eventually(t, func() bool {
		_, old := fx.schedule(t, "fake", "a")
		_, moved := fx.schedule(t, "other", "a")
		return !old && moved
	}, inEffect, 10*time.Millisecond, "the schedule did not move to the new type's subject")
	_, ok := fx.pending(t, "fake", "a")
	assert.False(t, ok, "the old type's pending tick goes with its schedule")
	assert.Equal(t, 1, fx.subjects(t, bus.SchedulePrefix+".>"))
}

func TestPausedConnectorStaysUnscheduledWhenItChanges(t *testing.T) {
	fx := newFixture(t)
	fx.run(t, true)
	fx.apply(t, file(connA))
	require.Eventually(t, func() bool { _, ok := fx.schedule(t, "fake", "a"); return ok }, inEffect, 10*time.Millisecond)
	_, err := fx.s.Pause(fx.ctx, []byte(`{"name": "a", "by": "test"}`))
	require.NoError(t, err)
	_, ok := fx.schedule(t, "fake", "a")
	require.False(t, ok)

	fx.apply(t, file(connA12h))
	rev := fx.revision(t, "a")
	require.Eventually(t, func() bool { c, ok := fx.index.Connector("a"); return ok && c.Revision == rev }, inEffect, 10*time.Millisecond)
	assert.Never(t, func() bool { _, ok := fx.schedule(t, "fake", "a"); return ok }, 2*changeDelay+200*time.Millisecond, 20*time.Millisecond,
		"a change brought a paused connector's schedule back")

	_, err = fx.s.Resume(fx.ctx, []byte(`{"name": "a"}`))
	require.NoError(t, err)
	s, ok := fx.schedule(t, "fake", "a")
	require.True(t, ok)
	assert.Equal(t, rev, s.tick.GetRevision(), "resume installs the latest definition")
}

func TestBudgetSharersChangeReinstalls(t *testing.T) {
	fx := newFixture(t)
	fx.run(t, true)
	budget := `"budgets": {"gh": {"limit": 60, "per": "1m"}}`
	shared := func(name string, enabled bool) string {
		return fmt.Sprintf(`{"name": %q, "type": "fake", "interval": "6h", "budget": "gh", "enabled": %t}`, name, enabled)
	}
	withBudget := func(connectors ...string) string {
		return `{` + budget + `, "connectors": [` + strings.Join(connectors, ",") + `]}`
	}
	solo := `{"name": "solo", "type": "fake", "interval": "6h"}`
	sharers := func(name string) uint32 {
		s, ok := fx.schedule(t, "fake", name)
		if !ok {
			return 0
		}
		return s.tick.GetBudgetSharers()
	}

	fx.apply(t, withBudget(shared("a", true), shared("b", true), solo))
	require.Eventually(t, func() bool { return sharers("a") == 2 && sharers("b") == 2 }, inEffect, 10*time.Millisecond)
	_, ok := fx.schedule(t, "fake", "solo")
	require.True(t, ok)
	assert.Zero(t, sharers("solo"), "no budget, no sharers")
	first, _ := fx.pending(t, "fake", "a")
	assert.Equal(t, uint32(2), first.tick.GetBudgetSharers(), "the first tick carries the sharers too")

	fx.apply(t, withBudget(shared("a", true), shared("b", true), shared("c", true), solo))
	require.Eventually(t, func() bool { return sharers("a") == 3 && sharers("b") == 3 && sharers("c") == 3 }, inEffect, 10*time.Millisecond,
		"a connector joining the budget did not reinstall its sharers")

	fx.apply(t, withBudget(shared("a", true), shared("b", true), shared("c", false), solo))
	require.Eventually(t, func() bool { return sharers("a") == 2 && sharers("b") == 2 }, inEffect, 10*time.Millisecond,
		"a sharer disabled did not reinstall the others")
	require.Eventually(t, func() bool { _, ok := fx.schedule(t, "fake", "c"); return !ok }, inEffect, 10*time.Millisecond,
		"the disabled sharer's schedule stayed")
}

func TestBigApplyIsInstalledInBatches(t *testing.T) {
	const n = 5000
	fx := newFixture(t)
	fx.s.first = newFirstTicks(n, firstTickRate) // every first tick at once: this test is about installs
	fx.run(t, true)
	connectors := make([]string, n)
	for i := range connectors {
		connectors[i] = fmt.Sprintf(`{"name": "c-%05d", "type": "fake", "interval": "6h"}`, i)
	}
	// The first connector alone first: once its schedule is in, the
	// leader's first full sync (which reads every schedule) is over, however
	// slow the machine, and only change passes follow.
	fx.apply(t, file(connectors[0]))
	require.Eventually(t, func() bool { _, ok := fx.schedule(t, "fake", "c-00000"); return ok }, time.Minute, 10*time.Millisecond)
	reads := fx.watchReads(t)
	fx.apply(t, file(connectors...))

	// Bounds for a loaded machine: the figures are make bench's.
	require.Eventually(t, func() bool {
		return fx.subjects(t, bus.SchedulePrefix+".>") == n && fx.subjects(t, bus.TickPrefix+".>") == n
	}, 2*time.Minute, 50*time.Millisecond, "not every connector got its schedule and first tick")
	require.Eventually(t, func() bool { return fx.counter("scheduled") == n }, inEffect, 10*time.Millisecond)
	assert.Equal(t, float64(n), fx.counter("install"), "each connector installed once")
	assert.Equal(t, float64(n), fx.counter("first_ticks"))
	assert.Equal(t, int64(2*n), fx.js.publishes.Load(), "a schedule and a first tick each, nothing published twice")
	// Each pass reads the schedules of its connectors installedPage at a
	// time: a read per connector would be thousands.
	assert.LessOrEqual(t, reads.some.Load(), int64(2*n/installedPage))
	assert.Zero(t, reads.all.Load())
	s, ok := fx.schedule(t, "fake", "c-04999")
	require.True(t, ok)
	assert.Equal(t, fx.revision(t, "c-04999"), s.tick.GetRevision())

	// Deleting them all removes every schedule and pending tick.
	fx.apply(t, file(connA))
	require.Eventually(t, func() bool {
		return fx.subjects(t, bus.SchedulePrefix+".>") == 1 && fx.subjects(t, bus.TickPrefix+".>") == 1
	}, time.Minute, 50*time.Millisecond)
	assert.Equal(t, float64(n), fx.counter("remove"))
	assert.Equal(t, 1.0, fx.counter("scheduled"))
}

func TestFirstTicksArePaced(t *testing.T) {
	const n, burst, perSecond = 60, 10, 20
	fx := newFixture(t)
	fx.s.first = newFirstTicks(burst, perSecond)
	fx.run(t, true)
	connectors := make([]string, n)
	for i := range connectors {
		connectors[i] = fmt.Sprintf(`{"name": "p-%02d", "type": "fake", "interval": "6h"}`, i)
	}
	start := time.Now()
	fx.apply(t, file(connectors...))
	require.Eventually(t, func() bool { return fx.counter("first_ticks") >= burst }, inEffect, 10*time.Millisecond)
	// The burst went at once; the other 50 take 50/20 = 2.5 s at least.
	assert.Less(t, fx.counter("first_ticks"), float64(n), "every first tick at once: not paced")
	assert.Positive(t, fx.counter("first_waiting"), "the rest wait, and the gauge says so")
	require.Eventually(t, func() bool { return fx.counter("first_ticks") == n }, inEffect+5*time.Second, 10*time.Millisecond,
		"not every new connector got its first tick")
	require.Eventually(t, func() bool { return fx.counter("first_waiting") == 0 }, time.Second, 10*time.Millisecond)
	assert.GreaterOrEqual(t, time.Since(start), time.Duration(n-burst)*time.Second/perSecond-500*time.Millisecond,
		"the first ticks beyond the burst came faster than their pace")
	assert.Equal(t, n, fx.subjects(t, bus.TickPrefix+".>"), "a first tick pending for each")
}

func TestFirstTickWaitingIsDroppedWhenItsScheduleFires(t *testing.T) {
	f := newFirstTicks(1, 1)
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	soon := catalog.Defined{Name: "soon", Interval: time.Minute}
	later := catalog.Defined{Name: "later", Interval: 6 * time.Hour}
	assert.Equal(t, []catalog.Defined{later}, f.add([]catalog.Defined{later, soon, later}, now), "the burst of one, at once")
	assert.Empty(t, f.add([]catalog.Defined{later}, now), "others wait: none go before them")
	assert.Empty(t, f.take(now), "no token left")
	// Once soon's schedule is under a second away, it waits no more.
	fires := NextFire("soon", time.Minute, now)
	got := f.take(fires.Add(-500 * time.Millisecond))
	assert.Equal(t, []catalog.Defined{later}, got, "soon dropped, later sent with the next token")
	assert.Len(t, f.queue, 1, "the last later waits for a token")
}

func TestNextFireIsThePhase(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	for _, iv := range []time.Duration{10 * time.Second, time.Minute, 15 * time.Minute, time.Hour, 6 * time.Hour, 24 * time.Hour} {
		for _, name := range []string{"a", "b", "weather-alerts"} {
			next := NextFire(name, iv, now)
			assert.True(t, next.After(now) && !next.After(now.Add(iv)), "%s every %s: %s not within an interval", name, iv, next)
			assert.Equal(t, Phase(name, iv), time.Duration(next.Unix()%int64(iv/time.Second))*time.Second,
				"%s every %s fires off its phase", name, iv)
		}
	}
	// "@every" fires an interval after its install.
	assert.Equal(t, now.Add(7*time.Second), NextFire("a", 7*time.Second, now))
	assert.Equal(t, now.Add(40*time.Second), NextFire("a", 40*time.Second, now), "40 s divides a day, not a minute: @every")
}

// A full sync reads every installed schedule once, readPage at a time,
// whatever pending ticks lie between them.
func TestEveryInstalledScheduleIsReadInPages(t *testing.T) {
	fx := newFixture(t)
	n := readPage + 7
	cs := make([]catalog.Defined, n)
	for i := range cs {
		cs[i] = catalog.Defined{Name: fmt.Sprintf("c-%05d", i), Type: "fake", Enabled: true, Interval: 6 * time.Hour}
	}
	require.NoError(t, fx.s.install(fx.ctx, cs[:n/2]))
	_, err := fx.js.Publish(fx.ctx, bus.TickSubject("fake", "c-00000"), []byte("a pending tick"))
	require.NoError(t, err)
	require.NoError(t, fx.s.install(fx.ctx, cs[n/2:]))

	reads := fx.watchReads(t)
	seen := map[string]int{}
	require.NoError(t, fx.s.eachInstalled(fx.ctx, nil, func(d definition) { seen[d.subject]++ }))
	assert.Len(t, seen, n)
	for subject, times := range seen {
		require.Equal(t, 1, times, subject)
	}
	assert.EqualValues(t, 2, reads.all.Load(), "a full page and the rest")
}

// Only the periodic resync yields between the pages it reads: the sync at
// election goes at full speed.
func TestOnlyThePeriodicResyncYields(t *testing.T) {
	fx := newFixture(t)
	fx.s.first = newFirstTicks(readPage+7, firstTickRate) // first ticks at once: this test is about reads
	var pauses atomic.Int64
	fx.s.resyncPause = func(_ context.Context, took time.Duration) error {
		assert.Positive(t, took, "a page takes time")
		pauses.Add(1)
		return nil
	}
	fx.s.opts.Resync = 3 * time.Second
	fx.twoPages(t)
	fx.run(t, true)

	require.Eventually(t, func() bool { return fx.fullSyncs(t) >= 1 }, time.Minute, 10*time.Millisecond)
	assert.Zero(t, pauses.Load(), "the sync at election did not yield")
	require.Eventually(t, func() bool { return fx.fullSyncs(t) >= 2 }, time.Minute, 10*time.Millisecond)
	assert.EqualValues(t, 1, pauses.Load(), "the periodic resync yielded once, between its two pages")
}

// twoPages installs two pages of schedules (readPage+7), c-00000 onwards at
// 6h, for connectors the catalog holds, and returns their definitions.
func (fx *fixture) twoPages(t *testing.T) []string {
	t.Helper()
	connectors := make([]string, readPage+7)
	cs := make([]catalog.Defined, len(connectors))
	for i := range connectors {
		connectors[i] = fmt.Sprintf(`{"name": "c-%05d", "type": "fake", "interval": "6h"}`, i)
		cs[i] = catalog.Defined{Name: fmt.Sprintf("c-%05d", i), Type: "fake", Enabled: true, Interval: 6 * time.Hour}
	}
	require.NoError(t, fx.s.install(fx.ctx, cs))
	fx.apply(t, file(connectors...))
	return connectors
}

// A change to the catalog made during a periodic resync is applied between
// two of its pages, not after it; and the resync, which began from the
// catalog before the change, leaves alone what that change pass did: a
// connector changed keeps its new schedule, one deleted stays removed, one
// added keeps the schedule it got (none of them is on the resync's first
// page, so the resync reads each after the pass).
func TestChangesDuringAResyncAreAppliedBetweenItsPages(t *testing.T) {
	fx := newFixture(t)
	fx.s.first = newFirstTicks(readPage+8, firstTickRate) // first ticks at once: this test is about schedules
	fx.s.opts.Resync = 3 * time.Second
	later := slices.Clone(fx.twoPages(t))
	later[readPage+3] = fmt.Sprintf(`{"name": "c-%05d", "type": "fake", "interval": "12h"}`, readPage+3)
	later = slices.Delete(later, readPage+5, readPage+6)
	later = append(later, `{"name": "c-new", "type": "fake", "interval": "6h"}`)
	changed, deleted := fmt.Sprintf("c-%05d", readPage+3), fmt.Sprintf("c-%05d", readPage+5)

	var reads *reads
	var pauses atomic.Int64
	fx.s.resyncPause = func(context.Context, time.Duration) error {
		if pauses.Add(1) > 1 {
			return nil
		}
		reads = fx.watchReads(t)
		fx.apply(t, file(later...))
		require.Eventually(t, func() bool { // the index has the change; the scheduler has not taken it
			c, _ := fx.index.Connector(changed)
			_, stays := fx.index.Connector(deleted)
			_, added := fx.index.Connector("c-new")
			return c.Interval == 12*time.Hour && !stays && added
		}, 10*time.Second, time.Millisecond)
		return nil
	}
	fx.run(t, true)
	require.Eventually(t, func() bool { return fx.fullSyncs(t) >= 2 }, time.Minute, 10*time.Millisecond)
	require.EqualValues(t, 1, pauses.Load(), "the periodic resync paused once, between its two pages")
	assert.True(t, strings.HasPrefix(reads.order(), "some all"),
		"after the pause, the changed connectors were read (a change pass), then the resync's next page: %s", reads.order())

	sched, ok := fx.schedule(t, "fake", changed)
	require.True(t, ok)
	assert.Equal(t, Spec(changed, 12*time.Hour), sched.spec, "the resync did not put back the definition it began with")
	_, ok = fx.schedule(t, "fake", deleted)
	assert.False(t, ok, "nor the schedule of a connector deleted meanwhile")
	_, ok = fx.schedule(t, "fake", "c-new")
	assert.True(t, ok, "nor removed one added meanwhile")
	assert.EqualValues(t, readPage+7, fx.counter("scheduled"), "one deleted, one added")
	assert.Equal(t, readPage+7, fx.subjects(t, bus.SchedulePrefix+".>"))
}
