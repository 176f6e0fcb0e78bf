package stack_test

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/store"
)

// pollctl's pause, resume and reset run their scripts on the dev stack's
// miniredis too.
func TestAdminVerbsOnMiniredis(t *testing.T) {
	ctx := context.Background()
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	s := store.New(rdb, store.Options{})
	now := time.Now().UTC().Truncate(time.Millisecond)

	_, already, err := s.Pause(ctx, "feed", "me", now)
	require.NoError(t, err)
	assert.False(t, already)
	paused, err := s.Paused(ctx, []string{"feed"})
	require.NoError(t, err)
	assert.Equal(t, now, paused["feed"])
	_, _, err = s.Acquire(ctx, "feed", "w", time.Minute, store.ClaimTick)
	require.ErrorIs(t, err, store.ErrPaused, "the tick's gate runs on miniredis too")
	_, was, err := s.Resume(ctx, "feed", now)
	require.NoError(t, err)
	assert.True(t, was)

	lease, _, err := s.Acquire(ctx, "feed", "w", time.Minute, store.ClaimTick)
	require.NoError(t, err)
	require.NoError(t, s.Commit(ctx, lease, store.Commit{State: store.State{Cursor: "c"}, Seen: []store.SeenItem{{ID: "a", Entry: store.SeenEntry{Seq: 1, Day: store.Day(now), Version: "1"}}}, Now: now, Fetched: true}))
	entries, err := s.SeenEntries(ctx, "feed", []string{"a"})
	require.NoError(t, err)
	assert.Equal(t, "1", entries[0].Version, "the commit's sweep (HSCAN) kept today's item")
	res, err := s.Reset(ctx, "feed", "admin", time.Minute)
	require.NoError(t, err)
	assert.EqualValues(t, 1, res.Forgotten)
	assert.EqualValues(t, 1, res.Generation)
	st, err := s.State(ctx, "feed")
	require.NoError(t, err)
	assert.Empty(t, st.Cursor)
	assert.Equal(t, now, st.ResumedAt)
}
