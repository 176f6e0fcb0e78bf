package store_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/pkg/store"
)

const (
	leaseTTL = 30 * time.Second
	// shortTTL is for the tests that wait for a real expiry.
	shortTTL  = 100 * time.Millisecond
	waitFor   = 5 * time.Second
	pollEvery = 5 * time.Millisecond
)

// t0 is a fixed "now" with whole milliseconds, as stored.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newStore(t testing.TB, opts store.Options) (*store.Store, *redis.Client) {
	t.Helper()
	rdb := redistest.Start(t).Client(t)
	return store.New(rdb, opts), rdb
}

func TestAcquireRaceHasOneWinner(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, store.Options{})

	const racers = 100
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		leases  = make([]*store.Lease, racers)
		errs    = make([]error, racers)
		winners int
	)
	for i := range racers {
		wg.Go(func() {
			<-start
			leases[i], _, errs[i] = s.Acquire(ctx, "race", fmt.Sprintf("worker-%d", i), leaseTTL, store.ClaimTick)
		})
	}
	close(start)
	wg.Wait()

	for i := range racers {
		if errs[i] == nil {
			winners++
			assert.Positive(t, leases[i].Token)
			continue
		}
		var held *store.LeaseHeldError
		require.ErrorAs(t, errs[i], &held)
		assert.ErrorIs(t, errs[i], store.ErrLeaseHeld)
		assert.Equal(t, "race", held.Connector)
		assert.Greater(t, held.Remaining, time.Duration(0))
		assert.LessOrEqual(t, held.Remaining, leaseTTL)
	}
	assert.Equal(t, 1, winners)
}

func TestTokensStrictlyIncrease(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, store.Options{})

	var last uint64
	take := func(owner string) *store.Lease {
		t.Helper()
		l, _, err := s.Acquire(ctx, "tokens", owner, leaseTTL, store.ClaimTick)
		require.NoError(t, err)
		assert.Greater(t, l.Token, last, "token after %d", last)
		last = l.Token
		return l
	}
	started := uint64(time.Now().UnixMicro())
	for round := range 5 {
		l := take("a")
		require.NoError(t, s.Release(ctx, l))
		l = take("a") // the same owner again: a new poll, a new token
		require.NoError(t, s.Release(ctx, l))
		l = take(fmt.Sprintf("b-%d", round))
		require.NoError(t, s.Commit(ctx, l, store.Commit{Now: t0}))
	}
	assert.GreaterOrEqual(t, last, started-uint64(time.Second/time.Microsecond),
		"tokens start from the clock (in microseconds), not from 1")
}

// Redis restarted with no data: the fencing counter is gone, and a worker
// that acquired before the loss must still be fenced, however many leases
// are taken after it (a counter restarting at 1 would meet its token
// again).
func TestFencingHoldsAcrossRedisDataLoss(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, store.Options{})
	paused, _, err := s.Acquire(ctx, "c", "paused", leaseTTL, store.ClaimTick)
	require.NoError(t, err)

	require.NoError(t, rdb.FlushAll(ctx).Err())
	var after []*store.Lease
	for range 5 {
		l, _, err := s.Acquire(ctx, "c", "fresh", leaseTTL, store.ClaimTick)
		require.NoError(t, err)
		assert.Greater(t, l.Token, paused.Token, "a token after the loss is newer than any before it")
		require.NoError(t, s.Commit(ctx, l, store.Commit{State: store.State{Cursor: "after"}, Now: t0}))
		after = append(after, l)
	}

	err = s.Commit(ctx, paused, store.Commit{State: store.State{Cursor: "stale"}, Now: t0})
	require.ErrorIs(t, err, store.ErrFenced)
	st, err := s.State(ctx, "c")
	require.NoError(t, err)
	assert.Equal(t, "after", st.Cursor)
	assert.Greater(t, after[len(after)-1].Token, after[0].Token)
}

func TestAttemptsCountPollsThatDidNotCommit(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, store.Options{})
	for want := 1; want <= 3; want++ {
		l, st, err := s.Acquire(ctx, "c", "w", leaseTTL, store.ClaimTick)
		require.NoError(t, err)
		assert.Equal(t, want, st.Attempts)
		require.NoError(t, s.Release(ctx, l)) // the poll ended without a commit (its worker died)
	}
	l, _, err := s.Acquire(ctx, "c", "w", leaseTTL, store.ClaimTick)
	require.NoError(t, err)
	require.NoError(t, s.Commit(ctx, l, store.Commit{Now: t0}))
	_, st, err := s.Acquire(ctx, "c", "w", leaseTTL, store.ClaimTick)
	require.NoError(t, err)
	assert.Equal(t, 1, st.Attempts, "a commit ends the count")
}

