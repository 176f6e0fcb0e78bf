package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/pkg/store"
)

// acquireReplies records the first element of each acquire script's reply:
// 1 the state read, 3 the carried state confirmed.
type acquireReplies struct{ codes []int64 }

func (h *acquireReplies) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *acquireReplies) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h *acquireReplies) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if c, ok := cmd.(*redis.Cmd); ok && err == nil && numKeys(cmd) == 4 { // the acquire script
			if res, ok := c.Val().([]any); ok && len(res) > 0 {
				code, _ := res[0].(int64)
				h.codes = append(h.codes, code)
			}
		}
		return err
	}
}

// newCarryStore is a store whose client counts round trips and acquire
// replies.
func newCarryStore(t *testing.T) (*store.Store, *redis.Client, *redistest.RoundTrips, *acquireReplies) {
	t.Helper()
	rdb := redistest.Start(t).Client(t)
	trips, replies := &redistest.RoundTrips{}, &acquireReplies{}
	rdb.AddHook(trips)
	rdb.AddHook(replies)
	return store.New(rdb, store.Options{}), rdb, trips, replies
}

// poll acquires with carried, commits st with seen, and returns the
// commit's carry.
func poll(t *testing.T, s *store.Store, owner string, carried *store.Carried, c store.Commit) (store.State, *store.Carried) {
	t.Helper()
	ctx := context.Background()
	l, prev, err := s.AcquireCarried(ctx, "c", owner, leaseTTL, store.ClaimTick, carried)
	require.NoError(t, err)
	if c.Now.IsZero() {
		c.Now = t0
	}
	require.NoError(t, s.Commit(ctx, l, c))
	return prev, l.Carry()
}

func TestCarriedStateSavesTheReadNotARoundTrip(t *testing.T) {
	s, _, trips, replies := newCarryStore(t)
	_, carried := poll(t, s, "a", nil, store.Commit{State: store.State{Cursor: "1"}, Seen: items("x")})
	require.NotNil(t, carried)
	before := trips.Count()
	prev, carried := poll(t, s, "a", carried, store.Commit{State: store.State{Cursor: "2"}, Seen: itemsOn(t0, "y")})
	assert.Equal(t, int64(2), trips.Count()-before, "one round trip to acquire, one to commit")
	assert.Equal(t, []int64{1, 3}, replies.codes, "the second acquire confirmed the carried state")
	assert.Equal(t, "1", prev.Cursor)
	assert.Equal(t, map[string]store.SeenEntry{"x": items("x")[0].Entry}, prev.Seen)
	assert.Equal(t, 1, prev.SeenCount)
	assert.Equal(t, 1, prev.Attempts)

	prev, _ = poll(t, s, "a", carried, store.Commit{State: store.State{Cursor: "3"}})
	assert.Equal(t, []int64{1, 3, 3}, replies.codes)
	assert.Equal(t, "2", prev.Cursor)
	assert.Equal(t, 2, prev.SeenCount)
	assert.Len(t, prev.Seen, 2, "the carried seen items hold what the commit wrote")
}

