package aggregator

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/history"
	"github.com/pollgrid/pollgrid/pkg/scheduler"
	"github.com/pollgrid/pollgrid/pkg/store"
)

func TestNextFireFollowsTheSchedulesPhase(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 7, 500_000_000, time.UTC)
	for _, interval := range []time.Duration{time.Second, 10 * time.Second, time.Minute, 5 * time.Minute, time.Hour, 6 * time.Hour} {
		c := config.Connector{Name: "conn-" + interval.String(), Interval: interval}
		next := NextFire(c, now, time.Time{})
		assert.True(t, next.After(now), "%s: %s is after now", interval, next)
		assert.LessOrEqual(t, next.Sub(now), interval, interval)
		phase := scheduler.Phase(c.Name, interval)
		assert.Equal(t, phase, time.Duration(next.Unix()%int64(interval/time.Second))*time.Second, "%s fires at its phase", interval)
	}
	// "@every" schedules: an interval after the last poll.
	c := config.Connector{Name: "odd", Interval: 7 * time.Second}
	assert.True(t, NextFire(c, now, time.Time{}).IsZero(), "unknown before the first poll")
	assert.Equal(t, now.Add(-time.Second).Add(7*time.Second), NextFire(c, now, now.Add(-time.Second)))
}

func TestRowHealth(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	a := &Aggregator{opts: Options{StaleAfter: 3, HealthyWindow: 5 * time.Minute}.withDefaults(), started: now.Add(-time.Hour)}
	c := config.Connector{Name: "c", Type: "feed", Enabled: true, Interval: time.Minute}
	// 60 an hour shared by 10: each gets a request every 10 minutes.
	onBudget := c
	onBudget.Budget = config.Budget{Name: "gh", Limit: 60, Per: time.Hour, Burst: 5, Connectors: 10}
	adaptive := c
	adaptive.Adaptive = config.Adaptive{Min: 10 * time.Second, Max: 10 * time.Minute}
	for _, tc := range []struct {
		name   string
		c      config.Connector
		st     store.State
		health string
		missed int64
		stale  bool
	}{
		{name: "ok", c: c, st: store.State{LastPoll: now.Add(-30 * time.Second), LastSuccess: now.Add(-30 * time.Second)}, health: admin.HealthOK},
		{name: "failing wins over stale", c: c, st: store.State{LastPoll: now.Add(-10 * time.Minute), ConsecutiveFailures: 2}, health: admin.HealthFailing, missed: 9, stale: true},
		{name: "stale after 3 missed intervals", c: c, st: store.State{LastPoll: now.Add(-4*time.Minute - time.Second)}, health: admin.HealthStale, missed: 3, stale: true},
		{name: "2 missed is not stale yet", c: c, st: store.State{LastPoll: now.Add(-3*time.Minute - time.Second)}, health: admin.HealthOK, missed: 2},
		{name: "backing off is not missing", c: c, st: store.State{LastPoll: now.Add(-10 * time.Minute), NotBefore: now.Add(time.Minute)}, health: admin.HealthOK},
		{name: "a resume restarts the count", c: c, st: store.State{LastPoll: now.Add(-time.Hour), ResumedAt: now.Add(-30 * time.Second)}, health: admin.HealthOK},
		{name: "paused", c: c, st: store.State{LastPoll: now.Add(-time.Hour), PausedAt: now.Add(-time.Hour)}, health: admin.HealthPaused, missed: 59},
		{name: "disabled", c: config.Connector{Name: "c", Interval: time.Minute}, st: store.State{}, health: admin.HealthDisabled, missed: 59},
		{name: "never polled since the aggregator started: stale", c: c, st: store.State{}, health: admin.HealthStale, missed: 59, stale: true},
		{name: "on a budget, due at its fair share", c: onBudget, st: store.State{LastPoll: now.Add(-25 * time.Minute)}, health: admin.HealthOK, missed: 1},
		{name: "on a budget, stale past 3 fair shares", c: onBudget, st: store.State{LastPoll: now.Add(-41 * time.Minute)}, health: admin.HealthStale, missed: 3, stale: true},
		{name: "adaptive, due at its effective interval", c: adaptive, st: store.State{LastPoll: now.Add(-25 * time.Minute), EffectiveInterval: 10 * time.Minute},
			health: admin.HealthOK, missed: 1},
		{name: "adaptive, stale past 3 effective intervals", c: adaptive, st: store.State{LastPoll: now.Add(-45 * time.Second), EffectiveInterval: 10 * time.Second},
			health: admin.HealthStale, missed: 3, stale: true},
		{name: "adaptive, never polled: its interval", c: adaptive, st: store.State{}, health: admin.HealthStale, missed: 59, stale: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := a.row(tc.c, tc.st, history.ConnectorMetrics{}, now)
			assert.Equal(t, tc.health, r.Health)
			assert.Equal(t, tc.missed, r.MissedIntervals)
			assert.Equal(t, tc.stale, r.Stale)
		})
	}
	fixed := a.row(c, store.State{LastPoll: now}, history.ConnectorMetrics{}, now)
	assert.Empty(t, fixed.Adaptive)
	assert.Empty(t, fixed.EffectiveInterval, "a fixed interval has no effective one")
	r := a.row(adaptive, store.State{LastPoll: now.Add(-10 * time.Second), EffectiveInterval: 33750 * time.Millisecond}, history.ConnectorMetrics{}, now)
	assert.Equal(t, "10s..10m", r.Adaptive)
	assert.Equal(t, "34s", r.EffectiveInterval, "whole seconds, as its ticks fire")
	require.NotNil(t, r.NextDue)
	assert.Equal(t, NextFire(config.Connector{Name: "c", Interval: 34 * time.Second}, now, now.Add(-10*time.Second)), *r.NextDue,
		"next due at the effective interval's schedule")
	fresh := &Aggregator{opts: a.opts, started: now.Add(-time.Minute)}
	assert.Equal(t, admin.HealthNew, fresh.row(c, store.State{}, history.ConnectorMetrics{}, now).Health)
}

func TestBudgetUseSummary(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { t := now.Add(d); return &t }
	b := admin.BudgetUse{Name: "github-main", Rate: "60 per 1m (burst 5)", Connectors: 20, FairEverySeconds: 20}
	for _, tc := range []struct {
		name string
		use  func(admin.BudgetUse) admin.BudgetUse
		want string
	}{
		{"spent", func(u admin.BudgetUse) admin.BudgetUse {
			u.NextAt, u.FullAt = at(14*time.Second), at(18*time.Second)
			return u
		}, "github-main: 60 per 1m (burst 5), shared by 20 connectors (a request every 20s each when all want more); spent: the next request in 14s"},
		{"some left", func(u admin.BudgetUse) admin.BudgetUse {
			u.Remaining, u.NextAt, u.FullAt = 3, at(0), at(2*time.Second)
			return u
		}, "; 3 left now, whole in 2s"},
		{"whole", func(u admin.BudgetUse) admin.BudgetUse {
			u.Remaining, u.NextAt, u.FullAt = 5, at(0), at(0)
			return u
		}, "; 5 left now (whole)"},
		{"unknown", func(u admin.BudgetUse) admin.BudgetUse {
			u.Remaining, u.Error = -1, "budget github-main: read: connection refused"
			return u
		}, "; use unknown (budget github-main: read: connection refused)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Contains(t, tc.use(b).Summary(now), tc.want)
		})
	}
}
