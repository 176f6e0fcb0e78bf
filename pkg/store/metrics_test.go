package store_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pollgrid/pollgrid/pkg/store"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

const (
	success = pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS
	failure = pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE
	skipped = pollgridv1.PollOutcome_POLL_OUTCOME_SKIPPED
)

func report(name string, outcome pollgridv1.PollOutcome, started time.Time, took time.Duration) *pollgridv1.PollReport {
	r := &pollgridv1.PollReport{
		Connector:     name,
		ConnectorType: "weather-noaa",
		Worker:        "worker-1",
		Outcome:       outcome,
		StartedAt:     timestamppb.New(started),
		Duration:      durationpb.New(took),
		FencingToken:  7,
		TraceId:       "4bf92f3577b34da6a3ce929d0e0e4736",
	}
	switch outcome {
	case success:
		r.ItemsFetched, r.ItemsPublished, r.ItemsFailed = 10, 2, 1
	case failure:
		r.Error = "GET /alerts: 503 Service Unavailable"
	case skipped:
		r.Error = "lease held"
	}
	return r
}

func TestMetrics(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, store.Options{})

	// 20 polls that ran: latencies 10ms..200ms (p95 nearest rank = 19th = 190ms),
	// 15 successes and 5 failures, then 2 skips.
	var at time.Time
	for i := range 20 {
		at = t0.Add(time.Duration(i) * time.Minute)
		outcome := success
		if i%4 == 3 {
			outcome = failure
		}
		require.NoError(t, s.RecordReport(ctx, report("noaa", outcome, at, time.Duration(i+1)*10*time.Millisecond)))
	}
	lastRan := at
	for i := range 2 {
		require.NoError(t, s.RecordReport(ctx, report("noaa", skipped, lastRan.Add(time.Duration(i+1)*time.Second), 0)))
	}
	lastSuccess := t0.Add(18 * time.Minute) // i=19 failed
	lastFailure := t0.Add(19 * time.Minute)

	for _, tc := range []struct {
		name        string
		window      time.Duration
		now         time.Time
		wantHealthy bool
	}{
		{name: "success within the window", window: 5 * time.Minute, now: lastSuccess.Add(5 * time.Minute), wantHealthy: true},
		{name: "success older than the window", window: 5 * time.Minute, now: lastSuccess.Add(5*time.Minute + time.Millisecond), wantHealthy: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, found, err := s.Metrics(ctx, "noaa", tc.window, tc.now)
			require.NoError(t, err)
			require.True(t, found)
			assert.Equal(t, "noaa", m.Name)
			assert.Equal(t, "weather-noaa", m.Type)
			assert.Equal(t, int64(22), m.Polls)
			assert.Equal(t, int64(15), m.Successes)
			assert.Equal(t, int64(5), m.Failures)
			assert.Equal(t, int64(2), m.Skipped)
			assert.InDelta(t, 0.75, m.SuccessRate, 1e-9)
			assert.Equal(t, int64(150), m.ItemsFetched)
			assert.Equal(t, int64(30), m.ItemsPublished)
			assert.Equal(t, int64(15), m.ItemsFailed)
			assert.InDelta(t, 0.105, m.LatencyAvgSeconds, 1e-9, "mean of 10..200ms; skips do not count")
			assert.InDelta(t, 0.190, m.LatencyP95Seconds, 1e-9)
			require.NotNil(t, m.LastPoll)
			assert.Equal(t, lastRan, *m.LastPoll, "a skip is not a poll")
			require.NotNil(t, m.LastSuccess)
			assert.Equal(t, lastSuccess, *m.LastSuccess)
			require.NotNil(t, m.LastErrorAt)
			assert.Equal(t, lastFailure, *m.LastErrorAt)
			assert.Equal(t, "GET /alerts: 503 Service Unavailable", m.LastError, "a skip's reason is not an error")
			assert.Equal(t, tc.wantHealthy, m.Healthy)
		})
	}
}

