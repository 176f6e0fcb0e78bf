package budget

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/pkg/store"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

func newLimiter(t testing.TB) (*Limiter, *redis.Client) {
	t.Helper()
	rdb := redistest.Start(t).Client(t)
	l, err := New(rdb, store.NewKeys(""), prometheus.NewRegistry())
	require.NoError(t, err)
	return l, rdb
}

func TestDrawAllowsTheBurstThenTheRate(t *testing.T) {
	l, rdb := newLimiter(t)
	ctx := context.Background()
	b := config.Budget{Name: "gh", Limit: 60, Per: time.Minute, Burst: 5}
	for i := range 5 {
		d, err := l.Draw(ctx, b, Levels(b))
		require.NoError(t, err)
		assert.True(t, d.Allowed, "draw %d of the burst", i)
		assert.Equal(t, 4-i, d.Remaining)
	}
	d, err := l.Draw(ctx, b, Levels(b))
	require.NoError(t, err)
	assert.False(t, d.Allowed)
	assert.InDelta(t, time.Second.Seconds(), d.RetryAfter.Seconds(), 0.1, "one request a second")
	assert.InDelta(t, 0, testutil.ToFloat64(l.metrics.remaining.WithLabelValues("gh")), 0)

	// The key is under pollgrid's prefix (a Redis ACL of ~pollgrid:* allows
	// it), not redis_rate's own "rate:".
	keys, err := rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	assert.Equal(t, []string{"pollgrid:budget:gh"}, keys)
}

func TestLowerLevelsLeaveTheLastRequestsToHigherOnes(t *testing.T) {
	l, _ := newLimiter(t)
	ctx := context.Background()
	b := config.Budget{Name: "gh", Limit: 60, Per: time.Minute, Burst: 5}
	// A full bucket serves every level.
	d, err := l.Draw(ctx, b, 0)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	assert.Equal(t, 4, d.Remaining)
	// Now 4 are left: level 0 needs all 5, level 1 four.
	d, err = l.Draw(ctx, b, 0)
	require.NoError(t, err)
	assert.False(t, d.Allowed, "level 0 waits for a full budget")
	assert.Equal(t, -1, d.Remaining, "a lower level's refusal does not know what is left")
	for level := 1; level <= 4; level++ {
		d, err = l.Draw(ctx, b, level)
		require.NoError(t, err)
		assert.True(t, d.Allowed, "level %d", level)
		assert.Equal(t, 4-level, d.Remaining)
		d, err = l.Draw(ctx, b, level)
		require.NoError(t, err)
		assert.False(t, d.Allowed, "level %d leaves the rest to higher levels", level)
	}
}

func TestBlockMakesEveryDrawWaitForTheUpstreamsReset(t *testing.T) {
	l, _ := newLimiter(t)
	ctx := context.Background()
	b := config.Budget{Name: "gh", Limit: 5000, Per: time.Hour, Burst: 50}
	until := time.Now().Add(3 * time.Second)
	require.NoError(t, l.Block(ctx, b, until))
	d, err := l.Draw(ctx, b, Levels(b))
	require.NoError(t, err)
	assert.False(t, d.Allowed, "the upstream said its limit is spent")
	assert.InDelta(t, 3, d.RetryAfter.Seconds(), 0.2, "until the upstream's reset")

	// An earlier reset does not shorten the wait.
	require.NoError(t, l.Block(ctx, b, time.Now().Add(time.Second)))
	d, err = l.Draw(ctx, b, Levels(b))
	require.NoError(t, err)
	assert.InDelta(t, 3, d.RetryAfter.Seconds(), 0.2)
	assert.InDelta(t, 2, testutil.ToFloat64(l.metrics.blocks.WithLabelValues("gh")), 0)

	require.Eventually(t, func() bool {
		d, err := l.Draw(ctx, b, Levels(b))
		return err == nil && d.Allowed
	}, 5*time.Second, 50*time.Millisecond, "the budget opens at the reset")
	assert.False(t, time.Now().Before(until), "not before it")
}

func TestShareWaitsForAShortRefillAndDefersALongOne(t *testing.T) {
	l, _ := newLimiter(t)
	b := config.Budget{Name: "gh", Limit: 10, Per: time.Second, Burst: 1, Connectors: 1}
	s := l.Share(b, time.Time{}, time.Now(), nil)
	require.NoError(t, s.Take(context.Background()))

	// The next request comes within 100 ms: a poll with 2 s left waits.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	started := time.Now()
	require.NoError(t, s.Take(ctx))
	assert.GreaterOrEqual(t, time.Since(started), 50*time.Millisecond)
	assert.InDelta(t, 1, testutil.ToFloat64(l.metrics.waits.WithLabelValues("gh")), 0)
	assert.Nil(t, s.Deferred())

	// A poll with 20 ms left would have to wait past half of it: deferred.
	short, cancelShort := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancelShort()
	err := s.Take(short)
	require.Error(t, err)
	assert.ErrorIs(t, err, upstream.ErrDeferred)
	var deferred *DeferredError
	require.True(t, errors.As(err, &deferred))
	assert.Equal(t, "gh", deferred.Budget)
	assert.Contains(t, err.Error(), "budget gh is spent: it refills at ")
	assert.Same(t, deferred, s.Deferred())
	assert.InDelta(t, 1, testutil.ToFloat64(l.metrics.deferrals.WithLabelValues("gh")), 0)
}