// A tick of a paused or waiting connector takes no lease and leaves no
// trace: no token, no attempt (a skipped tick is not a poll that died). An
// operator's trigger polls anyway; an admin write is not counted.
func TestAcquireGatesTicks(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, store.Options{})
	commit := func(st store.State) {
		l, _, err := s.Acquire(ctx, "c", "w", leaseTTL, store.ClaimTrigger)
		require.NoError(t, err)
		require.NoError(t, s.Commit(ctx, l, store.Commit{State: st, Now: t0}))
	}
	fence := func() string { return rdb.Get(ctx, "pollgrid:{c}:fence").Val() }

	until := time.Now().Add(time.Hour).Truncate(time.Millisecond).UTC()
	commit(store.State{NotBefore: until, NotBeforeBy: store.WaitBackoff, ConsecutiveFailures: 3, LastError: "boom"})
	before := fence()
	for range 7 {
		l, st, err := s.Acquire(ctx, "c", "w", leaseTTL, store.ClaimTick)
		require.ErrorIs(t, err, store.ErrWaiting)
		assert.Nil(t, l)
		assert.Equal(t, until, st.NotBefore)
		assert.Equal(t, store.WaitBackoff, st.NotBeforeBy)
		assert.Equal(t, 3, st.ConsecutiveFailures)
		assert.Zero(t, st.Attempts)
	}
	assert.Equal(t, before, fence(), "no token taken")
	assert.Zero(t, rdb.Exists(ctx, "pollgrid:{c}:lease").Val())

	l, st, err := s.Acquire(ctx, "c", "w", leaseTTL, store.ClaimTrigger)
	require.NoError(t, err, "a trigger polls a waiting connector")
	assert.Equal(t, 1, st.Attempts, "and it counts")
	require.NoError(t, s.Commit(ctx, l, store.Commit{State: store.State{NotBefore: time.Now().Add(-time.Second)}, Now: t0}))
	l, st, err = s.Acquire(ctx, "c", "w", leaseTTL, store.ClaimTick)
	require.NoError(t, err, "a wait that ended lets the tick poll")
	assert.Equal(t, 1, st.Attempts)
	require.NoError(t, s.Release(ctx, l))
	_, st, err = s.Acquire(ctx, "c", "w", leaseTTL, store.ClaimAdmin)
	require.NoError(t, err)
	assert.Equal(t, 1, st.Attempts, "an admin write is not a poll")
}

func TestOwnerWithColons(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, store.Options{})

	a, _, err := s.Acquire(ctx, "c", "host:1234", leaseTTL, store.ClaimTick)
	require.NoError(t, err)
	require.NoError(t, s.Renew(ctx, a))
	require.ErrorIs(t, s.Renew(ctx, &store.Lease{Connector: "c", Owner: "host", Token: a.Token, TTL: leaseTTL}), store.ErrLeaseLost,
		"an owner that is a prefix of the holder is another owner")
	require.NoError(t, s.Release(ctx, a))
	again, _, err := s.Acquire(ctx, "c", "host:1234", leaseTTL, store.ClaimTick)
	require.NoError(t, err)
	assert.Greater(t, again.Token, a.Token)
}

// rawState reads what is really stored for a connector, to check that a
// rejected write left no trace.
func rawState(t *testing.T, rdb *redis.Client, name string) (state, seen map[string]string) {
	t.Helper()
	ctx := context.Background()
	state, err := rdb.HGetAll(ctx, "pollgrid:{"+name+"}:state").Result()
	require.NoError(t, err)
	seen, err = rdb.HGetAll(ctx, "pollgrid:{"+name+"}:seen").Result()
	require.NoError(t, err)
	return state, seen
}

func TestStaleCommitIsFenced(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, store.Options{})

	first, _, err := s.Acquire(ctx, "c", "a", leaseTTL, store.ClaimTick)
	require.NoError(t, err)
	require.NoError(t, s.Commit(ctx, first, store.Commit{
		State: store.State{Cursor: "committed", LastPoll: t0},
		Seen:  []store.SeenItem{{ID: "x", Entry: store.SeenEntry{Seq: 1, Version: "1"}}},
		Now:   t0,
	}))
	stale, _, err := s.Acquire(ctx, "c", "a", leaseTTL, store.ClaimTick)
	require.NoError(t, err)
	require.NoError(t, s.Release(ctx, stale)) // as if it expired while its worker was paused
	newer, _, err := s.Acquire(ctx, "c", "b", leaseTTL, store.ClaimTick)
	require.NoError(t, err)

	wantState, wantSeen := rawState(t, rdb, "c")
	err = s.Commit(ctx, stale, store.Commit{
		State: store.State{Cursor: "stale"},
		Seen:  []store.SeenItem{{ID: "x", Entry: store.SeenEntry{Seq: 1, Version: "2"}}, {ID: "y", Entry: store.SeenEntry{Seq: 1, Version: "1"}}},
		Now:   t0.Add(time.Hour),
	})
	require.ErrorIs(t, err, store.ErrFenced)

	gotState, gotSeen := rawState(t, rdb, "c")
	assert.Equal(t, wantState, gotState, "state unchanged")
	assert.Equal(t, wantSeen, gotSeen, "seen unchanged")
	require.NoError(t, s.Renew(ctx, newer), "the fenced commit did not release the newer lease")
	_, _, err = s.Acquire(ctx, "c", "a", leaseTTL, store.ClaimTick)
	assert.ErrorIs(t, err, store.ErrLeaseHeld)
}

