package stack_test

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pollgrid/pollgrid/pkg/history"
	"github.com/pollgrid/pollgrid/pkg/store"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// The dev stack's embedded miniredis runs the aggregator's writes and reads:
// the record script sticks to commands miniredis implements, and behaves
// there as on Redis.
func TestReportsOnMiniredis(t *testing.T) {
	ctx := context.Background()
	m := miniredis.RunT(t)
	now := time.Now().UTC()
	m.SetTime(now)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	s := history.New(rdb, store.NewKeys(""))

	hour := now.Truncate(time.Hour)
	report := func(connector string, outcome pollgridv1.PollOutcome, started time.Time, took time.Duration) *pollgridv1.PollReport {
		return &pollgridv1.PollReport{Connector: connector, ConnectorType: "feed", Worker: "w", Outcome: outcome,
			StartedAt: timestamppb.New(started), Duration: durationpb.New(took), ItemsFetched: 4, ItemsPublished: 1,
			Error: map[bool]string{true: "503"}[outcome == pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE]}
	}
	const (
		success = pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS
		failure = pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE
		skipped = pollgridv1.PollOutcome_POLL_OUTCOME_SKIPPED
	)
	// Two flushes: the second adds to the first's buckets and closes its hour.
	first := []*pollgridv1.PollReport{
		report("a", success, hour.Add(-time.Hour+10*time.Second), 100*time.Millisecond),
		report("a", failure, hour.Add(-time.Hour+20*time.Second), 300*time.Millisecond),
		report("b", skipped, hour.Add(-time.Hour), 0),
	}
	second := []*pollgridv1.PollReport{
		report("a", success, hour.Add(-time.Hour+30*time.Second), 200*time.Millisecond),
		report("a", success, hour.Add(time.Second), 400*time.Millisecond),
	}
	require.NoError(t, s.RecordReports(ctx, first))
	require.NoError(t, s.RecordReports(ctx, second))

	all, err := s.AllMetrics(ctx, time.Hour, now)
	require.NoError(t, err)
	require.Len(t, all, 2)
	a := all[0]
	assert.Equal(t, "a", a.Name)
	assert.Equal(t, int64(4), a.Polls)
	assert.Equal(t, int64(3), a.Successes)
	assert.Equal(t, int64(1), a.Failures)
	assert.Equal(t, int64(16), a.ItemsFetched, "items of every report")
	assert.Equal(t, int64(4), a.ItemsPublished)
	assert.InDelta(t, 0.25, a.LatencyAvgSeconds, 1e-9)
	assert.InDelta(t, 0.4, a.LatencyP95Seconds, 1e-9)
	require.NotNil(t, a.LastSuccess)
	assert.Equal(t, hour.Add(time.Second), *a.LastSuccess)
	assert.Equal(t, "503", a.LastError)
	assert.True(t, a.Healthy)
	assert.Equal(t, history.ConnectorMetrics{Name: "b", Type: "feed", Polls: 1, Skipped: 1, ItemsFetched: 4, ItemsPublished: 1}, all[1])

	minutes, err := s.Rollups(ctx, "a", history.PerMinute, hour.Add(-2*time.Hour), hour.Add(time.Hour))
	require.NoError(t, err)
	require.Len(t, minutes, 2)
	assert.Equal(t, int64(3), minutes[0].Polls)
	assert.Equal(t, 600*time.Millisecond, minutes[0].LatencySum)
	assert.Equal(t, 300*time.Millisecond, minutes[0].LatencyMax)
	hours, err := s.Rollups(ctx, "a", history.PerHour, hour.Add(-2*time.Hour), hour.Add(time.Hour))
	require.NoError(t, err)
	require.Len(t, hours, 2)
	assert.Equal(t, []int64{3, 1}, []int64{hours[0].Polls, hours[1].Polls}, "a closed hour and the open one")

	recent, err := s.Recent(ctx, "a", 0)
	require.NoError(t, err)
	require.Len(t, recent, 4)
	assert.True(t, proto.Equal(second[1], recent[3]), "the newest, last")

	quarters, err := s.Rollups(ctx, "a", history.PerQuarterHour, hour.Add(-2*time.Hour), hour.Add(time.Hour))
	require.NoError(t, err)
	assert.Len(t, quarters, 2)
	days, err := s.Rollups(ctx, "a", history.PerDay, hour.Add(-48*time.Hour), hour.Add(time.Hour))
	require.NoError(t, err)
	var polls int64
	for _, d := range days {
		polls += d.Polls
	}
	assert.Equal(t, int64(4), polls)

	// A day later a new poll's minute takes the ring: the old minutes are
	// past it; quarter-hours keep a day, days keep 30.
	later := hour.Add(26 * time.Hour)
	m.FastForward(26 * time.Hour)
	require.NoError(t, s.RecordReports(ctx, []*pollgridv1.PollReport{report("a", success, later, 100*time.Millisecond)}))
	minutes, err = s.Rollups(ctx, "a", history.PerMinute, hour.Add(-2*time.Hour), later.Add(time.Hour))
	require.NoError(t, err)
	assert.Len(t, minutes, 1, "the new minute only")
	quarters, err = s.Rollups(ctx, "a", history.PerQuarterHour, hour.Add(-2*time.Hour), later.Add(time.Hour))
	require.NoError(t, err)
	assert.Len(t, quarters, 1, "a day of quarter-hours: the old ones are past it")
	days, err = s.Rollups(ctx, "a", history.PerDay, hour.Add(-48*time.Hour), later.Add(time.Hour))
	require.NoError(t, err)
	polls = 0
	for _, d := range days {
		polls += d.Polls
	}
	assert.Equal(t, int64(5), polls)

	// A connector that stops reporting: its history expires, its counters stay.
	m.FastForward(history.HistoryTTL + time.Minute)
	recent, err = s.Recent(ctx, "a", 0)
	require.NoError(t, err)
	assert.Empty(t, recent)
	a2, found, err := s.Metrics(ctx, "a", time.Hour, later)
	require.NoError(t, err)
	require.True(t, found)
	assert.Equal(t, int64(5), a2.Polls)
}
