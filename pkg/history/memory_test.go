package history_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/history"
)

// MemoryGoal is issue 8's bound on a connector's Redis bytes besides its
// seen items, after 10,000 polls and whatever more come.
const memoryGoal = 128 << 10

// memoryCase is a connector's history to measure: n polls evenly spread
// over the span that ends now.
type memoryCase struct {
	name string
	n    int
	span time.Duration
}

var memoryCases = []memoryCase{
	{name: "30days/10000", n: 10_000, span: 30 * 24 * time.Hour},
	{name: "30days/20000", n: 20_000, span: 30 * 24 * time.Hour},
	{name: "1day/10000", n: 10_000, span: 24 * time.Hour},
	{name: "1day/20000", n: 20_000, span: 24 * time.Hour},
	// A poll every minute for 30 days fills every minute and hour bucket:
	// the most any connector can hold, however often it polls.
	{name: "30days/43200", n: 43_200, span: 30 * 24 * time.Hour},
}

// write records the case's reports for connector name, in flushes of 500.
func (c memoryCase) write(tb testing.TB, s *history.Store, name string, now time.Time) {
	tb.Helper()
	reports := mixedReports(name, c.n, now.Add(-c.span), c.span/time.Duration(c.n), 8)
	for chunk := range slices.Chunk(reports, 500) {
		require.NoError(tb, s.RecordReports(context.Background(), chunk))
	}
}

// connectorBytes sums MEMORY USAGE (every element sampled) over a
// connector's keys, its seen items excepted.
func connectorBytes(tb testing.TB, rdb *redis.Client, name string) (total int64, keys int) {
	tb.Helper()
	ctx := context.Background()
	iter := rdb.Scan(ctx, 0, "pollgrid:{"+name+"}:*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		if strings.HasSuffix(k, ":seen") || strings.HasSuffix(k, ":seen_at") {
			continue
		}
		n, err := rdb.MemoryUsage(ctx, k, 0).Result()
		require.NoError(tb, err, k)
		total += n
		keys++
	}
	require.NoError(tb, iter.Err())
	return total, keys
}

// A connector's history is bounded: 10,000 polls fit in memoryGoal, twice
// as many take about the same, and so does a poll every minute for 30 days
// (the ceiling).
func TestReportMemoryBounded(t *testing.T) {
	s, rdb := newStore(t)
	now := time.Now().UTC()
	bytes := map[string]int64{}
	for _, c := range memoryCases {
		name := strings.ReplaceAll(c.name, "/", "-")
		c.write(t, s, name, now)
		total, keys := connectorBytes(t, rdb, name)
		t.Logf("%s: %d bytes in %d keys", c.name, total, keys)
		assert.LessOrEqual(t, total, int64(memoryGoal), c.name)
		bytes[c.name] = total
	}
	for _, span := range []string{"30days", "1day"} {
		assert.InEpsilon(t, bytes[span+"/10000"], bytes[span+"/20000"], 0.25,
			"%s: 20,000 polls take about what 10,000 do", span)
	}
}