func TestALeaseHeldByTheSameOwnerIsHeld(t *testing.T) {
	// Two ticks of one connector can reach the same worker (a fire replaces
	// a tick whose poll still runs): the second must not take the lease
	// from the first.
	ctx := context.Background()
	s, _ := newStore(t, store.Options{})
	first, _, err := s.Acquire(ctx, "c", "w1", leaseTTL, store.ClaimTick)
	require.NoError(t, err)
	_, _, err = s.Acquire(ctx, "c", "w1", leaseTTL, store.ClaimTick)
	var held *store.LeaseHeldError
	require.ErrorAs(t, err, &held)
	assert.Positive(t, held.Remaining)
	require.NoError(t, s.Renew(ctx, first), "the first poll still holds its lease")
}

func TestExpiredLeaseIsTakenOver(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, store.Options{})

	old, _, err := s.Acquire(ctx, "c", "paused-worker", shortTTL, store.ClaimTick)
	require.NoError(t, err)
	require.NoError(t, s.Renew(ctx, old), "renew while held")

	var taker *store.Lease
	require.Eventually(t, func() bool {
		taker, _, err = s.Acquire(ctx, "c", "other-worker", leaseTTL, store.ClaimTick)
		return err == nil
	}, waitFor, pollEvery, "the lease expires and another owner takes it")
	assert.Greater(t, taker.Token, old.Token)

	assert.ErrorIs(t, s.Renew(ctx, old), store.ErrLeaseLost)
	assert.ErrorIs(t, s.Commit(ctx, old, store.Commit{State: store.State{Cursor: "old"}, Now: t0}), store.ErrFenced)
	require.NoError(t, s.Release(ctx, old), "releasing a lost lease is not an error")
	_, _, err = s.Acquire(ctx, "c", "third-worker", leaseTTL, store.ClaimTick)
	require.ErrorIs(t, err, store.ErrLeaseHeld, "the old owner's release left the new lease alone")

	require.NoError(t, s.Commit(ctx, taker, store.Commit{State: store.State{Cursor: "new"}, Now: t0}))
	st, err := s.State(ctx, "c")
	require.NoError(t, err)
	assert.Equal(t, "new", st.Cursor)
}

func TestExpiredLeaseNobodyTookStillCommits(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, store.Options{})

	l, _, err := s.Acquire(ctx, "c", "slow-worker", shortTTL, store.ClaimTick)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return rdb.Exists(ctx, "pollgrid:{c}:lease").Val() == 0
	}, waitFor, pollEvery)

	assert.ErrorIs(t, s.Renew(ctx, l), store.ErrLeaseLost)
	require.NoError(t, s.Commit(ctx, l, store.Commit{State: store.State{Cursor: "late"}, Now: t0}),
		"no newer lease exists, so the late write is safe")
	st, err := s.State(ctx, "c")
	require.NoError(t, err)
	assert.Equal(t, "late", st.Cursor)
}

func TestCommitAndReleaseFreeTheLease(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(context.Context, *store.Store, *store.Lease) error
	}{
		{name: "commit", end: func(ctx context.Context, s *store.Store, l *store.Lease) error {
			return s.Commit(ctx, l, store.Commit{Now: t0})
		}},
		{name: "release", end: func(ctx context.Context, s *store.Store, l *store.Lease) error {
			return s.Release(ctx, l)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s, _ := newStore(t, store.Options{})
			l, _, err := s.Acquire(ctx, "c", "a", leaseTTL, store.ClaimTick)
			require.NoError(t, err)
			_, _, err = s.Acquire(ctx, "c", "b", leaseTTL, store.ClaimTick)
			require.ErrorIs(t, err, store.ErrLeaseHeld)

			require.NoError(t, tc.end(ctx, s, l))
			next, _, err := s.Acquire(ctx, "c", "b", leaseTTL, store.ClaimTick)
			require.NoError(t, err, "another owner acquires at once")
			assert.Greater(t, next.Token, l.Token)
			assert.ErrorIs(t, s.Renew(ctx, l), store.ErrLeaseLost)
			require.NoError(t, s.Release(ctx, l), "a second release is not an error")
		})
	}
}

