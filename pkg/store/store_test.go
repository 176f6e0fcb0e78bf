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
			leases[i], _, errs[i] = s.Acquire(ctx, "race", fmt.Sprintf("worker-%d", i), leaseTTL)
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
		l, _, err := s.Acquire(ctx, "tokens", owner, leaseTTL)
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
	paused, _, err := s.Acquire(ctx, "c", "paused", leaseTTL)
	require.NoError(t, err)

	require.NoError(t, rdb.FlushAll(ctx).Err())
	var after []*store.Lease
	for range 5 {
		l, _, err := s.Acquire(ctx, "c", "fresh", leaseTTL)
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
		l, st, err := s.Acquire(ctx, "c", "w", leaseTTL)
		require.NoError(t, err)
		assert.Equal(t, want, st.Attempts)
		require.NoError(t, s.Release(ctx, l)) // the poll ended without a commit (its worker died)
	}
	l, _, err := s.Acquire(ctx, "c", "w", leaseTTL)
	require.NoError(t, err)
	require.NoError(t, s.Commit(ctx, l, store.Commit{Now: t0}))
	_, st, err := s.Acquire(ctx, "c", "w", leaseTTL)
	require.NoError(t, err)
	assert.Equal(t, 1, st.Attempts, "a commit ends the count")
}

func TestOwnerWithColons(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, store.Options{})

	a, _, err := s.Acquire(ctx, "c", "host:1234", leaseTTL)
	require.NoError(t, err)
	require.NoError(t, s.Renew(ctx, a))
	require.ErrorIs(t, s.Renew(ctx, &store.Lease{Connector: "c", Owner: "host", Token: a.Token, TTL: leaseTTL}), store.ErrLeaseLost,
		"an owner that is a prefix of the holder is another owner")
	require.NoError(t, s.Release(ctx, a))
	again, _, err := s.Acquire(ctx, "c", "host:1234", leaseTTL)
	require.NoError(t, err)
	assert.Greater(t, again.Token, a.Token)
}

// rawState reads what is really stored for a connector, to check that a
// rejected write left no trace.
func rawState(t *testing.T, rdb *redis.Client, name string) (state, seen map[string]string, seenAt []redis.Z) {
	t.Helper()
	ctx := context.Background()
	state, err := rdb.HGetAll(ctx, "pollgrid:{"+name+"}:state").Result()
	require.NoError(t, err)
	seen, err = rdb.HGetAll(ctx, "pollgrid:{"+name+"}:seen").Result()
	require.NoError(t, err)
	seenAt, err = rdb.ZRangeWithScores(ctx, "pollgrid:{"+name+"}:seen_at", 0, -1).Result()
	require.NoError(t, err)
	return state, seen, seenAt
}

func TestStaleCommitIsFenced(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, store.Options{})

	first, _, err := s.Acquire(ctx, "c", "a", leaseTTL)
	require.NoError(t, err)
	require.NoError(t, s.Commit(ctx, first, store.Commit{
		State: store.State{Cursor: "committed", LastPoll: t0},
		Seen:  []store.SeenItem{{ID: "x", Version: "1"}},
		Now:   t0,
	}))
	stale, _, err := s.Acquire(ctx, "c", "a", leaseTTL)
	require.NoError(t, err)
	require.NoError(t, s.Release(ctx, stale)) // as if it expired while its worker was paused
	newer, _, err := s.Acquire(ctx, "c", "b", leaseTTL)
	require.NoError(t, err)

	wantState, wantSeen, wantSeenAt := rawState(t, rdb, "c")
	err = s.Commit(ctx, stale, store.Commit{
		State: store.State{Cursor: "stale"},
		Seen:  []store.SeenItem{{ID: "x", Version: "2"}, {ID: "y", Version: "1"}},
		Now:   t0.Add(time.Hour),
	})
	require.ErrorIs(t, err, store.ErrFenced)

	gotState, gotSeen, gotSeenAt := rawState(t, rdb, "c")
	assert.Equal(t, wantState, gotState, "state unchanged")
	assert.Equal(t, wantSeen, gotSeen, "seen unchanged")
	assert.Equal(t, wantSeenAt, gotSeenAt, "seen_at unchanged")
	require.NoError(t, s.Renew(ctx, newer), "the fenced commit did not release the newer lease")
	_, _, err = s.Acquire(ctx, "c", "a", leaseTTL)
	assert.ErrorIs(t, err, store.ErrLeaseHeld)
}