func TestMetricsEdgeCases(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, store.Options{})

	_, found, err := s.Metrics(ctx, "unknown", time.Hour, t0)
	require.NoError(t, err)
	assert.False(t, found)

	require.NoError(t, s.RecordReport(ctx, report("skips-only", skipped, t0, 0)))
	m, found, err := s.Metrics(ctx, "skips-only", time.Hour, t0)
	require.NoError(t, err)
	require.True(t, found)
	assert.Equal(t, store.ConnectorMetrics{Name: "skips-only", Type: "weather-noaa", Polls: 1, Skipped: 1}, m,
		"no success rate, latency or times without a poll that ran")

	require.NoError(t, s.RecordReport(ctx, report("sub-ms", success, t0, 400*time.Microsecond)))
	m, _, err = s.Metrics(ctx, "sub-ms", time.Hour, t0)
	require.NoError(t, err)
	assert.InDelta(t, 0.0004, m.LatencyAvgSeconds, 1e-12, "sub-millisecond polls are not rounded to 0")
	assert.True(t, m.Healthy)

	err = s.RecordReport(ctx, &pollgridv1.PollReport{Connector: "c", StartedAt: timestamppb.New(t0)})
	assert.ErrorContains(t, err, "outcome")
	err = s.RecordReport(ctx, &pollgridv1.PollReport{Connector: "c", Outcome: success})
	assert.ErrorContains(t, err, "started_at")
	err = s.RecordReport(ctx, &pollgridv1.PollReport{Outcome: success, StartedAt: timestamppb.New(t0)})
	assert.ErrorContains(t, err, "empty connector name")
}

func TestLatencyWindow(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, store.Options{})
	// 20 slow polls, then LatencyWindow fast ones: the slow ones drop out.
	for i := range 20 + store.LatencyWindow {
		took := 10 * time.Second
		if i >= 20 {
			took = time.Duration(i-19) * time.Millisecond // 1..100ms
		}
		require.NoError(t, s.RecordReport(ctx, report("c", success, t0.Add(time.Duration(i)*time.Second), took)))
	}
	assert.Equal(t, int64(store.LatencyWindow), rdb.LLen(ctx, "pollgrid:{c}:latency").Val())
	m, _, err := s.Metrics(ctx, "c", time.Hour, t0)
	require.NoError(t, err)
	assert.InDelta(t, 0.0505, m.LatencyAvgSeconds, 1e-9)
	assert.InDelta(t, 0.095, m.LatencyP95Seconds, 1e-9)
	assert.Equal(t, int64(120), m.Polls, "counters are not windowed")
}

func TestAllMetrics(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, store.Options{})

	all, err := s.AllMetrics(ctx, time.Hour, t0)
	require.NoError(t, err)
	assert.Empty(t, all)

	for _, name := range []string{"zeta", "alpha", "mid"} {
		require.NoError(t, s.RecordReport(ctx, report(name, success, t0, time.Second)))
	}
	require.NoError(t, s.RecordReport(ctx, report("mid", failure, t0.Add(time.Minute), time.Second)))

	all, err = s.AllMetrics(ctx, time.Hour, t0.Add(2*time.Minute))
	require.NoError(t, err)
	require.Len(t, all, 3)
	assert.Equal(t, []string{"alpha", "mid", "zeta"}, []string{all[0].Name, all[1].Name, all[2].Name})
	one, _, err := s.Metrics(ctx, "mid", time.Hour, t0.Add(2*time.Minute))
	require.NoError(t, err)
	assert.Equal(t, one, all[1], "AllMetrics and Metrics agree")
	assert.InDelta(t, 0.5, all[1].SuccessRate, 1e-9)

	out, err := json.Marshal(all[1])
	require.NoError(t, err)
	var fields map[string]any
	require.NoError(t, json.Unmarshal(out, &fields))
	for _, f := range []string{"name", "type", "polls", "successes", "failures", "skipped", "success_rate",
		"items_fetched", "items_published", "items_failed", "latency_avg_seconds", "latency_p95_seconds",
		"last_poll", "last_success", "last_error_at", "last_error", "healthy"} {
		assert.Contains(t, fields, f)
	}
}