func TestStateRoundTrip(t *testing.T) {
	full := store.State{
		Cursor:              "2026-03-01T11:59:00Z",
		ETag:                `W/"abc"`,
		LastModified:        "Sun, 01 Mar 2026 11:59:00 GMT",
		LastPoll:            t0,
		LastSuccess:         t0.Add(-time.Minute + 123*time.Millisecond),
		ConsecutiveFailures: 3,
		LastError:           "GET https://api.example.com/alerts: 503 Service Unavailable",
		NotBefore:           t0.Add(2 * time.Minute),
		NotBeforeBy:         store.WaitUpstream,
		EffectiveInterval:   22500 * time.Millisecond,
		AdaptRequestedAt:    t0.Add(-3 * time.Minute),
	}
	for _, tc := range []struct {
		name       string
		before     store.State // committed first
		state      store.State
		wantFields []string
	}{
		{
			name:  "every field",
			state: full,
			wantFields: []string{"adapt_requested_at", "attempts", "committed", "consecutive_failures", "cursor", "effective_interval_ms", "etag", "last_error",
				"last_modified", "last_poll", "last_success", "not_before", "not_before_by"},
		},
		{
			name:       "zero state writes nothing but the commit's token and the attempts ended",
			state:      store.State{},
			wantFields: []string{"attempts", "committed"},
		},
		{
			name:       "zero fields are deleted, zero times stay zero",
			before:     full,
			state:      store.State{Cursor: "c2", LastPoll: t0.Add(time.Minute)},
			wantFields: []string{"attempts", "committed", "cursor", "last_poll"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s, rdb := newStore(t, store.Options{})
			if !reflect.ValueOf(tc.before).IsZero() {
				l, _, err := s.Acquire(ctx, "c", "a", leaseTTL, store.ClaimTick)
				require.NoError(t, err)
				require.NoError(t, s.Commit(ctx, l, store.Commit{State: tc.before, Now: t0}))
			}
			l, _, err := s.Acquire(ctx, "c", "a", leaseTTL, store.ClaimTick)
			require.NoError(t, err)
			require.NoError(t, s.Commit(ctx, l, store.Commit{State: tc.state, Now: t0}))

			got, err := s.State(ctx, "c")
			require.NoError(t, err)
			assert.Equal(t, tc.state, got)

			fields, err := rdb.HKeys(ctx, "pollgrid:{c}:state").Result()
			require.NoError(t, err)
			slices.Sort(fields)
			assert.Equal(t, tc.wantFields, fields)

			read, viaAcquire, err := s.Acquire(ctx, "c", "a", leaseTTL, store.ClaimTick)
			require.NoError(t, err)
			assert.Equal(t, map[string]store.SeenEntry{}, viaAcquire.Seen, "no item seen yet, and Acquire says so")
			assert.Equal(t, 1, viaAcquire.Attempts)
			require.NoError(t, s.Release(ctx, read))

			require.NotNil(t, l.Carry(), "the commit left its state to carry")
			_, carried, err := s.AcquireCarried(ctx, "c", "a", leaseTTL, store.ClaimTick, l.Carry())
			require.NoError(t, err)
			assert.Equal(t, 2, carried.Attempts, "the attempts are Redis's, not carried")
			assert.Equal(t, viaAcquire.Seen, carried.Seen)
			viaAcquire.Seen, viaAcquire.Attempts, carried.Seen, carried.Attempts = nil, 0, nil, 0
			assert.Equal(t, tc.state, viaAcquire, "Acquire returns the same state")
			assert.Equal(t, tc.state, carried, "and so does the carried acquire")
		})
	}
}

func TestStoredTimesAreUnixMillis(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, store.Options{})
	l, _, err := s.Acquire(ctx, "c", "a", leaseTTL, store.ClaimTick)
	require.NoError(t, err)
	at := t0.Add(1234 * time.Millisecond)
	require.NoError(t, s.Commit(ctx, l, store.Commit{State: store.State{LastPoll: at}, Seen: items("x"), Now: at}))
	assert.Equal(t, "1772366401234", rdb.HGet(ctx, "pollgrid:{c}:state", "last_poll").Val())
	assert.Equal(t, "1:20513:v-x", rdb.HGet(ctx, "pollgrid:{c}:seen", "x").Val(), "sequence, UTC day, version")
}

