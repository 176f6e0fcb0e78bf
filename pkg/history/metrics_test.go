package history_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pollgrid/pollgrid/pkg/history"
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

// record writes reports one RecordReports call each, as separate flushes would.
func record(ctx context.Context, s *history.Store, reports ...*pollgridv1.PollReport) error {
	for _, r := range reports {
		if err := s.RecordReports(ctx, []*pollgridv1.PollReport{r}); err != nil {
			return err
		}
	}
	return nil
}

// shuffled is reports in a random order, as a batch from several workers
// arrives.
func shuffled(reports []*pollgridv1.PollReport) []*pollgridv1.PollReport {
	out := slices.Clone(reports)
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func TestMetrics(t *testing.T) {
	ctx := context.Background()

	// 20 polls that ran: latencies 10ms..200ms (p95 nearest rank = 19th = 190ms),
	// 15 successes and 5 failures, then 2 skips.
	var (
		at      time.Time
		reports []*pollgridv1.PollReport
	)
	for i := range 20 {
		at = t0.Add(time.Duration(i) * time.Minute)
		outcome := success
		if i%4 == 3 {
			outcome = failure
		}
		reports = append(reports, report("noaa", outcome, at, time.Duration(i+1)*10*time.Millisecond))
	}
	lastRan := at
	for i := range 2 {
		reports = append(reports, report("noaa", skipped, lastRan.Add(time.Duration(i+1)*time.Second), 0))
	}
	oneByOne, _ := newStore(t)
	require.NoError(t, record(ctx, oneByOne, reports...))
	oneBatch, _ := newStore(t)
	require.NoError(t, oneBatch.RecordReports(ctx, shuffled(reports)))

	lastSuccess := t0.Add(18 * time.Minute) // i=19 failed
	lastFailure := t0.Add(19 * time.Minute)

	for _, tc := range []struct {
		name        string
		store       *history.Store
		window      time.Duration
		now         time.Time
		wantHealthy bool
	}{
		{name: "one by one: success within the window", store: oneByOne, window: 5 * time.Minute, now: lastSuccess.Add(5 * time.Minute), wantHealthy: true},
		{name: "one by one: success older than the window", store: oneByOne, window: 5 * time.Minute, now: lastSuccess.Add(5*time.Minute + time.Millisecond), wantHealthy: false},
		{name: "one shuffled batch: success within the window", store: oneBatch, window: 5 * time.Minute, now: lastSuccess.Add(5 * time.Minute), wantHealthy: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, found, err := tc.store.Metrics(ctx, "noaa", tc.window, tc.now)
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
	s, _ := newStore(t)

	_, found, err := s.Metrics(ctx, "unknown", time.Hour, t0)
	require.NoError(t, err)
	assert.False(t, found)

	require.NoError(t, record(ctx, s, report("skips-only", skipped, t0, 0)))
	m, found, err := s.Metrics(ctx, "skips-only", time.Hour, t0)
	require.NoError(t, err)
	require.True(t, found)
	assert.Equal(t, history.ConnectorMetrics{Name: "skips-only", Type: "weather-noaa", Polls: 1, Skipped: 1}, m,
		"no success rate, latency or times without a poll that ran")

	require.NoError(t, record(ctx, s, report("sub-ms", success, t0, 400*time.Microsecond)))
	m, _, err = s.Metrics(ctx, "sub-ms", time.Hour, t0)
	require.NoError(t, err)
	assert.InDelta(t, 0.0004, m.LatencyAvgSeconds, 1e-12, "sub-millisecond polls are not rounded to 0")
	assert.True(t, m.Healthy)

	for _, tc := range []struct {
		name    string
		invalid *pollgridv1.PollReport
		want    string
	}{
		{name: "no outcome", invalid: &pollgridv1.PollReport{Connector: "c", StartedAt: timestamppb.New(t0)}, want: "outcome"},
		{name: "no started_at", invalid: &pollgridv1.PollReport{Connector: "c", Outcome: success}, want: "started_at"},
		{name: "no connector", invalid: &pollgridv1.PollReport{Outcome: success, StartedAt: timestamppb.New(t0)}, want: "empty connector name"},
		{name: "brace in the name", invalid: &pollgridv1.PollReport{Connector: "a}b", Outcome: success, StartedAt: timestamppb.New(t0)}, want: "brace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.ErrorIs(t, history.ValidateReport(tc.invalid), history.ErrInvalidReport)
			err := s.RecordReports(ctx, []*pollgridv1.PollReport{report("batch-mate", success, t0, time.Second), tc.invalid})
			assert.ErrorIs(t, err, history.ErrInvalidReport)
			assert.ErrorContains(t, err, tc.want)
			_, found, err := s.Metrics(ctx, "batch-mate", time.Hour, t0)
			require.NoError(t, err)
			assert.False(t, found, "a batch with an invalid report writes nothing")
		})
	}
	assert.NoError(t, s.RecordReports(ctx, nil), "an empty batch is no error")
}

func TestLatencyWindow(t *testing.T) {
	ctx := context.Background()
	// 20 slow polls, then LatencyWindow fast ones: the slow ones drop out.
	var reports []*pollgridv1.PollReport
	for i := range 20 + history.LatencyWindow {
		took := 10 * time.Second
		if i >= 20 {
			took = time.Duration(i-19) * time.Millisecond // 1..100ms
		}
		reports = append(reports, report("c", success, t0.Add(time.Duration(i)*time.Second), took))
	}
	for _, tc := range []struct {
		name  string
		write func(*history.Store) error
	}{
		{name: "one by one", write: func(s *history.Store) error { return record(ctx, s, reports...) }},
		{name: "one shuffled batch", write: func(s *history.Store) error { return s.RecordReports(ctx, shuffled(reports)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, rdb := newStore(t)
			require.NoError(t, tc.write(s))
			assert.Equal(t, string([]byte{history.LatencyWindow}), rdb.GetRange(ctx, "pollgrid:{c}:history", 1, 1).Val(),
				"the window holds LatencyWindow durations")
			m, _, err := s.Metrics(ctx, "c", time.Hour, t0)
			require.NoError(t, err)
			assert.InDelta(t, 0.0505, m.LatencyAvgSeconds, 1e-9)
			assert.InDelta(t, 0.095, m.LatencyP95Seconds, 1e-9)
			assert.Equal(t, int64(120), m.Polls, "counters are not windowed")
		})
	}
}

func TestAllMetrics(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)

	all, err := s.AllMetrics(ctx, time.Hour, t0)
	require.NoError(t, err)
	assert.Empty(t, all)

	for _, name := range []string{"zeta", "alpha", "mid"} {
		require.NoError(t, record(ctx, s, report(name, success, t0, time.Second)))
	}
	require.NoError(t, record(ctx, s, report("mid", failure, t0.Add(time.Minute), time.Second)))

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
