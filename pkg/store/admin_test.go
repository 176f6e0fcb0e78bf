package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/store"
)

// A pause is seen by Acquire (the worker's one round trip) and survives the
// commits of polls that ran meanwhile; resume clears it and says when.
func TestPauseSurvivesCommitsAndResumeClearsIt(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, store.Options{})

	since, already, err := s.Pause(ctx, "noaa", "ops@host", t0)
	require.NoError(t, err)
	assert.False(t, already)
	assert.Equal(t, t0, since)
	_, already, err = s.Pause(ctx, "noaa", "someone-else", t0.Add(time.Minute))
	require.NoError(t, err)
	assert.True(t, already, "a second pause changes nothing")

	lease, st, err := s.Acquire(ctx, "noaa", "w1", leaseTTL, store.ClaimTick)
	require.ErrorIs(t, err, store.ErrPaused, "a tick of a paused connector takes no lease")
	assert.Nil(t, lease)
	assert.Equal(t, t0, st.PausedAt, "Acquire brings the pause along")
	assert.Equal(t, "ops@host", st.PausedBy, "the first pause's author stays")
	lease, _, err = s.Acquire(ctx, "noaa", "w1", leaseTTL, store.ClaimTrigger)
	require.NoError(t, err, "an operator's trigger polls a paused connector")
	require.NoError(t, s.Commit(ctx, lease, store.Commit{State: store.State{Cursor: "c1", LastPoll: t0}}))

	paused, err := s.Paused(ctx, []string{"noaa", "other"})
	require.NoError(t, err)
	assert.Equal(t, map[string]time.Time{"noaa": t0}, paused, "a commit does not unpause")

	pausedAt, was, err := s.Resume(ctx, "noaa", t0.Add(time.Hour))
	require.NoError(t, err)
	assert.True(t, was)
	assert.Equal(t, t0, pausedAt)
	st, err = s.State(ctx, "noaa")
	require.NoError(t, err)
	assert.True(t, st.PausedAt.IsZero())
	assert.Empty(t, st.PausedBy)
	assert.Equal(t, t0.Add(time.Hour), st.ResumedAt)
	assert.Equal(t, "c1", st.Cursor, "the state is untouched")

	_, was, err = s.Resume(ctx, "noaa", t0)
	require.NoError(t, err)
	assert.False(t, was, "resuming a running connector changes nothing")
}

// Reset forgets cursor, validators and seen versions under the lease,
// counts a generation, and fences a poll that began before it.
func TestResetForgetsCursorAndSeenVersionsAndFencesOlderPolls(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, store.Options{})
	lease, _, err := s.Acquire(ctx, "gh", "w1", leaseTTL, store.ClaimTick)
	require.NoError(t, err)
	require.NoError(t, s.Commit(ctx, lease, store.Commit{
		State:   store.State{Cursor: "page-9", ETag: `"abc"`, LastModified: "Mon", LastPoll: t0, LastSuccess: t0, ConsecutiveFailures: 0},
		Seen:    []store.SeenItem{{ID: "a", Entry: store.SeenEntry{Seq: 1, Day: store.Day(t0), Version: "1"}}, {ID: "b", Entry: store.SeenEntry{Seq: 1, Day: store.Day(t0), Version: "2"}}},
		Now:     t0,
		Fetched: true,
	}))

	// While a poll holds the lease, reset waits its turn.
	running, _, err := s.Acquire(ctx, "gh", "w2", leaseTTL, store.ClaimTick)
	require.NoError(t, err)
	_, err = s.Reset(ctx, "gh", "admin", leaseTTL)
	var held *store.LeaseHeldError
	require.ErrorAs(t, err, &held)
	require.NoError(t, s.Release(ctx, running))

	res, err := s.Reset(ctx, "gh", "admin", leaseTTL)
	require.NoError(t, err)
	assert.EqualValues(t, 2, res.Forgotten)
	assert.EqualValues(t, 1, res.Generation)
	assert.Greater(t, res.Token, running.Token)

	st, err := s.State(ctx, "gh")
	require.NoError(t, err)
	assert.Empty(t, st.Cursor)
	assert.Empty(t, st.ETag)
	assert.Empty(t, st.LastModified)
	assert.Equal(t, t0, st.LastSuccess, "history stays")
	assert.EqualValues(t, 1, st.Generation)
	entries, err := s.SeenEntries(ctx, "gh", []string{"a", "b"})
	require.NoError(t, err)
	assert.Equal(t, []store.SeenEntry{{}, {}}, entries)
	assert.Equal(t, 1, st.Attempts, "the poll that ran before counts; the reset, not a poll, does not")
	info, err := s.Lease(ctx, "gh")
	require.NoError(t, err)
	assert.Empty(t, info.Owner, "reset released its lease")
	assert.Equal(t, res.Token, info.Fence)

	// The poll that ran before the reset cannot write its cursor back.
	err = s.Commit(ctx, running, store.Commit{State: store.State{Cursor: "page-9"}})
	assert.ErrorIs(t, err, store.ErrFenced)

	res, err = s.Reset(ctx, "gh", "admin", leaseTTL)
	require.NoError(t, err)
	assert.EqualValues(t, 2, res.Generation, "every reset counts")
}

func TestLeaseTellsHolderTokenAndFence(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, store.Options{})
	info, err := s.Lease(ctx, "x")
	require.NoError(t, err)
	assert.Equal(t, store.LeaseInfo{}, info, "never polled")

	lease, _, err := s.Acquire(ctx, "x", "host-1:42", leaseTTL, store.ClaimTick)
	require.NoError(t, err)
	info, err = s.Lease(ctx, "x")
	require.NoError(t, err)
	assert.Equal(t, "host-1:42", info.Owner, "an owner with a colon")
	assert.Equal(t, lease.Token, info.Token)
	assert.Equal(t, lease.Token, info.Fence)
	assert.Greater(t, info.Remaining, leaseTTL/2)

	states, err := s.States(ctx, []string{"x", "never"})
	require.NoError(t, err)
	assert.Len(t, states, 2)
	n, err := s.SeenCount(ctx, "x")
	require.NoError(t, err)
	assert.Zero(t, n)
}