func TestAcquireOfNeverPolledConnector(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, store.Options{})
	l, st, err := s.Acquire(ctx, "fresh", "a", leaseTTL, store.ClaimTick)
	require.NoError(t, err)
	assert.Equal(t, store.State{Seen: map[string]store.SeenEntry{}, Attempts: 1}, st, "nothing stored, and no item seen yet")
	assert.Positive(t, l.Token)
	assert.Equal(t, []any{"fresh", "a", leaseTTL}, []any{l.Connector, l.Owner, l.TTL})
	assert.Nil(t, l.Carry(), "nothing committed yet")
}

func TestSeenEntries(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, store.Options{})
	l, _, err := s.Acquire(ctx, "c", "a", leaseTTL, store.ClaimTick)
	require.NoError(t, err)
	b := store.SeenEntry{Seq: 3, Day: store.Day(t0), Version: "2026-03-01T00:00:00Z"}
	require.NoError(t, s.Commit(ctx, l, store.Commit{
		Seen: []store.SeenItem{{ID: "a", Entry: store.SeenEntry{Seq: 1, Day: 7, Version: "1"}}, {ID: "b", Entry: b}, {ID: "gone", Entry: store.SeenEntry{Seq: 2, Day: 7}}},
		Now:  t0,
	}))
	// What versions before sequences wrote: the bare version.
	require.NoError(t, rdb.HSet(ctx, "pollgrid:{c}:seen", "old", "2025-01-01T00:00:00Z").Err())

	for _, tc := range []struct {
		name string
		ids  []string
		want []store.SeenEntry
	}{
		{name: "none", ids: nil, want: []store.SeenEntry{}},
		{name: "aligned with unseen", ids: []string{"x", "b", "a", "y"}, want: []store.SeenEntry{{}, b, {Seq: 1, Day: 7, Version: "1"}, {}}},
		{name: "a deleted item keeps its sequence", ids: []string{"gone"}, want: []store.SeenEntry{{Seq: 2, Day: 7}}},
		{name: "an entry written before sequences", ids: []string{"old"}, want: []store.SeenEntry{{Seq: 1, Version: "2025-01-01T00:00:00Z"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.SeenEntries(ctx, "c", tc.ids)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
	all, err := s.Seen(ctx, "c")
	require.NoError(t, err)
	assert.Equal(t, map[string]store.SeenEntry{"a": {Seq: 1, Day: 7, Version: "1"}, "b": b, "gone": {Seq: 2, Day: 7},
		"old": {Seq: 1, Version: "2025-01-01T00:00:00Z"}}, all)
	assert.False(t, all["gone"].Known())
	assert.True(t, all["a"].Known())
}

// items are entries of version "v-<id>" seen on t0's day.
func items(ids ...string) []store.SeenItem {
	return itemsOn(t0, ids...)
}

func itemsOn(at time.Time, ids ...string) []store.SeenItem {
	out := make([]store.SeenItem, len(ids))
	for i, id := range ids {
		out[i] = store.SeenItem{ID: id, Entry: store.SeenEntry{Seq: 1, Day: store.Day(at), Version: "v-" + id}}
	}
	return out
}

func TestSeenTTL(t *testing.T) {
	day := 24 * time.Hour
	type poll struct {
		at   time.Time
		seen []string
		// unfetched models a failed poll or a 304: no answer was read.
		unfetched bool
	}
	for _, tc := range []struct {
		name  string
		ttl   time.Duration
		polls []poll
		want  []string // remembered ids
	}{
		{
			name: "items not seen for SeenTTL are forgotten, present ones stay",
			ttl:  30 * day,
			polls: []poll{
				{at: t0, seen: []string{"gone", "kept"}},
				{at: t0.Add(10 * day), seen: []string{"kept", "newer"}},
				{at: t0.Add(31 * day), seen: []string{"kept"}},
			},
			want: []string{"kept", "newer"},
		},
		{
			name:  "exactly SeenTTL old is still remembered",
			ttl:   day,
			polls: []poll{{at: t0, seen: []string{"edge"}}, {at: t0.Add(day), seen: []string{"other"}}},
			want:  []string{"edge", "other"},
		},
		{
			name:  "a commit with no items still sweeps",
			ttl:   day,
			polls: []poll{{at: t0, seen: []string{"old"}}, {at: t0.Add(2 * day)}},
			want:  []string{},
		},
		{
			name: "failed or 304 polls forget nothing by age, however long",
			ttl:  day,
			polls: []poll{
				{at: t0, seen: []string{"a", "b"}},
				{at: t0.Add(40 * day), unfetched: true},
				{at: t0.Add(80 * day), unfetched: true},
			},
			want: []string{"a", "b"},
		},
		{
			name: "the next fetched poll keeps what it sees and forgets the rest",
			ttl:  day,
			polls: []poll{
				{at: t0, seen: []string{"a", "b"}},
				{at: t0.Add(40 * day), unfetched: true},
				{at: t0.Add(41 * day), seen: []string{"a"}},
			},
			want: []string{"a"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s, rdb := newStore(t, store.Options{SeenTTL: tc.ttl})
			for _, p := range tc.polls {
				l, _, err := s.Acquire(ctx, "c", "a", leaseTTL, store.ClaimTick)
				require.NoError(t, err)
				require.NoError(t, s.Commit(ctx, l, store.Commit{Seen: itemsOn(p.at, p.seen...), Now: p.at, Fetched: !p.unfetched}))
			}
			seen, err := rdb.HKeys(ctx, "pollgrid:{c}:seen").Result()
			require.NoError(t, err)
			slices.Sort(seen)
			assert.Equal(t, tc.want, seen, "seen hash")
		})
	}
}

// A large seen set is swept a step per fetched commit, a pass at most once
// a day, and the entries written before sequences (no day) are left alone.
func TestSeenSweepGoesAStepAtATime(t *testing.T) {
	ctx := context.Background()
	day := 24 * time.Hour
	s, rdb := newStore(t, store.Options{SeenTTL: day})
	commitFetched := func(at time.Time, seen []store.SeenItem, fetched bool) {
		l, _, err := s.Acquire(ctx, "c", "a", leaseTTL, store.ClaimTick)
		require.NoError(t, err)
		require.NoError(t, s.Commit(ctx, l, store.Commit{Seen: seen, Now: at, Fetched: fetched}))
	}
	commit := func(at time.Time, seen []store.SeenItem) { commitFetched(at, seen, true) }
	old := make([]string, 3*store.SweepStep)
	for i := range old {
		old[i] = fmt.Sprintf("old-%05d", i)
	}
	commitFetched(t0, itemsOn(t0, old...), false) // a fetched one would start that day's pass
	require.NoError(t, rdb.HSet(ctx, "pollgrid:{c}:seen", "legacy", "v0").Err())
	require.NoError(t, rdb.ZAdd(ctx, "pollgrid:{c}:seen_at", redis.Z{Score: 1, Member: "legacy"}).Err())
	later := t0.Add(3 * day)
	count := func() int64 { return rdb.HLen(ctx, "pollgrid:{c}:seen").Val() }

	commit(later, itemsOn(later, "fresh"))
	first := count()
	assert.Less(t, first, int64(len(old)+2), "the first step forgot some old entries")
	assert.Greater(t, first, int64(2), "one step does not look at every entry")
	assert.Zero(t, rdb.Exists(ctx, "pollgrid:{c}:seen_at").Val(), "the sorted set of the layout before is gone")
	// Until the pass is over (its cursor gone), not only until the last old
	// entry is forgotten: HSCAN can need a step more to say it is done.
	passing := func() bool { return rdb.HExists(ctx, "pollgrid:{c}:state", "seen_sweep").Val() }
	for range 10 {
		if count() == 2 && !passing() {
			break
		}
		commit(later, nil)
	}
	assert.Equal(t, int64(2), count(), "the pass went on until every old entry was forgotten: fresh and legacy are left")

	// The pass of the day is over: entries that went stale are left for tomorrow's.
	require.NoError(t, rdb.HSet(ctx, "pollgrid:{c}:seen", "stale", "1:1:v").Err())
	commit(later, nil)
	assert.Equal(t, int64(3), count(), "no second pass the same day")
	commit(later.Add(day), nil)
	assert.Equal(t, []string{"fresh", "legacy"}, sortedKeys(t, rdb, "pollgrid:{c}:seen"), "the next day's pass")
}

func sortedKeys(t *testing.T, rdb *redis.Client, key string) []string {
	keys, err := rdb.HKeys(context.Background(), key).Result()
	require.NoError(t, err)
	slices.Sort(keys)
	return keys
}

// Forget drops an entry and its data; an id also in Seen is written after
// (a deleted item's tombstone drops its data).
func TestCommitForgets(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, store.Options{})
	l, _, err := s.Acquire(ctx, "c", "a", leaseTTL, store.ClaimTick)
	require.NoError(t, err)
	require.NoError(t, s.Commit(ctx, l, store.Commit{Now: t0, Seen: []store.SeenItem{
		{ID: "a", Entry: store.SeenEntry{Seq: 1, Version: "1"}, Data: []byte(`{"a":1}`)},
		{ID: "b", Entry: store.SeenEntry{Seq: 1, Version: "1"}, Data: []byte(`{"b":1}`)},
	}}))
	l, _, err = s.Acquire(ctx, "c", "a", leaseTTL, store.ClaimTick)
	require.NoError(t, err)
	require.NoError(t, s.Commit(ctx, l, store.Commit{Now: t0, Forget: []string{"a", "b"},
		Seen: []store.SeenItem{{ID: "b", Entry: store.SeenEntry{Seq: 2, Day: 5}}}}))
	all, err := s.Seen(ctx, "c")
	require.NoError(t, err)
	assert.Equal(t, map[string]store.SeenEntry{"b": {Seq: 2, Day: 5}}, all, "a forgotten, b a tombstone")
	data, err := s.SeenData(ctx, "c", []string{"a", "b"})
	require.NoError(t, err)
	assert.Equal(t, [][]byte{nil, nil}, data)
	assert.Zero(t, rdb.Exists(ctx, "pollgrid:{c}:seen_data").Val())
}

// A poll can return more items than one Lua unpack takes; the script chunks.
func TestCommitManyItems(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, store.Options{})
	ids := make([]string, 12345)
	for i := range ids {
		ids[i] = fmt.Sprintf("item-%05d", i)
	}
	l, _, err := s.Acquire(ctx, "big", "a", leaseTTL, store.ClaimTick)
	require.NoError(t, err)
	require.NoError(t, s.Commit(ctx, l, store.Commit{Seen: items(ids...), Now: t0}))
	assert.Equal(t, int64(12345), rdb.HLen(ctx, "pollgrid:{big}:seen").Val())
	got, err := s.SeenEntries(ctx, "big", []string{"item-00000", "item-12344", "item-12345"})
	require.NoError(t, err)
	assert.Equal(t, []string{"v-item-00000", "v-item-12344", ""}, []string{got[0].Version, got[1].Version, got[2].Version})
}

func TestStateSurvivesReconnect(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	first := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	s := store.New(first, store.Options{})
	want := store.State{Cursor: "c1", ETag: "e1", LastPoll: t0, LastSuccess: t0}
	l, _, err := s.Acquire(ctx, "c", "a", leaseTTL, store.ClaimTick)
	require.NoError(t, err)
	require.NoError(t, s.Commit(ctx, l, store.Commit{State: want, Seen: items("x"), Now: t0}))
	require.NoError(t, first.Close())

	again := store.New(srv.Client(t), store.Options{})
	got, err := again.State(ctx, "c")
	require.NoError(t, err)
	assert.Equal(t, want, got)
	entries, err := again.SeenEntries(ctx, "c", []string{"x"})
	require.NoError(t, err)
	assert.Equal(t, "v-x", entries[0].Version)
	next, _, err := again.Acquire(ctx, "c", "a", leaseTTL, store.ClaimTick)
	require.NoError(t, err)
	assert.Greater(t, next.Token, l.Token, "the fence is kept too")
}

func TestLastPolls(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, store.Options{})
	for i, name := range []string{"a", "b"} {
		l, _, err := s.Acquire(ctx, name, "w", leaseTTL, store.ClaimTick)
		require.NoError(t, err)
		require.NoError(t, s.Commit(ctx, l, store.Commit{State: store.State{LastPoll: t0.Add(time.Duration(i) * time.Minute)}, Now: t0}))
	}
	got, err := s.LastPolls(ctx, []string{"a", "b", "never"})
	require.NoError(t, err)
	assert.Equal(t, map[string]time.Time{"a": t0, "b": t0.Add(time.Minute), "never": {}}, got)

	empty, err := s.LastPolls(ctx, nil)
	require.NoError(t, err)
	assert.Empty(t, empty)
}