func TestCarriedStateIsNotUsedAfterAnotherWrite(t *testing.T) {
	ctx := context.Background()
	later := t0.Add(time.Minute)
	for _, tc := range []struct {
		name  string
		write func(t *testing.T, s *store.Store)
		check func(t *testing.T, prev store.State)
	}{
		{name: "another worker's commit", write: func(t *testing.T, s *store.Store) {
			poll(t, s, "b", nil, store.Commit{State: store.State{Cursor: "b"}, Seen: items("z")})
		}, check: func(t *testing.T, prev store.State) {
			assert.Equal(t, "b", prev.Cursor, "the other worker's state, not the carried one")
			assert.Contains(t, prev.Seen, "z")
		}},
		{name: "a lease that lapsed and was taken over", write: func(t *testing.T, s *store.Store) {
			l, _, err := s.Acquire(ctx, "c", "b", time.Millisecond, store.ClaimTick)
			require.NoError(t, err)
			require.Eventually(t, func() bool {
				_, _, err := s.Acquire(ctx, "c", "d", leaseTTL, store.ClaimTick)
				if err == nil {
					return true
				}
				return false
			}, 5*time.Second, time.Millisecond)
			require.ErrorIs(t, s.Commit(ctx, l, store.Commit{State: store.State{Cursor: "stale"}}), store.ErrFenced)
			assert.Nil(t, l.Carry(), "a fenced commit leaves nothing to carry")
			info, err := s.Lease(ctx, "c")
			require.NoError(t, err)
			require.NoError(t, s.Release(ctx, &store.Lease{Connector: "c", Owner: info.Owner, Token: info.Token}))
		}, check: func(t *testing.T, prev store.State) {
			assert.Equal(t, "a", prev.Cursor)
			assert.Equal(t, 3, prev.Attempts, "the polls that took the lease and never committed count")
		}},
		{name: "a pause and a resume", write: func(t *testing.T, s *store.Store) {
			_, _, err := s.Pause(ctx, "c", "alice", t0)
			require.NoError(t, err)
			_, _, err = s.Resume(ctx, "c", later)
			require.NoError(t, err)
		}, check: func(t *testing.T, prev store.State) {
			assert.Equal(t, later, prev.ResumedAt)
		}},
		{name: "a reset", write: func(t *testing.T, s *store.Store) {
			_, err := s.Reset(ctx, "c", "pollctl", leaseTTL)
			require.NoError(t, err)
		}, check: func(t *testing.T, prev store.State) {
			assert.Empty(t, prev.Cursor)
			assert.Empty(t, prev.Seen)
			assert.Equal(t, uint64(1), prev.Generation)
		}},
		{name: "a Redis that lost its data", write: func(t *testing.T, s *store.Store) {
			require.NoError(t, s.Ping(ctx))
		}, check: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, rdb, _, replies := newCarryStore(t)
			_, carried := poll(t, s, "a", nil, store.Commit{State: store.State{Cursor: "a"}, Seen: items("x")})
			require.NotNil(t, carried)
			tc.write(t, s)
			if tc.check == nil {
				require.NoError(t, rdb.FlushAll(ctx).Err())
			}
			replies.codes = nil
			prev, _ := poll(t, s, "a", carried, store.Commit{})
			assert.Equal(t, []int64{1}, replies.codes, "the state was read")
			if tc.check != nil {
				tc.check(t, prev)
			} else {
				assert.Equal(t, store.State{Seen: map[string]store.SeenEntry{}, Attempts: 1}, prev)
			}
		})
	}
}

func TestPauseDuringTheLeaseIsCarried(t *testing.T) {
	ctx := context.Background()
	s, _, _, replies := newCarryStore(t)
	l, _, err := s.Acquire(ctx, "c", "a", leaseTTL, store.ClaimTick)
	require.NoError(t, err)
	_, _, err = s.Pause(ctx, "c", "alice", t0)
	require.NoError(t, err)
	require.NoError(t, s.Commit(ctx, l, store.Commit{State: store.State{Cursor: "a"}, Now: t0}))
	require.NotNil(t, l.Carry())

	_, st, err := s.AcquireCarried(ctx, "c", "a", leaseTTL, store.ClaimTick, l.Carry())
	require.ErrorIs(t, err, store.ErrPaused, "a tick of a paused connector takes no lease, carried or not")
	assert.Equal(t, t0, st.PausedAt)
	l, st, err = s.AcquireCarried(ctx, "c", "a", leaseTTL, store.ClaimTrigger, l.Carry())
	require.NoError(t, err)
	assert.Equal(t, []int64{1, 2, 3}, replies.codes, "the commit came after the pause: its state is carried")
	assert.Equal(t, t0, st.PausedAt, "and says the connector is paused")
	assert.Equal(t, "alice", st.PausedBy)
	assert.Equal(t, "a", st.Cursor)
	require.NoError(t, s.Release(ctx, l))
}