func TestHistory(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, store.Options{})
	day := 24 * time.Hour

	// Recorded out of order, as reports from several workers arrive.
	starts := []time.Time{t0.Add(3 * time.Minute), t0, t0.Add(time.Minute), t0.Add(2 * time.Minute)}
	for i, at := range starts {
		r := report("c", success, at, time.Second)
		r.FencingToken = uint64(i + 1)
		require.NoError(t, s.RecordReport(ctx, r))
	}

	for _, tc := range []struct {
		name  string
		since time.Time
		limit int
		want  []time.Time
	}{
		{name: "all, oldest first", since: time.Time{}, want: []time.Time{t0, t0.Add(time.Minute), t0.Add(2 * time.Minute), t0.Add(3 * time.Minute)}},
		{name: "since is inclusive", since: t0.Add(2 * time.Minute), want: []time.Time{t0.Add(2 * time.Minute), t0.Add(3 * time.Minute)}},
		{name: "limit", since: t0, limit: 2, want: []time.Time{t0, t0.Add(time.Minute)}},
		{name: "nothing since", since: t0.Add(time.Hour), want: []time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.History(ctx, "c", tc.since, tc.limit)
			require.NoError(t, err)
			times := make([]time.Time, len(got))
			for i, r := range got {
				times[i] = r.GetStartedAt().AsTime()
			}
			assert.Equal(t, tc.want, times)
		})
	}

	got, err := s.History(ctx, "c", t0, 1)
	require.NoError(t, err)
	require.Len(t, got, 1)
	want := report("c", success, t0, time.Second)
	want.FencingToken = 2
	assert.True(t, proto.Equal(want, got[0]), "the report round-trips: %v", got[0])

	raw, err := rdb.ZRange(ctx, "pollgrid:{c}:history", 0, 0).Result()
	require.NoError(t, err)
	require.Len(t, raw, 1)
	assert.NotContains(t, raw[0], " ", "compact JSON")
	assert.Contains(t, raw[0], `"connector_type":"weather-noaa"`, "proto field names")

	ttl := rdb.PTTL(ctx, "pollgrid:{c}:history").Val()
	assert.InDelta(t, float64(store.HistoryTTL), float64(ttl), float64(time.Minute), "history expires when reports stop")

	// A report 30 days and a minute after the first trims what is older than 30 days.
	require.NoError(t, s.RecordReport(ctx, report("c", success, t0.Add(30*day+90*time.Second), time.Second)))
	got, err = s.History(ctx, "c", time.Time{}, 0)
	require.NoError(t, err)
	var kept []time.Time
	for _, r := range got {
		kept = append(kept, r.GetStartedAt().AsTime())
	}
	assert.Equal(t, []time.Time{t0.Add(2 * time.Minute), t0.Add(3 * time.Minute), t0.Add(30*day + 90*time.Second)}, kept)

	none, err := s.History(ctx, "unknown", time.Time{}, 10)
	require.NoError(t, err)
	assert.Empty(t, none)
}

func TestRecordReportIsOneTransaction(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, store.Options{})
	require.NoError(t, s.RecordReport(ctx, report("c", success, t0, time.Second)))

	before := commandCalls(t, rdb)
	require.NoError(t, s.RecordReport(ctx, report("c", success, t0.Add(time.Minute), time.Second)))
	after := commandCalls(t, rdb)
	assert.Equal(t, before["exec"]+1, after["exec"], "one MULTI/EXEC")
	assert.Equal(t, before["multi"]+1, after["multi"])
}

// commandCalls reads how often the server ran each command.
func commandCalls(t *testing.T, rdb *redis.Client) map[string]int {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	require.NoError(t, err)
	calls := map[string]int{}
	for line := range strings.Lines(info) {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		n, _, _ := strings.Cut(rest, ",")
		calls[strings.TrimPrefix(name, "cmdstat_")], err = strconv.Atoi(n)
		require.NoError(t, err)
	}
	return calls
}