// An adaptive connector's effective interval is committed with its cursor
// and read in bulk for the aggregator's gauges and views.
func TestEffectiveIntervals(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, store.Options{})
	for name, d := range map[string]time.Duration{"adaptive": 15 * time.Second, "fixed": 0} {
		l, _, err := s.Acquire(ctx, name, "w", leaseTTL, store.ClaimTick)
		require.NoError(t, err)
		require.NoError(t, s.Commit(ctx, l, store.Commit{State: store.State{LastPoll: t0, EffectiveInterval: d}, Now: t0}))
	}
	assert.Equal(t, "15000", rdb.HGet(ctx, "pollgrid:{adaptive}:state", "effective_interval_ms").Val())
	got, err := s.EffectiveIntervals(ctx, []string{"adaptive", "fixed", "never"})
	require.NoError(t, err)
	assert.Equal(t, map[string]time.Duration{"adaptive": 15 * time.Second}, got)

	require.NoError(t, rdb.HSet(ctx, "pollgrid:{fixed}:state", "effective_interval_ms", "soon").Err())
	_, err = s.EffectiveIntervals(ctx, []string{"fixed"})
	assert.ErrorContains(t, err, `read effective intervals: fixed: field effective_interval_ms: not milliseconds: "soon"`)
	_, err = s.State(ctx, "fixed")
	assert.ErrorContains(t, err, "field effective_interval_ms")
}

