package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/store"
)

// BenchmarkPollCycle measures one poll's Redis work: Acquire (lease + state)
// then Commit (fenced state write, 100 seen items, trimming, release).
func BenchmarkPollCycle(b *testing.B) {
	ctx := context.Background()
	s, _ := newStore(b, store.Options{})
	seen, st := pollCycle()

	b.ReportAllocs()
	for b.Loop() {
		l, _, err := s.Acquire(ctx, "bench", "worker-1", leaseTTL, store.ClaimTick)
		require.NoError(b, err)
		require.NoError(b, s.Commit(ctx, l, store.Commit{State: st, Seen: seen, Now: t0}))
	}
}

// pollCycle is what a benchmarked poll commits: 100 seen items and a state.
func pollCycle() ([]store.SeenItem, store.State) {
	seen := make([]store.SeenItem, 100)
	for i := range seen {
		seen[i] = store.SeenItem{ID: fmt.Sprintf("urn:oid:2.49.0.1.840.0.%040d", i), Entry: store.SeenEntry{Seq: 1, Day: store.Day(t0), Version: "2026-03-01T12:00:00Z"}}
	}
	return seen, store.State{Cursor: "2026-03-01T12:00:00Z", ETag: `W/"abc"`, LastPoll: t0, LastSuccess: t0}
}

// BenchmarkPollCycleCarried is BenchmarkPollCycle for a worker that
// carries the state its last commit left (AcquireCarried): the acquire
// answers with the token alone.
func BenchmarkPollCycleCarried(b *testing.B) {
	ctx := context.Background()
	s, _ := newStore(b, store.Options{})
	seen, st := pollCycle()
	var carried *store.Carried

	b.ReportAllocs()
	for b.Loop() {
		l, _, err := s.AcquireCarried(ctx, "bench", "worker-1", leaseTTL, store.ClaimTick, carried)
		require.NoError(b, err)
		require.NoError(b, s.Commit(ctx, l, store.Commit{State: st, Seen: seen, Now: t0}))
		carried = l.Carry()
	}
}
