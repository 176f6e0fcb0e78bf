package worker

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/pkg/store"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// changing makes the fixture's connector return one item whose version,
// and the cursor, move on every poll, and records the cursor each poll
// started from.
func changing(fx *fixture) *[]string {
	var mu sync.Mutex
	var from []string
	n := 0
	fx.onPoll(func(_ context.Context, st connector.State) (connector.Result, error) {
		mu.Lock()
		defer mu.Unlock()
		n++
		from = append(from, st.Cursor)
		v := strconv.Itoa(n)
		return connector.Result{Items: []connector.Item{{ID: "a", Version: v, Data: []byte(`{}`)}}, State: connector.State{Cursor: v}}, nil
	})
	return &from
}

func TestAPollCostsTwoRedisRoundTrips(t *testing.T) {
	fx := newFixture(t, Options{})
	trips := &redistest.RoundTrips{}
	fx.rdb.AddHook(trips)
	from := changing(fx)
	for i := range 3 {
		before := trips.Count()
		ack := &answers{}
		fx.w.run(context.Background(), tickOf(feed()), ack)
		require.Equal(t, []string{"ack"}, ack.list())
		// The lease with the state (carried after the first poll), and the
		// commit that releases it: nothing else, the seen item included.
		// The first poll also sends each script once whole (EVALSHA answers
		// NOSCRIPT to a fresh Redis, and go-redis falls back to EVAL).
		want := int64(2)
		if i == 0 {
			want = 4
		}
		assert.Equal(t, want, trips.Count()-before, "poll %d", i+1)
	}
	assert.Equal(t, []string{"", "1", "2"}, *from, "each poll starts from the cursor the last one committed")
	for _, r := range fx.reports() {
		assert.Equal(t, pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS, r.GetOutcome())
		assert.Equal(t, int64(1), r.GetItemsPublished())
	}
	assert.Equal(t, "3", fx.state(t, "feed").Cursor)
}

func TestCarriedStateGivesWayToAnotherWorkersWrite(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t, Options{})
	from := changing(fx)
	tick := func() {
		ack := &answers{}
		fx.w.run(ctx, tickOf(feed()), ack)
		require.Equal(t, []string{"ack"}, ack.list())
	}
	tick()

	// Another worker polls the connector in between and commits its own
	// state: this worker's next poll starts from that state.
	other := store.New(fx.rdb, store.Options{})
	l, st, err := other.Acquire(ctx, "feed", "other-worker", time.Minute, store.ClaimTick)
	require.NoError(t, err)
	require.Equal(t, "1", st.Cursor)
	st.Cursor = "from-the-other-worker"
	require.NoError(t, other.Commit(ctx, l, store.Commit{State: st}))
	tick()

	// Another worker takes the lease and dies before committing: nothing
	// changed, but the attempt counts, and the poll reads it.
	_, _, err = other.Acquire(ctx, "feed", "dead-worker", time.Millisecond, store.ClaimTick)
	require.NoError(t, err)
	require.Eventually(t, func() bool { info, err := other.Lease(ctx, "feed"); return err == nil && info.Owner == "" },
		5*time.Second, time.Millisecond)
	fx.onPoll(func(_ context.Context, st connector.State) (connector.Result, error) {
		*from = append(*from, st.Cursor)
		return connector.Result{State: connector.State{Cursor: st.Cursor}}, nil
	})
	tick()

	assert.Equal(t, []string{"", "from-the-other-worker", "2"}, *from)
	reports := fx.reports()
	require.Len(t, reports, 3)
	for _, r := range reports {
		assert.Equal(t, pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS, r.GetOutcome(), r.GetError())
	}
}

func TestFencedCommitCarriesNothing(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t, Options{})
	from := changing(fx)
	ack := &answers{}
	fx.w.run(ctx, tickOf(feed()), ack)
	in, err := fx.w.defs.connector(ctx, "feed", 0, false)
	require.NoError(t, err)
	require.NotNil(t, in.carried(), "a committed poll carries its state")

	// The next poll's lease is taken over while it runs (its worker froze
	// past it): its commit is fenced, and it carries nothing after.
	fx.onPoll(func(_ context.Context, st connector.State) (connector.Result, error) {
		*from = append(*from, st.Cursor)
		info, err := fx.st.Lease(ctx, "feed")
		require.NoError(t, err)
		require.NoError(t, fx.st.Release(ctx, &store.Lease{Connector: "feed", Owner: info.Owner, Token: info.Token}))
		l, _, err := fx.st.Acquire(ctx, "feed", "newer-worker", time.Minute, store.ClaimTick)
		require.NoError(t, err)
		require.NoError(t, fx.st.Commit(ctx, l, store.Commit{State: store.State{Cursor: "newer"}}))
		return connector.Result{State: connector.State{Cursor: "stale"}}, nil
	})
	fx.w.run(ctx, tickOf(feed()), &answers{})
	assert.Nil(t, in.carried(), "a fenced commit leaves nothing to carry")
	assert.Equal(t, "newer", fx.state(t, "feed").Cursor)

	fx.onPoll(func(_ context.Context, st connector.State) (connector.Result, error) {
		*from = append(*from, st.Cursor)
		return connector.Result{State: connector.State{Cursor: st.Cursor}}, nil
	})
	fx.w.run(ctx, tickOf(feed()), &answers{})
	assert.Equal(t, []string{"", "1", "newer"}, *from, "the poll after the fenced one reads the newer worker's state")
}