func TestInvalidInput(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, store.Options{})
	for _, tc := range []struct {
		name string
		call func() error
		want string
	}{
		{"empty name", func() error { _, _, err := s.Acquire(ctx, "", "a", leaseTTL, store.ClaimTick); return err }, "empty connector name"},
		{"brace in name", func() error { _, _, err := s.Acquire(ctx, "a}b", "a", leaseTTL, store.ClaimTick); return err }, "brace"},
		{"empty owner", func() error { _, _, err := s.Acquire(ctx, "c", "", leaseTTL, store.ClaimTick); return err }, "empty owner"},
		{"zero ttl", func() error { _, _, err := s.Acquire(ctx, "c", "a", 0, store.ClaimTick); return err }, "under 1ms"},
		{"nil lease commit", func() error { return s.Commit(ctx, nil, store.Commit{}) }, "nil lease"},
		{"empty seen id", func() error {
			l, _, err := s.Acquire(ctx, "c", "a", leaseTTL, store.ClaimTick)
			require.NoError(t, err)
			return s.Commit(ctx, l, store.Commit{Seen: []store.SeenItem{{ID: "", Entry: store.SeenEntry{Seq: 1, Version: "1"}}}})
		}, "empty id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestRedisDownErrorsNameTheOperation(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	s := store.New(rdb, store.Options{})
	require.NoError(t, s.Ping(ctx))
	srv.Kill()

	assert.ErrorContains(t, s.Ping(ctx), "ping redis")
	_, _, err := s.Acquire(ctx, "c", "a", leaseTTL, store.ClaimTick)
	assert.ErrorContains(t, err, "acquire lease c")
	assert.False(t, errors.Is(err, store.ErrLeaseHeld))
	err = s.Commit(ctx, &store.Lease{Connector: "c", Owner: "a", Token: 1, TTL: leaseTTL}, store.Commit{Now: t0})
	assert.ErrorContains(t, err, "commit state c")
	assert.False(t, errors.Is(err, store.ErrFenced), "an outage is not a fence")
}

func TestPrefix(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, store.Options{Prefix: "staging"})
	l, _, err := s.Acquire(ctx, "c", "a", leaseTTL, store.ClaimTick)
	require.NoError(t, err)
	require.NoError(t, s.Commit(ctx, l, store.Commit{State: store.State{Cursor: "x"}, Seen: items("i"), Now: t0}))
	keys, err := rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	slices.Sort(keys)
	assert.Equal(t, []string{"staging:{c}:fence", "staging:{c}:seen", "staging:{c}:state"}, keys)
	for _, k := range keys {
		assert.True(t, strings.HasPrefix(k, "staging:"))
	}
}

