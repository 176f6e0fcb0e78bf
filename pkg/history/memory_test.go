package history_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/history"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// memoryGoal is the bound on a connector's Redis bytes besides its
// seen items: 30 days of history in 16 KiB, whatever the poll rate.
const memoryGoal = 16 << 10

// memoryCase is a connector's polls to measure: every step for span, ending
// now, after warmup (polls every warmupStep for 30 days before the span)
// when set; items fetched per poll (0: mixed) and the length of each
// failure's error (0: all polls mixed, see mixedReports).
type memoryCase struct {
	name                   string
	span, step             time.Duration
	warmupStep             time.Duration
	items, alwaysFailError int
}

const month = 30 * 24 * time.Hour

var memoryCases = []memoryCase{
	{name: "30days/every-minute", span: month, step: time.Minute},
	// Every second for 30 days is 2.6 million polls: the benchmark writes
	// them all, the test (short) the last 2 hours of them after 30 days
	// of a poll every quarter-hour, which fills every ring slot all the same.
	{name: "30days/every-second/10000-items", span: month, step: time.Second, items: 10_000},
	{name: "2hours/every-second/10000-items/after-30days", span: 2 * time.Hour, step: time.Second, items: 10_000,
		warmupStep: 15 * time.Minute},
	{name: "30days/every-minute/always-failing/2KB-errors", span: month, step: time.Minute, alwaysFailError: 2048},
}

// write records the case's polls for connector name, in flushes of at most
// 3,600 reports.
func (c memoryCase) write(tb testing.TB, s *history.Store, name string, now time.Time) {
	tb.Helper()
	ctx := context.Background()
	start := now.Add(-c.span)
	if c.warmupStep > 0 {
		c.flushes(tb, s, name, start.Add(-month), c.warmupStep, month)
	}
	c.flushes(tb, s, name, start, c.step, c.span)
	require.NoError(tb, ctx.Err())
}

func (c memoryCase) flushes(tb testing.TB, s *history.Store, name string, start time.Time, step, span time.Duration) {
	tb.Helper()
	n := int(span / step)
	const flush = 3600
	for i := 0; i < n; i += flush {
		k := min(flush, n-i)
		reports := mixedReports(name, k, start.Add(time.Duration(i)*step), step, uint64(i))
		for j, r := range reports {
			if c.items > 0 {
				r.ItemsFetched, r.ItemsPublished = int64(c.items), int64(c.items/10)
			}
			if c.alwaysFailError > 0 {
				r.Outcome, r.ItemsFetched, r.ItemsPublished, r.ItemsFailed = failure, 0, 0, 0
				// Each error its own, as when it names a request id.
				r.Error = "poll " + name + ": GET https://api.example.com/v1/items?page=" + strings.Repeat("7", 20) +
					": upstream answered 500: " + strings.Repeat("a body that says why ", c.alwaysFailError/21)
				r.Error = r.Error[:c.alwaysFailError-8] + time.Duration(i + j).String()[:min(8, len(time.Duration(i+j).String()))]
			}
		}
		require.NoError(tb, s.RecordReports(context.Background(), reports))
	}
}

// connectorBytes sums MEMORY USAGE (every element sampled) over a
// connector's keys, its seen items excepted, and over its history keys
// alone (all but the metrics hash).
func connectorBytes(tb testing.TB, rdb *redis.Client, name string) (total, historyBytes int64, keys int) {
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
		if !strings.HasSuffix(k, ":metrics") {
			historyBytes += n
		}
	}
	require.NoError(tb, iter.Err())
	return total, historyBytes, keys
}

// A connector's history takes the same bytes whatever its poll rate, its
// item counts or its errors once its rings are full, and at most
// memoryGoal: the rings and the recent reports are of bounded size, the
// metrics hash holds counters and a capped last error. A young connector's
// keys hold what it has used so far.
func TestReportMemoryBounded(t *testing.T) {
	s, rdb := newStore(t)
	now := time.Now().UTC()
	var history []int64
	for _, c := range memoryCases {
		if c.step == time.Second && c.span == month {
			continue // the benchmark's, 2.6 million polls
		}
		// One name for all: a key's bytes count its name.
		require.NoError(t, rdb.FlushDB(context.Background()).Err())
		c.write(t, s, "c", now)
		total, historyBytes, keys := connectorBytes(t, rdb, "c")
		t.Logf("%s: %d bytes in %d keys, %d of them the history's", c.name, total, keys, historyBytes)
		assert.LessOrEqual(t, total, int64(memoryGoal), c.name)
		assert.Equal(t, 6, keys, "metrics, the head, three rings and the recent reports")
		history = append(history, historyBytes)
	}
	for _, n := range history[1:] {
		assert.Equal(t, history[0], n, "a full history's size is fixed")
	}

	// A new connector's history is its head and one report; an hour of
	// polls every minute adds an hour of minutes and four quarter-hours.
	require.NoError(t, rdb.FlushDB(context.Background()).Err())
	require.NoError(t, s.RecordReports(context.Background(), []*pollgridv1.PollReport{report("c", success, now, time.Second)}))
	fresh, _, _ := connectorBytes(t, rdb, "c")
	t.Logf("one report: %d bytes", fresh)
	assert.Less(t, fresh, int64(1024))
	require.NoError(t, rdb.FlushDB(context.Background()).Err())
	hour := memoryCase{span: time.Hour, step: time.Minute}
	hour.write(t, s, "c", now)
	anHour, _, _ := connectorBytes(t, rdb, "c")
	t.Logf("an hour of polls every minute: %d bytes", anHour)
	assert.Less(t, anHour, history[0]/2)
	assert.Greater(t, anHour, fresh)
}
