package store_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/store"
)

// BenchmarkSeenMemory measures the Redis bytes one remembered item costs, at
// 100,000 items (the default seen_cap) with ids and versions shaped like
// USGS's ("us7000abcd", a millisecond timestamp): the seen hash as Commit
// writes it, and, as the baseline in the same run, the layout before
// sequences (a hash of versions and a sorted set of last-seen times).
func BenchmarkSeenMemory(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	s, rdb := newStore(b, store.Options{})
	seen := make([]store.SeenItem, n)
	for i := range seen {
		seen[i] = store.SeenItem{ID: fmt.Sprintf("us7000%04x", i), Entry: store.SeenEntry{
			Seq: 1 + uint64(i%3), Day: store.Day(t0), Version: strconv.FormatInt(t0.UnixMilli()-int64(i)*1000, 10)}}
	}
	for b.Loop() {
		require.NoError(b, rdb.FlushAll(ctx).Err())
		l, _, err := s.Acquire(ctx, "usgs", "w", leaseTTL, store.ClaimTick)
		require.NoError(b, err)
		require.NoError(b, s.Commit(ctx, l, store.Commit{Seen: seen, Now: t0}))

		_, err = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, it := range seen {
				p.HSet(ctx, "before:seen", it.ID, it.Entry.Version)
				p.ZAdd(ctx, "before:seen_at", redis.Z{Score: float64(t0.UnixMilli()), Member: it.ID})
			}
			return nil
		})
		require.NoError(b, err)
	}
	usage := func(key string) float64 {
		v, err := rdb.MemoryUsage(ctx, key, 0).Result()
		require.NoError(b, err, key)
		return float64(v)
	}
	now := usage("pollgrid:{usgs}:seen") / n
	before := (usage("before:seen") + usage("before:seen_at")) / n
	b.ReportMetric(now, "B/item")
	b.ReportMetric(before, "B/item-before")
	b.ReportMetric(now/before, "ratio")
}
