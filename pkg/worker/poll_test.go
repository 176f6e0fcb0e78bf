package worker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/store"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

func TestHeldLeaseNaksTheTickUntilItExpires(t *testing.T) {
	fx := newFixture(t, Options{})
	_, _, err := fx.st.Acquire(context.Background(), "feed", "other-worker", 20*time.Second, store.ClaimTick)
	require.NoError(t, err)

	ack := &answers{}
	fx.w.run(context.Background(), tickOf(feed()), ack)

	got := ack.list()
	require.Len(t, got, 1)
	delay, err := time.ParseDuration(strings.TrimPrefix(got[0], "nak "))
	require.NoError(t, err, "a nak with a delay: %q", got[0])
	assert.Greater(t, delay, 19*time.Second, "the lease's time left, and a little more")
	assert.LessOrEqual(t, delay, 20*time.Second+100*time.Millisecond)
	assert.Zero(t, fx.connectorPolls(), "never two polls of one connector at once")
	report := fx.onlyReport(t)
	assert.Equal(t, pollgridv1.PollOutcome_POLL_OUTCOME_SKIPPED, report.GetOutcome())
	assert.Contains(t, report.GetError(), "lease held by another poll")
	assert.InDelta(t, 1, testutil.ToFloat64(fx.w.metrics.contention.WithLabelValues(feedType)), 0)
}

func TestPausedOrWaitingConnectorIsSkippedWithTheReason(t *testing.T) {
	later := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	tests := []struct {
		name    string
		prepare func(t *testing.T, fx *fixture)
		want    []string // in the report's error
	}{
		{name: "paused", prepare: func(t *testing.T, fx *fixture) {
			_, _, err := fx.st.Pause(context.Background(), "feed", "alice", time.Now())
			require.NoError(t, err)
		}, want: []string{"paused since ", " by alice (pollctl resume)"}},
		{name: "the upstream's wait", prepare: func(t *testing.T, fx *fixture) {
			fx.commitState(t, "feed", store.State{NotBefore: later, NotBeforeBy: store.WaitUpstream, ConsecutiveFailures: 1})
		}, want: []string{"the upstream asked to wait until " + later.UTC().Format(time.RFC3339)}},
		{name: "our back-off", prepare: func(t *testing.T, fx *fixture) {
			fx.commitState(t, "feed", store.State{NotBefore: later, NotBeforeBy: store.WaitBackoff, ConsecutiveFailures: 3,
				LastError: "poll feed: upstream answered 503"})
		}, want: []string{"backing off until " + later.UTC().Format(time.RFC3339) + " after 3 failed polls in a row",
			"the last: poll feed: upstream answered 503"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, Options{})
			tt.prepare(t, fx)
			ack := &answers{}
			fx.w.run(context.Background(), tickOf(feed()), ack)

			assert.Equal(t, []string{"ack"}, ack.list(), "nothing to do until the next tick")
			assert.Zero(t, fx.connectorPolls())
			report := fx.onlyReport(t)
			assert.Equal(t, pollgridv1.PollOutcome_POLL_OUTCOME_SKIPPED, report.GetOutcome())
			for _, want := range tt.want {
				assert.Contains(t, report.GetError(), want)
			}
			assert.InDelta(t, 1, testutil.ToFloat64(fx.w.metrics.polls.WithLabelValues(feedType, "skipped")), 0)
		})
	}
}

