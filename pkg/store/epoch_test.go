package store_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/pkg/store"
)

// The epoch stays while the data lives and the counter grows by one a call,
// also under concurrent callers; both keys share one Cluster slot; a Redis
// that lost its data has another epoch and starts counting again.
func TestProgressGrowsWithTheDataAndStartsOverWithoutIt(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, store.Options{})
	first, err := s.Progress(ctx)
	require.NoError(t, err)
	assert.Len(t, first.Epoch, 32)
	assert.EqualValues(t, 1, first.Counter)

	const callers, calls = 8, 25
	var wg sync.WaitGroup
	seen := make(chan store.Progress, callers*calls)
	for range callers {
		wg.Go(func() {
			other := store.New(rdb, store.Options{}) // another process
			for range calls {
				p, err := other.Progress(ctx)
				assert.NoError(t, err)
				seen <- p
			}
		})
	}
	wg.Wait()
	close(seen)
	counters := map[int64]bool{}
	for p := range seen {
		assert.Equal(t, first.Epoch, p.Epoch)
		assert.False(t, counters[p.Counter], "counter %d handed out twice", p.Counter)
		counters[p.Counter] = true
	}
	last, err := s.Progress(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 2+callers*calls, last.Counter)

	keys, err := rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"pollgrid:epoch", "{pollgrid:epoch}:progress"}, keys)
	assert.Equal(t, redistest.ClusterSlot(keys[0]), redistest.ClusterSlot(keys[1]), "one script's keys live in one Cluster slot")

	require.NoError(t, rdb.FlushAll(ctx).Err())
	after, err := s.Progress(ctx)
	require.NoError(t, err)
	assert.NotEqual(t, first.Epoch, after.Epoch, "a Redis that lost its data has another epoch")
	assert.EqualValues(t, 1, after.Counter)

	// An epoch written before the counter existed (an upgrade) is kept.
	require.NoError(t, rdb.FlushAll(ctx).Err())
	require.NoError(t, rdb.Set(ctx, "pollgrid:epoch", "from-an-older-pollgrid", 0).Err())
	upgraded, err := s.Progress(ctx)
	require.NoError(t, err)
	assert.Equal(t, store.Progress{Epoch: "from-an-older-pollgrid", Counter: 1}, upgraded)
}
