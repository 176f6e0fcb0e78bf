package leader_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/leader"
	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/pkg/store"
)

// The leader TTLs of the tests: shortTTL for those that wait for a real
// expiry.
const leaseTTL, shortTTL = 30 * time.Second, 100 * time.Millisecond

func TestLeaderElection(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	s := leader.New(rdb, store.NewKeys(""))
	const role = "scheduler"

	lead, err := s.Acquire(ctx, role, "sched-a", shortTTL)
	require.NoError(t, err)
	assert.True(t, lead, "first owner leads")
	lead, err = s.Acquire(ctx, role, "sched-b", shortTTL)
	require.NoError(t, err)
	assert.False(t, lead, "second owner waits")
	lead, err = s.Acquire(ctx, role, "sched-a", leaseTTL)
	require.NoError(t, err)
	assert.True(t, lead, "the leader renews")
	assert.Greater(t, rdb.PTTL(ctx, "pollgrid:leader:scheduler").Val(), shortTTL, "renewal extended the TTL")

	require.NoError(t, s.Resign(ctx, role, "sched-b"), "resigning when not leader is a no-op")
	lead, err = s.Acquire(ctx, role, "sched-b", shortTTL)
	require.NoError(t, err)
	assert.False(t, lead, "a non-leader's resign left the leader alone")

	require.NoError(t, s.Resign(ctx, role, "sched-a"))
	lead, err = s.Acquire(ctx, role, "sched-b", shortTTL)
	require.NoError(t, err)
	assert.True(t, lead, "after a resign the other owner takes over at once")

	// sched-b stops renewing: sched-a takes over after the TTL.
	require.Eventually(t, func() bool {
		lead, err := s.Acquire(ctx, role, "sched-a", leaseTTL)
		return err == nil && lead
	}, 5*time.Second, 5*time.Millisecond)
	lead, err = s.Acquire(ctx, role, "sched-b", shortTTL)
	require.NoError(t, err)
	assert.False(t, lead)

	other, err := s.Acquire(ctx, "compactor", "sched-b", shortTTL)
	require.NoError(t, err)
	assert.True(t, other, "roles are independent")
}

func TestInvalidInput(t *testing.T) {
	s := leader.New(redistest.Start(t).Client(t), store.NewKeys(""))
	for _, tc := range []struct {
		name, role, owner string
		ttl               time.Duration
		want              string
	}{
		{name: "without role", owner: "a", ttl: leaseTTL, want: "empty role"},
		{name: "without owner", role: "scheduler", ttl: leaseTTL, want: "empty role or owner"},
		{name: "zero ttl", role: "scheduler", owner: "a", want: "under 1ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Acquire(context.Background(), tc.role, tc.owner, tc.ttl)
			assert.ErrorContains(t, err, tc.want)
		})
	}
}

func TestPrefix(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	lead, err := leader.New(rdb, store.NewKeys("staging")).Acquire(ctx, "scheduler", "a", leaseTTL)
	require.NoError(t, err)
	require.True(t, lead)
	keys, err := rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	assert.Equal(t, []string{"staging:leader:scheduler"}, keys)
}
