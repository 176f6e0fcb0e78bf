package store_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/pkg/store"
)

func TestKeys(t *testing.T) {
	k := store.NewKeys("")
	assert.Equal(t, "pollgrid:{noaa-alerts-ca}:state", k.Connector("noaa-alerts-ca", "state"))
	assert.Equal(t, "pollgrid:connectors", k.Global("connectors"))
	assert.Equal(t, "staging:{c}:seen", store.NewKeys("staging").Connector("c", "seen"))
	assert.Equal(t, redistest.ClusterSlot("noaa-alerts-ca"), redistest.ClusterSlot(k.Connector("noaa-alerts-ca", "rollup:1m:0")),
		"the name is the hash tag")
}

// A full poll cycle leaves exactly the documented keys, and all of one
// connector's keys hash to one Redis Cluster slot.
func TestKeysShareTheConnectorSlot(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, store.Options{})
	names := []string{"noaa-alerts-ca", "github-nats-server"}
	for _, name := range names {
		l, _, err := s.Acquire(ctx, name, "w", leaseTTL, store.ClaimTick)
		require.NoError(t, err)
		require.NoError(t, s.Commit(ctx, l, store.Commit{State: store.State{Cursor: "x"}, Seen: items("a"), Now: t0}))
		_, _, err = s.Acquire(ctx, name, "w", leaseTTL, store.ClaimTick) // leave a lease in place
		require.NoError(t, err)
	}

	keys, err := rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	slices.Sort(keys)
	var want []string
	for _, name := range names {
		for _, suffix := range []string{"fence", "lease", "seen", "state"} {
			want = append(want, "pollgrid:{"+name+"}:"+suffix)
		}
	}
	slices.Sort(want)
	assert.Equal(t, want, keys)
	for _, name := range names {
		for _, k := range keys {
			if strings.Contains(k, "{"+name+"}") {
				assert.Equal(t, redistest.ClusterSlot(name), redistest.ClusterSlot(k), k)
			}
		}
	}
}

func TestOneRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, store.Options{})
	hook := &redistest.RoundTrips{}
	rdb.AddHook(hook)

	// Warm the script cache: the very first EVALSHA of a script falls back to EVAL.
	l, _, err := s.Acquire(ctx, "warm", "w", leaseTTL, store.ClaimTick)
	require.NoError(t, err)
	require.NoError(t, s.Commit(ctx, l, store.Commit{Now: t0}))

	for _, tc := range []struct {
		name string
		op   func() error
	}{
		{"acquire", func() error { l, _, err = s.Acquire(ctx, "c", "w", leaseTTL, store.ClaimTick); return err }},
		{"commit", func() error { return s.Commit(ctx, l, store.Commit{Seen: items("a", "b"), Now: t0}) }},
		{"last polls", func() error { _, err := s.LastPolls(ctx, []string{"a", "b", "c"}); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := hook.Count()
			require.NoError(t, tc.op())
			assert.Equal(t, int64(1), hook.Count()-before)
		})
	}
}