func TestALeaseHeldByTheSameOwnerIsHeld(t *testing.T) {
	// Two ticks of one connector can reach the same worker (a fire replaces
	// a tick whose poll still runs): the second must not take the lease
	// from the first.
	ctx := context.Background()
	s, _ := newStore(t, store.Options{})
	first, _, err := s.Acquire(ctx, "c", "w1", leaseTTL)
	require.NoError(t, err)
	_, _, err = s.Acquire(ctx, "c", "w1", leaseTTL)
	var held *store.LeaseHeldError
	require.ErrorAs(t, err, &held)
	assert.Positive(t, held.Remaining)
	require.NoError(t, s.Renew(ctx, first), "the first poll still holds its lease")
}

func TestExpiredLeaseIsTakenOver(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, store.Options{})

	old, _, err := s.Acquire(ctx, "c", "paused-worker", shortTTL)
	require.NoError(t, err)
	require.NoError(t, s.Renew(ctx, old), "renew while held")

	var taker *store.Lease
	require.Eventually(t, func() bool {
		taker, _, err = s.Acquire(ctx, "c", "other-worker", leaseTTL)
		return err == nil
	}, waitFor, pollEvery, "the lease expires and another owner takes it")
	assert.Greater(t, taker.Token, old.Token)

	assert.ErrorIs(t, s.Renew(ctx, old), store.ErrLeaseLost)
	assert.ErrorIs(t, s.Commit(ctx, old, store.Commit{State: store.State{Cursor: "old"}, Now: t0}), store.ErrFenced)
	require.NoError(t, s.Release(ctx, old), "releasing a lost lease is not an error")
	_, _, err = s.Acquire(ctx, "c", "third-worker", leaseTTL)
	require.ErrorIs(t, err, store.ErrLeaseHeld, "the old owner's release left the new lease alone")

	require.NoError(t, s.Commit(ctx, taker, store.Commit{State: store.State{Cursor: "new"}, Now: t0}))
	st, err := s.State(ctx, "c")
	require.NoError(t, err)
	assert.Equal(t, "new", st.Cursor)
}

func TestExpiredLeaseNobodyTookStillCommits(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, store.Options{})

	l, _, err := s.Acquire(ctx, "c", "slow-worker", shortTTL)
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
			l, _, err := s.Acquire(ctx, "c", "a", leaseTTL)
			require.NoError(t, err)
			_, _, err = s.Acquire(ctx, "c", "b", leaseTTL)
			require.ErrorIs(t, err, store.ErrLeaseHeld)

			require.NoError(t, tc.end(ctx, s, l))
			next, _, err := s.Acquire(ctx, "c", "b", leaseTTL)
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
	}
	for _, tc := range []struct {
		name       string
		before     store.State // committed first
		state      store.State
		wantFields []string
	}{
		{
			name:       "every field",
			state:      full,
			wantFields: []string{"consecutive_failures", "cursor", "etag", "last_error", "last_modified", "last_poll", "last_success", "not_before"},
		},
		{
			name:       "zero state writes nothing",
			state:      store.State{},
			wantFields: []string{},
		},
		{
			name:       "zero fields are deleted, zero times stay zero",
			before:     full,
			state:      store.State{Cursor: "c2", LastPoll: t0.Add(time.Minute)},
			wantFields: []string{"cursor", "last_poll"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s, rdb := newStore(t, store.Options{})
			if !reflect.ValueOf(tc.before).IsZero() {
				l, _, err := s.Acquire(ctx, "c", "a", leaseTTL)
				require.NoError(t, err)
				require.NoError(t, s.Commit(ctx, l, store.Commit{State: tc.before, Now: t0}))
			}
			l, _, err := s.Acquire(ctx, "c", "a", leaseTTL)
			require.NoError(t, err)
			require.NoError(t, s.Commit(ctx, l, store.Commit{State: tc.state, Now: t0}))

			got, err := s.State(ctx, "c")
			require.NoError(t, err)
			assert.Equal(t, tc.state, got)

			fields, err := rdb.HKeys(ctx, "pollgrid:{c}:state").Result()
			require.NoError(t, err)
			slices.Sort(fields)
			assert.Equal(t, tc.wantFields, fields)

			_, viaAcquire, err := s.Acquire(ctx, "c", "a", leaseTTL)
			require.NoError(t, err)
			assert.Equal(t, map[string]string{}, viaAcquire.Seen, "no item seen yet, and Acquire says so")
			assert.Equal(t, 1, viaAcquire.Attempts)
			viaAcquire.Seen, viaAcquire.Attempts = nil, 0
			assert.Equal(t, tc.state, viaAcquire, "Acquire returns the same state")
		})
	}
}