func TestAcquireBringsTheSeenVersionsOfASmallConnector(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, store.Options{})
	commitSeen := func(n int) {
		l, _, err := s.Acquire(ctx, "c", "a", leaseTTL, store.ClaimTick)
		require.NoError(t, err)
		seen := make([]store.SeenItem, n)
		for i := range seen {
			seen[i] = store.SeenItem{ID: fmt.Sprintf("item-%d", i), Entry: store.SeenEntry{Seq: 1, Day: store.Day(time.Now()), Version: "v1"}}
		}
		require.NoError(t, s.Commit(ctx, l, store.Commit{Seen: seen, Fetched: true}))
	}

	commitSeen(store.PrefetchSeen)
	l, st, err := s.Acquire(ctx, "c", "a", leaseTTL, store.ClaimTick)
	require.NoError(t, err)
	require.Len(t, st.Seen, store.PrefetchSeen)
	assert.Equal(t, store.SeenEntry{Seq: 1, Day: store.Day(time.Now()), Version: "v1"}, st.Seen["item-0"])
	assert.Equal(t, store.PrefetchSeen, st.SeenCount)
	require.NoError(t, s.Release(ctx, l))

	commitSeen(store.PrefetchSeen + 1)
	_, st, err = s.Acquire(ctx, "c", "a", leaseTTL, store.ClaimTick)
	require.NoError(t, err)
	assert.Nil(t, st.Seen, "too many to bring along: the poll reads the versions it needs")
	assert.Equal(t, store.PrefetchSeen+1, st.SeenCount)
}