func TestCrashLoopFailsBacksOffAndSaysWhy(t *testing.T) {
	fx := newFixture(t, Options{})
	ctx := context.Background()
	fx.commitState(t, "feed", store.State{ConsecutiveFailures: 1, LastError: "poll feed: earlier"})
	// Five polls begin and never commit: each one's worker dies.
	for range maxAttempts {
		lease, _, err := fx.st.Acquire(ctx, "feed", "dead-worker", time.Minute, store.ClaimTick)
		require.NoError(t, err)
		require.NoError(t, fx.st.Release(ctx, lease))
	}

	ack := &answers{}
	fx.w.run(ctx, tickOf(feed()), ack)

	assert.Equal(t, []string{"ack"}, ack.list())
	assert.Zero(t, fx.connectorPolls(), "not polled: it would likely kill this worker too")
	report := fx.onlyReport(t)
	assert.Equal(t, pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE, report.GetOutcome())
	assert.Contains(t, report.GetError(), "its last 5 polls began and never finished")
	assert.InDelta(t, 1, testutil.ToFloat64(fx.w.metrics.crashLoops.WithLabelValues(feedType)), 0)

	st := fx.state(t, "feed")
	assert.Equal(t, 2, st.ConsecutiveFailures)
	assert.Equal(t, report.GetError(), st.LastError, "the error is recorded")
	assert.Equal(t, store.WaitBackoff, st.NotBeforeBy)
	assert.True(t, st.NotBefore.After(time.Now()), "it backs off: %s", st.NotBefore)
	assert.Zero(t, st.Attempts, "the failure's commit ends the attempts")

	next := &answers{}
	fx.w.run(ctx, tickOf(feed()), next)
	assert.Equal(t, []string{"ack"}, next.list())
	assert.Contains(t, fx.reports()[1].GetError(), "backing off until", "the next tick waits out the back-off")
}

func TestFencedCommitFailsThePoll(t *testing.T) {
	fx := newFixture(t, Options{})
	fx.onPoll(func(ctx context.Context, _ connector.State) (connector.Result, error) {
		// This worker's lease runs out mid-poll (as if it froze) and
		// another worker takes the connector.
		require.NoError(t, fx.rdb.Del(ctx, store.DefaultPrefix+":{feed}:lease").Err())
		_, _, err := fx.st.Acquire(ctx, "feed", "newer-worker", time.Minute, store.ClaimTrigger)
		require.NoError(t, err)
		return connector.Result{State: connector.State{Cursor: "stale"}}, nil
	})
	ack := &answers{}
	fx.w.run(context.Background(), tickOf(feed()), ack)

	assert.Equal(t, []string{"ack"}, ack.list())
	report := fx.onlyReport(t)
	assert.Equal(t, pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE, report.GetOutcome())
	assert.Contains(t, report.GetError(), "fenced")
	assert.InDelta(t, 1, testutil.ToFloat64(fx.w.metrics.fenced.WithLabelValues(feedType)), 0)
	assert.Empty(t, fx.state(t, "feed").Cursor, "nothing written over the newer lease")
}

func TestCommitErrorFailsThePoll(t *testing.T) {
	fx := newFixture(t, Options{})
	fx.onPoll(func(context.Context, connector.State) (connector.Result, error) {
		fx.redis.Kill() // Redis dies mid-poll
		return connector.Result{NotModified: true}, nil
	})
	ack := &answers{}
	fx.w.run(context.Background(), tickOf(feed()), ack)

	assert.Equal(t, []string{"ack"}, ack.list(), "the next tick polls again")
	report := fx.onlyReport(t)
	assert.Equal(t, pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE, report.GetOutcome())
	assert.Contains(t, report.GetError(), "commit state feed")
	assert.InDelta(t, 1, testutil.ToFloat64(fx.w.metrics.errors.WithLabelValues("redis", "commit")), 0)
	assert.Zero(t, testutil.ToFloat64(fx.w.metrics.fenced.WithLabelValues(feedType)))
}

func TestRedisDownNaksTheTickForASecond(t *testing.T) {
	fx := newFixture(t, Options{})
	fx.redis.Kill()
	ack := &answers{}
	fx.w.run(context.Background(), tickOf(feed()), ack)

	assert.Equal(t, []string{"nak 1s"}, ack.list())
	assert.Zero(t, fx.connectorPolls())
	assert.Equal(t, pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE, fx.onlyReport(t).GetOutcome())
	assert.InDelta(t, 1, testutil.ToFloat64(fx.w.metrics.errors.WithLabelValues("redis", "acquire")), 0)
}

func TestConnectorThatCannotBeBuiltFailsThePoll(t *testing.T) {
	broken := feed()
	broken.Name, broken.Type = "broken", unbuildableType
	fx := newFixture(t, Options{}, broken)
	ack := &answers{}
	fx.w.run(context.Background(), tickOf(broken), ack)

	assert.Equal(t, []string{"ack"}, ack.list())
	report := fx.onlyReport(t)
	assert.Equal(t, pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE, report.GetOutcome())
	assert.Contains(t, report.GetError(), "build connector broken")
	assert.Zero(t, report.GetFencingToken(), "no lease taken")
}