func TestStoredTimesAreUnixMillis(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, store.Options{})
	l, _, err := s.Acquire(ctx, "c", "a", leaseTTL)
	require.NoError(t, err)
	at := t0.Add(1234 * time.Millisecond)
	require.NoError(t, s.Commit(ctx, l, store.Commit{State: store.State{LastPoll: at}, Seen: items("x"), Now: at}))
	assert.Equal(t, "1772366401234", rdb.HGet(ctx, "pollgrid:{c}:state", "last_poll").Val())
	assert.Equal(t, float64(1772366401234), rdb.ZScore(ctx, "pollgrid:{c}:seen_at", "x").Val())
}

func TestAcquireOfNeverPolledConnector(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, store.Options{})
	l, st, err := s.Acquire(ctx, "fresh", "a", leaseTTL)
	require.NoError(t, err)
	assert.Equal(t, store.State{Seen: map[string]string{}, Attempts: 1}, st, "nothing stored, and no item seen yet")
	assert.Positive(t, l.Token)
	assert.Equal(t, &store.Lease{Connector: "fresh", Owner: "a", Token: l.Token, TTL: leaseTTL}, l)
}

func TestSeenVersions(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, store.Options{})
	l, _, err := s.Acquire(ctx, "c", "a", leaseTTL)
	require.NoError(t, err)
	require.NoError(t, s.Commit(ctx, l, store.Commit{
		Seen: []store.SeenItem{{ID: "a", Version: "1"}, {ID: "b", Version: "2026-03-01T00:00:00Z"}},
		Now:  t0,
	}))

	for _, tc := range []struct {
		name string
		ids  []string
		want []string
	}{
		{name: "none", ids: nil, want: []string{}},
		{name: "aligned with unseen", ids: []string{"x", "b", "a", "y"}, want: []string{"", "2026-03-01T00:00:00Z", "1", ""}},
		{name: "all unseen", ids: []string{"x"}, want: []string{""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.SeenVersions(ctx, "c", tc.ids)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func items(ids ...string) []store.SeenItem {
	out := make([]store.SeenItem, len(ids))
	for i, id := range ids {
		out[i] = store.SeenItem{ID: id, Version: "v-" + id}
	}
	return out
}

func TestSeenCapAndTTL(t *testing.T) {
	day := 24 * time.Hour
	type poll struct {
		at   time.Time
		seen []store.SeenItem
		// unfetched models a failed poll or a 304: no answer was read.
		unfetched bool
	}
	for _, tc := range []struct {
		name  string
		opts  store.Options
		polls []poll
		want  []string // remembered ids
	}{
		{
			name:  "under the cap nothing is forgotten",
			opts:  store.Options{SeenCap: 5},
			polls: []poll{{at: t0, seen: items("a", "b")}, {at: t0.Add(time.Minute), seen: items("c", "d", "e")}},
			want:  []string{"a", "b", "c", "d", "e"},
		},
		{
			name:  "over the cap the longest unseen go",
			opts:  store.Options{SeenCap: 3},
			polls: []poll{{at: t0, seen: items("a", "b")}, {at: t0.Add(time.Minute), seen: items("c")}, {at: t0.Add(2 * time.Minute), seen: items("a", "d")}},
			want:  []string{"a", "c", "d"},
		},
		{
			name:  "a poll larger than the cap keeps cap items",
			opts:  store.Options{SeenCap: 2},
			polls: []poll{{at: t0, seen: items("c", "a", "b")}},
			want:  []string{"b", "c"}, // same score: ties break by id
		},
		{
			name: "items not seen for SeenTTL are forgotten, present ones stay",
			opts: store.Options{SeenTTL: 30 * day},
			polls: []poll{
				{at: t0, seen: items("gone", "kept")},
				{at: t0.Add(10 * day), seen: items("kept", "newer")},
				{at: t0.Add(31 * day), seen: items("kept")},
			},
			want: []string{"kept", "newer"},
		},
		{
			name:  "exactly SeenTTL old is still remembered",
			opts:  store.Options{SeenTTL: day},
			polls: []poll{{at: t0, seen: items("edge")}, {at: t0.Add(day), seen: items("other")}},
			want:  []string{"edge", "other"},
		},
		{
			name:  "a commit with no items still trims",
			opts:  store.Options{SeenTTL: day},
			polls: []poll{{at: t0, seen: items("old")}, {at: t0.Add(2 * day), seen: nil}},
			want:  []string{},
		},
		{
			name: "failed or 304 polls forget nothing by age, however long",
			opts: store.Options{SeenTTL: day},
			polls: []poll{
				{at: t0, seen: items("a", "b")},
				{at: t0.Add(40 * day), unfetched: true},
				{at: t0.Add(80 * day), unfetched: true},
			},
			want: []string{"a", "b"},
		},
		{
			name: "the next fetched poll keeps what it sees and forgets the rest",
			opts: store.Options{SeenTTL: day},
			polls: []poll{
				{at: t0, seen: items("a", "b")},
				{at: t0.Add(40 * day), unfetched: true},
				{at: t0.Add(41 * day), seen: items("a")},
			},
			want: []string{"a"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s, rdb := newStore(t, tc.opts)
			for _, p := range tc.polls {
				l, _, err := s.Acquire(ctx, "c", "a", leaseTTL)
				require.NoError(t, err)
				require.NoError(t, s.Commit(ctx, l, store.Commit{Seen: p.seen, Now: p.at, Fetched: !p.unfetched}))
			}
			seen, err := rdb.HKeys(ctx, "pollgrid:{c}:seen").Result()
			require.NoError(t, err)
			slices.Sort(seen)
			assert.Equal(t, tc.want, seen, "seen hash")
			seenAt, err := rdb.ZRange(ctx, "pollgrid:{c}:seen_at", 0, -1).Result()
			require.NoError(t, err)
			slices.Sort(seenAt)
			assert.Equal(t, tc.want, seenAt, "seen_at follows seen")

			versions, err := s.SeenVersions(ctx, "c", tc.want)
			require.NoError(t, err)
			for i, id := range tc.want {
				assert.Equal(t, "v-"+id, versions[i])
			}
		})
	}
}

// A poll can return more items than one Lua unpack takes; the script chunks.
func TestCommitManyItems(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, store.Options{SeenCap: 10000})
	ids := make([]string, 12345)
	for i := range ids {
		ids[i] = fmt.Sprintf("item-%05d", i)
	}
	l, _, err := s.Acquire(ctx, "big", "a", leaseTTL)
	require.NoError(t, err)
	require.NoError(t, s.Commit(ctx, l, store.Commit{Seen: items(ids...), Now: t0}))
	assert.Equal(t, int64(10000), rdb.HLen(ctx, "pollgrid:{big}:seen").Val())
	assert.Equal(t, int64(10000), rdb.ZCard(ctx, "pollgrid:{big}:seen_at").Val())
	got, err := s.SeenVersions(ctx, "big", []string{"item-02344", "item-02345", "item-12344"})
	require.NoError(t, err)
	assert.Equal(t, []string{"", "v-item-02345", "v-item-12344"}, got, "the cap dropped the first ids (ties break by id)")
}

func TestStateSurvivesReconnect(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	first := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	s := store.New(first, store.Options{})
	want := store.State{Cursor: "c1", ETag: "e1", LastPoll: t0, LastSuccess: t0}
	l, _, err := s.Acquire(ctx, "c", "a", leaseTTL)
	require.NoError(t, err)
	require.NoError(t, s.Commit(ctx, l, store.Commit{State: want, Seen: items("x"), Now: t0}))
	require.NoError(t, first.Close())

	again := store.New(srv.Client(t), store.Options{})
	got, err := again.State(ctx, "c")
	require.NoError(t, err)
	assert.Equal(t, want, got)
	versions, err := again.SeenVersions(ctx, "c", []string{"x"})
	require.NoError(t, err)
	assert.Equal(t, []string{"v-x"}, versions)
	next, _, err := again.Acquire(ctx, "c", "a", leaseTTL)
	require.NoError(t, err)
	assert.Greater(t, next.Token, l.Token, "the fence is kept too")
}

func TestLastPolls(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, store.Options{})
	for i, name := range []string{"a", "b"} {
		l, _, err := s.Acquire(ctx, name, "w", leaseTTL)
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

func TestLeaderElection(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, store.Options{})
	const role = "scheduler"

	lead, err := s.AcquireLeader(ctx, role, "sched-a", shortTTL)
	require.NoError(t, err)
	assert.True(t, lead, "first owner leads")
	lead, err = s.AcquireLeader(ctx, role, "sched-b", shortTTL)
	require.NoError(t, err)
	assert.False(t, lead, "second owner waits")
	lead, err = s.AcquireLeader(ctx, role, "sched-a", leaseTTL)
	require.NoError(t, err)
	assert.True(t, lead, "the leader renews")
	assert.Greater(t, rdb.PTTL(ctx, "pollgrid:leader:scheduler").Val(), shortTTL, "renewal extended the TTL")

	require.NoError(t, s.ResignLeader(ctx, role, "sched-b"), "resigning when not leader is a no-op")
	lead, err = s.AcquireLeader(ctx, role, "sched-b", shortTTL)
	require.NoError(t, err)
	assert.False(t, lead, "a non-leader's resign left the leader alone")

	require.NoError(t, s.ResignLeader(ctx, role, "sched-a"))
	lead, err = s.AcquireLeader(ctx, role, "sched-b", shortTTL)
	require.NoError(t, err)
	assert.True(t, lead, "after a resign the other owner takes over at once")

	// sched-b stops renewing: sched-a takes over after the TTL.
	require.Eventually(t, func() bool {
		lead, err := s.AcquireLeader(ctx, role, "sched-a", leaseTTL)
		return err == nil && lead
	}, waitFor, pollEvery)
	lead, err = s.AcquireLeader(ctx, role, "sched-b", shortTTL)
	require.NoError(t, err)
	assert.False(t, lead)

	other, err := s.AcquireLeader(ctx, "compactor", "sched-b", shortTTL)
	require.NoError(t, err)
	assert.True(t, other, "roles are independent")
}

func TestInvalidInput(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, store.Options{})
	for _, tc := range []struct {
		name string
		call func() error
		want string
	}{
		{"empty name", func() error { _, _, err := s.Acquire(ctx, "", "a", leaseTTL); return err }, "empty connector name"},
		{"brace in name", func() error { _, _, err := s.Acquire(ctx, "a}b", "a", leaseTTL); return err }, "brace"},
		{"empty owner", func() error { _, _, err := s.Acquire(ctx, "c", "", leaseTTL); return err }, "empty owner"},
		{"zero ttl", func() error { _, _, err := s.Acquire(ctx, "c", "a", 0); return err }, "under 1ms"},
		{"nil lease commit", func() error { return s.Commit(ctx, nil, store.Commit{}) }, "nil lease"},
		{"empty seen id", func() error {
			l, _, err := s.Acquire(ctx, "c", "a", leaseTTL)
			require.NoError(t, err)
			return s.Commit(ctx, l, store.Commit{Seen: []store.SeenItem{{ID: "", Version: "1"}}})
		}, "empty id"},
		{"leader without role", func() error { _, err := s.AcquireLeader(ctx, "", "a", leaseTTL); return err }, "empty role"},
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
	_, _, err := s.Acquire(ctx, "c", "a", leaseTTL)
	assert.ErrorContains(t, err, "acquire lease c")
	assert.False(t, errors.Is(err, store.ErrLeaseHeld))
	err = s.Commit(ctx, &store.Lease{Connector: "c", Owner: "a", Token: 1, TTL: leaseTTL}, store.Commit{Now: t0})
	assert.ErrorContains(t, err, "commit state c")
	assert.False(t, errors.Is(err, store.ErrFenced), "an outage is not a fence")
}

func TestPrefix(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, store.Options{Prefix: "staging"})
	l, _, err := s.Acquire(ctx, "c", "a", leaseTTL)
	require.NoError(t, err)
	require.NoError(t, s.Commit(ctx, l, store.Commit{State: store.State{Cursor: "x"}, Seen: items("i"), Now: t0}))
	keys, err := rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	slices.Sort(keys)
	assert.Equal(t, []string{"staging:{c}:fence", "staging:{c}:seen", "staging:{c}:seen_at", "staging:{c}:state"}, keys)
	for _, k := range keys {
		assert.True(t, strings.HasPrefix(k, "staging:"))
	}
}

func TestAcquireBringsTheSeenVersionsOfASmallConnector(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, store.Options{})
	commitSeen := func(n int) {
		l, _, err := s.Acquire(ctx, "c", "a", leaseTTL)
		require.NoError(t, err)
		seen := make([]store.SeenItem, n)
		for i := range seen {
			seen[i] = store.SeenItem{ID: fmt.Sprintf("item-%d", i), Version: "v1"}
		}
		require.NoError(t, s.Commit(ctx, l, store.Commit{Seen: seen, Fetched: true}))
	}

	commitSeen(store.PrefetchSeen)
	l, st, err := s.Acquire(ctx, "c", "a", leaseTTL)
	require.NoError(t, err)
	require.Len(t, st.Seen, store.PrefetchSeen)
	assert.Equal(t, "v1", st.Seen["item-0"])
	require.NoError(t, s.Release(ctx, l))

	commitSeen(store.PrefetchSeen + 1)
	_, st, err = s.Acquire(ctx, "c", "a", leaseTTL)
	require.NoError(t, err)
	assert.Nil(t, st.Seen, "too many to bring along: the poll reads the versions it needs")
}