func TestOperatorsFieldsAreReadAnewWithTheCarriedState(t *testing.T) {
	ctx := context.Background()
	s, rdb, _, replies := newCarryStore(t)
	_, carried := poll(t, s, "a", nil, store.Commit{State: store.State{Cursor: "a"}})
	require.NotNil(t, carried)
	// A pause written by a release that did not know the committed field
	// (a rolling upgrade): it is seen all the same.
	require.NoError(t, rdb.HSet(ctx, "pollgrid:{c}:state", "paused_at", t0.UnixMilli(), "paused_by", "old-pollctl").Err())
	l, st, err := s.AcquireCarried(ctx, "c", "a", leaseTTL, store.ClaimTrigger, carried)
	require.NoError(t, err)
	assert.Equal(t, []int64{1, 3}, replies.codes, "carried")
	assert.Equal(t, t0, st.PausedAt)
	assert.Equal(t, "old-pollctl", st.PausedBy)
	assert.Equal(t, "a", st.Cursor)
	require.NoError(t, s.Release(ctx, l))
}

func TestSweepThatForgetsItemsIsNotCarried(t *testing.T) {
	s, _, _, replies := newCarryStore(t)
	old := t0.Add(-40 * 24 * time.Hour)
	_, carried := poll(t, s, "a", nil, store.Commit{Seen: itemsOn(old, "old"), Now: old})
	require.NotNil(t, carried)
	_, carried = poll(t, s, "a", carried, store.Commit{Seen: items("new"), Fetched: true})
	assert.Nil(t, carried, "the sweep forgot an item the worker cannot know of")
	prev, _ := poll(t, s, "a", carried, store.Commit{})
	assert.Equal(t, []int64{1, 3, 1}, replies.codes)
	assert.Equal(t, []string{"new"}, keys(prev.Seen))
}

func keys(m map[string]store.SeenEntry) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestCommitSendsOnlyTheFieldsThatChanged(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, store.Options{})
	full := store.State{Cursor: "c1", ETag: `"e"`, LastPoll: t0, LastSuccess: t0, LastError: "x", ConsecutiveFailures: 2}
	_, carried := poll(t, s, "a", nil, store.Commit{State: full})
	var args []any
	rdb.AddHook(argsHook(&args))
	next := full
	next.LastPoll = t0.Add(time.Second)
	_, _ = poll(t, s, "a", carried, store.Commit{State: next})
	assert.Equal(t, []any{"last_poll", "1772366401000", "attempts", "0"}, args[len(args)-4:], "the one field that changed, and the attempts")
	got, err := s.State(ctx, "c")
	require.NoError(t, err)
	assert.Equal(t, next, got, "the state is still written whole")
}

// argsHook keeps the arguments of the last commit script run (6 keys).
func argsHook(args *[]any) redis.Hook { return argsRecorder{args} }

type argsRecorder struct{ args *[]any }

func (h argsRecorder) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h argsRecorder) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h argsRecorder) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if numKeys(cmd) == 6 {
			*h.args = cmd.Args()
		}
		return next(ctx, cmd)
	}
}

// numKeys is how many keys a script run names (EVALSHA sha numkeys ...);
// 0 for any other command.
func numKeys(cmd redis.Cmder) int {
	a := cmd.Args()
	if len(a) < 3 || (cmd.Name() != "evalsha" && cmd.Name() != "eval") {
		return 0
	}
	n, _ := a[2].(int)
	return n
}

func TestASecondCommitUnderOneLeaseWritesTheWholeState(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, store.Options{})
	l, _, err := s.Acquire(ctx, "c", "a", leaseTTL, store.ClaimTick)
	require.NoError(t, err)
	require.NoError(t, s.Commit(ctx, l, store.Commit{State: store.State{Cursor: "first"}, Now: t0}))
	require.NotNil(t, l.Carry())
	// The lease is released, but the fence still holds its token: a second
	// commit is accepted, and must not take the first's fields for unchanged.
	require.NoError(t, s.Commit(ctx, l, store.Commit{State: store.State{LastError: "second"}, Now: t0}))
	assert.Nil(t, l.Carry(), "what the second commit left is not known without the first")
	got, err := s.State(ctx, "c")
	require.NoError(t, err)
	assert.Equal(t, store.State{LastError: "second"}, got)
}