func TestShareLevelGrowsWithTheTimeSinceTheLastPoll(t *testing.T) {
	l, _ := newLimiter(t)
	// 20 connectors on 60 a minute: each gets one request every 20 s.
	b := config.Budget{Name: "gh", Limit: 60, Per: time.Minute, Burst: 5, Connectors: 20}
	now := time.Now()
	for _, tc := range []struct {
		name  string
		since time.Duration
		level int
	}{
		{"just polled", time.Second, 0},
		{"half its turn", 10 * time.Second, 1},
		{"its turn", 20 * time.Second, 2},
		{"overdue by half a turn", 30 * time.Second, 3},
		{"overdue by a turn", 40 * time.Second, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.level, l.Share(b, now.Add(-tc.since), now, nil).Level())
		})
	}
	assert.Equal(t, 4, l.Share(b, time.Time{}, now, nil).Level(), "never polled: first in line")
}

// TestConnectorsTakeTurns draws for 20 connectors that all want a request
// every tick, the way a budget's ticks arrive (the same order each time,
// the worst case for first come, first served): every connector gets
// requests, and the budget's rate holds.
func TestConnectorsTakeTurns(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 10 s")
	}
	l, _ := newLimiter(t)
	b := config.Budget{Name: "gh", Limit: 10, Per: time.Second, Burst: 5, Connectors: 20}
	lastPoll := make([]time.Time, 20)
	start := time.Now()
	for i := range lastPoll {
		lastPoll[i] = start.Add(-b.Fair()) // all due
	}
	got := make([]int, 20)
	var total atomic.Int64
	deadline := start.Add(10 * time.Second)
	for tick := start; time.Now().Before(deadline); tick = tick.Add(100 * time.Millisecond) {
		time.Sleep(time.Until(tick))
		var wg sync.WaitGroup
		for i := range got {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				defer cancel()
				if l.Share(b, lastPoll[i], time.Now(), nil).Take(ctx) == nil {
					got[i]++
					lastPoll[i] = time.Now()
					total.Add(1)
				}
			})
			time.Sleep(time.Millisecond) // the same order every tick
		}
		wg.Wait()
	}
	elapsed := time.Since(start).Seconds()
	assert.LessOrEqual(t, float64(total.Load()), 10*elapsed+5+1, "the rate and the burst hold")
	for i, n := range got {
		assert.GreaterOrEqual(t, n, 2, "connector %d got %d requests in 10 s (all: %v)", i, n, got)
	}
	t.Logf("requests per connector in %.1fs: %v (total %d)", elapsed, got, total.Load())
}

func TestUseSaysWhatIsLeftWithoutDrawing(t *testing.T) {
	l, _ := newLimiter(t)
	ctx := context.Background()
	b := config.Budget{Name: "gh", Limit: 60, Per: time.Minute, Burst: 5}
	u, err := l.Use(ctx, b)
	require.NoError(t, err)
	assert.Equal(t, 5, u.Remaining, "an unused budget is full")
	for range 2 {
		_, err := l.Draw(ctx, b, Levels(b))
		require.NoError(t, err)
	}
	u, err = l.Use(ctx, b)
	require.NoError(t, err)
	assert.Equal(t, 3, u.Remaining)
	assert.WithinDuration(t, time.Now(), u.NextAt, 100*time.Millisecond)
	assert.WithinDuration(t, time.Now().Add(2*time.Second), u.FullAt, 200*time.Millisecond)
	u2, err := l.Use(ctx, b)
	require.NoError(t, err)
	assert.Equal(t, 3, u2.Remaining, "reading draws nothing")

	require.NoError(t, l.Block(ctx, b, time.Now().Add(3*time.Second)))
	u, err = l.Use(ctx, b)
	require.NoError(t, err)
	assert.Zero(t, u.Remaining, "blocked by the upstream's word")
	assert.WithinDuration(t, time.Now().Add(3*time.Second), u.NextAt, 200*time.Millisecond)
}

func TestCapKeepsWhatTheUpstreamHasLeftForBeforeItsReset(t *testing.T) {
	l, _ := newLimiter(t)
	ctx := context.Background()
	b := config.Budget{Name: "gh", Limit: 60, Per: time.Minute, Burst: 5, Connectors: 1}
	s := l.Share(b, time.Time{}, time.Now(), nil)

	// The upstream has 7 left: more than the burst, nothing to do, no call.
	s.Follow(ctx, time.Now().Add(time.Minute), 7)
	assert.InDelta(t, 0, testutil.ToFloat64(l.metrics.blocks.WithLabelValues("gh")), 0)
	u, err := l.Use(ctx, b)
	require.NoError(t, err)
	assert.Equal(t, 5, u.Remaining)

	// 2 left until a reset in 10 s: at most 2 requests before it.
	reset := time.Now().Add(10 * time.Second)
	s.Follow(ctx, reset, 2)
	assert.InDelta(t, 1, testutil.ToFloat64(l.metrics.blocks.WithLabelValues("gh")), 0)
	d, err := l.Draw(ctx, b, Levels(b))
	require.NoError(t, err)
	require.False(t, d.Allowed, "the two are kept for the moments before the reset")
	assert.InDelta(t, 8, d.RetryAfter.Seconds(), 0.2)
	// Draws that could go before the reset, as the budget sees them: the
	// key's arrival time says 2.
	u, err = l.Use(ctx, b)
	require.NoError(t, err)
	assert.WithinDuration(t, reset.Add(-2*time.Second), u.NextAt, 200*time.Millisecond)
}
