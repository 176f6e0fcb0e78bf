package history_test

import (
	"context"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/pollgrid/pollgrid/pkg/history"
	"github.com/pollgrid/pollgrid/pkg/store"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// Rollup hashes expire at absolute times derived from started_at, so the
// tests that keep rollups place their reports around the real now.

// mixedReports returns n reports of one connector, every step apart from
// start, with outcomes, durations and item counts drawn from a fixed seed
// (about 90% success, 8% failure, 2% skipped).
func mixedReports(name string, n int, start time.Time, step time.Duration, seed uint64) []*pollgridv1.PollReport {
	rng := rand.New(rand.NewPCG(seed, seed))
	out := make([]*pollgridv1.PollReport, n)
	for i := range out {
		outcome := success
		switch p := rng.IntN(100); {
		case p < 2:
			outcome = skipped
		case p < 10:
			outcome = failure
		}
		took := time.Duration(50+rng.IntN(2000)) * time.Millisecond
		if outcome == skipped {
			took = 0
		}
		r := report(name, outcome, start.Add(time.Duration(i)*step), took)
		if outcome == success {
			r.ItemsFetched, r.ItemsPublished, r.ItemsFailed = int64(rng.IntN(500)), int64(rng.IntN(20)), int64(rng.IntN(2))
		}
		out[i] = r
	}
	return out
}

func TestBatchEqualsOneByOne(t *testing.T) {
	ctx := context.Background()
	_, rdb := newStore(t)
	now := time.Now().UTC()
	// 600 polls of "c" every 17s over the last ~3 hours (many per minute and
	// hour bucket), 30 of "d" in between.
	c := mixedReports("c", 600, now.Add(-3*time.Hour), 17*time.Second, 1)
	d := mixedReports("d", 30, now.Add(-3*time.Hour), 5*time.Minute, 2)
	all := append(slices.Clone(c), d...)
	slices.SortFunc(all, func(a, b *pollgridv1.PollReport) int {
		return a.GetStartedAt().AsTime().Compare(b.GetStartedAt().AsTime())
	})

	oneByOne := history.New(rdb, store.NewKeys("one"))
	require.NoError(t, record(ctx, oneByOne, all...))
	oneBatch := history.New(rdb, store.NewKeys("batch"))
	require.NoError(t, oneBatch.RecordReports(ctx, shuffled(all)))
	// Flushes in order of arrival, each batch shuffled inside.
	chunked := history.New(rdb, store.NewKeys("chunks"))
	for chunk := range slices.Chunk(all, 37) {
		require.NoError(t, chunked.RecordReports(ctx, shuffled(chunk)))
	}

	require.Equal(t, int64(len(c)), readAll(t, oneByOne, "c", now).metrics.Polls)
	minutes, err := oneByOne.Rollups(ctx, "c", history.PerMinute, now.Add(-4*time.Hour), now)
	require.NoError(t, err)
	require.Len(t, minutes, 64, "the minute ring holds the last 64 minutes polled")
	for _, name := range []string{"c", "d"} {
		want := readAll(t, oneByOne, name, now)
		for _, s := range []struct {
			name  string
			store *history.Store
		}{{"one batch", oneBatch}, {"batches of 37", chunked}} {
			t.Run(name+" "+s.name, func(t *testing.T) {
				got := readAll(t, s.store, name, now)
				assert.Equal(t, want.metrics, got.metrics)
				assert.Equal(t, want.minutes, got.minutes)
				assert.Equal(t, want.quarters, got.quarters)
				assert.Equal(t, want.hours, got.hours)
				assert.Equal(t, want.days, got.days)
				require.Len(t, got.recent, len(want.recent))
				for i := range want.recent {
					assert.True(t, proto.Equal(want.recent[i], got.recent[i]), "recent report %d", i)
				}
			})
		}
	}
}

type everything struct {
	metrics                        history.ConnectorMetrics
	minutes, quarters, hours, days []history.Rollup
	recent                         []*pollgridv1.PollReport
}

func readAll(t *testing.T, s *history.Store, name string, now time.Time) everything {
	t.Helper()
	ctx := context.Background()
	var e everything
	var err error
	e.metrics, _, err = s.Metrics(ctx, name, time.Hour, now)
	require.NoError(t, err)
	e.minutes, err = s.Rollups(ctx, name, history.PerMinute, now.Add(-history.PerMinute.Retention()), now.Add(time.Hour))
	require.NoError(t, err)
	e.quarters, err = s.Rollups(ctx, name, history.PerQuarterHour, now.Add(-history.PerQuarterHour.Retention()), now.Add(time.Hour))
	require.NoError(t, err)
	e.hours, err = s.Rollups(ctx, name, history.PerHour, now.Add(-history.PerHour.Retention()), now.Add(time.Hour))
	require.NoError(t, err)
	e.days, err = s.Rollups(ctx, name, history.PerDay, now.Add(-history.PerDay.Retention()), now.Add(time.Hour))
	require.NoError(t, err)
	e.recent, err = s.Recent(ctx, name, 0)
	require.NoError(t, err)
	return e
}

func TestRollups(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	// h is an hour boundary 3 hours ago: its minute and hour buckets are
	// well within their retention.
	h := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	r1 := report("c", success, h.Add(-30*time.Second), 100*time.Millisecond)
	r2 := report("c", success, h.Add(10*time.Second), 200*time.Millisecond)
	r3 := report("c", failure, h.Add(50*time.Second), 400*time.Millisecond)
	r4 := report("c", skipped, h.Add(55*time.Second), 3*time.Millisecond)
	r5 := report("c", success, h.Add(70*time.Second), 50*time.Microsecond)
	// Two flushes that both add to the bucket of minute h.
	require.NoError(t, s.RecordReports(ctx, []*pollgridv1.PollReport{r3, r1, r5}))
	require.NoError(t, s.RecordReports(ctx, []*pollgridv1.PollReport{r4, r2}))

	ms := time.Millisecond
	minutes := []history.Rollup{
		{Start: h.Add(-time.Minute), Width: time.Minute, Polls: 1, Successes: 1, ItemsFetched: 10, ItemsPublished: 2, ItemsFailed: 1,
			LatencySum: 100 * ms, LatencyMax: 100 * ms},
		{Start: h, Width: time.Minute, Polls: 3, Successes: 1, Failures: 1, Skipped: 1, ItemsFetched: 10, ItemsPublished: 2, ItemsFailed: 1,
			LatencySum: 600 * ms, LatencyMax: 400 * ms},
		{Start: h.Add(time.Minute), Width: time.Minute, Polls: 1, Successes: 1, ItemsFetched: 10, ItemsPublished: 2, ItemsFailed: 1,
			LatencySum: 50 * time.Microsecond, LatencyMax: 50 * time.Microsecond},
	}
	hours := []history.Rollup{
		{Start: h.Add(-time.Hour), Width: time.Hour, Polls: 1, Successes: 1, ItemsFetched: 10, ItemsPublished: 2, ItemsFailed: 1,
			LatencySum: 100 * ms, LatencyMax: 100 * ms},
		{Start: h, Width: time.Hour, Polls: 4, Successes: 2, Failures: 1, Skipped: 1, ItemsFetched: 20, ItemsPublished: 4, ItemsFailed: 2,
			LatencySum: 600*ms + 50*time.Microsecond, LatencyMax: 400 * ms},
	}
	quarters := []history.Rollup{hours[0], hours[1]}
	quarters[0].Start, quarters[0].Width = h.Add(-15*time.Minute), 15*time.Minute
	quarters[1].Start, quarters[1].Width = h, 15*time.Minute
	var days []history.Rollup
	for _, r := range minutes {
		day := r.Start.Truncate(24 * time.Hour)
		if len(days) == 0 || !days[len(days)-1].Start.Equal(day) {
			days = append(days, history.Rollup{Start: day, Width: 24 * time.Hour})
		}
		days[len(days)-1].Add(r)
	}
	for _, tc := range []struct {
		name         string
		res          history.Resolution
		since, until time.Time
		want         []history.Rollup
	}{
		{name: "minutes across an hour boundary", res: history.PerMinute, since: h.Add(-time.Hour), until: h.Add(time.Hour), want: minutes},
		{name: "since inside a bucket takes it", res: history.PerMinute, since: h.Add(30 * time.Second), until: h.Add(time.Hour), want: minutes[1:]},
		{name: "until is exclusive", res: history.PerMinute, since: h.Add(-time.Hour), until: h.Add(time.Minute), want: minutes[:2]},
		{name: "hours: four quarter-hours each", res: history.PerHour, since: h.Add(-48 * time.Hour), until: h.Add(48 * time.Hour), want: hours},
		{name: "longer than the retention", res: history.PerHour, since: h.Add(-365 * 24 * time.Hour), until: h.Add(time.Hour), want: hours},
		{name: "quarter-hours", res: history.PerQuarterHour, since: h.Add(-time.Hour), until: h.Add(time.Hour), want: quarters},
		{name: "days", res: history.PerDay, since: h.Add(-40 * 24 * time.Hour), until: h.Add(40 * 24 * time.Hour), want: days},
		{name: "nothing in range", res: history.PerMinute, since: h.Add(2 * time.Minute), until: h.Add(time.Hour)},
		{name: "empty range", res: history.PerMinute, since: h, until: h},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Rollups(ctx, "c", tc.res, tc.since, tc.until)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
	assert.Equal(t, 300*ms, minutes[1].LatencyAvg(), "skips do not count in the latency")
	assert.Zero(t, history.Rollup{Skipped: 3}.LatencyAvg())

	none, err := s.Rollups(ctx, "unknown", history.PerHour, h.Add(-time.Hour), h)
	require.NoError(t, err)
	assert.Empty(t, none)
	_, err = s.Rollups(ctx, "c", history.Resolution(9), h, h.Add(time.Hour))
	assert.ErrorContains(t, err, "unknown resolution")
}

// The history's keys expire HistoryTTL after a connector's last new day
// (its counters stay), and a ring holds its last buckets only.
func TestHistoryExpires(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t)
	now := time.Now().UTC()
	day := 24 * time.Hour
	thisHour := now.Truncate(time.Hour)
	recent := thisHour.Add(-2 * time.Hour)
	dayAgo := thisHour.Add(-26 * time.Hour)
	// Past the 30 days of days (and a day to spare): a ring's worth before
	// today, so no reader reads it.
	monthAgo := now.Add(-32 * day)
	require.NoError(t, s.RecordReports(ctx, []*pollgridv1.PollReport{
		report("c", success, recent, time.Second),
		report("c", success, dayAgo, time.Second),
		report("c", success, monthAgo, time.Second),
		report("c", success, thisHour, time.Second),
	}))
	for _, key := range []string{"history", "minutes", "quarters", "days", "reports"} {
		assert.InDelta(t, float64(history.HistoryTTL), float64(rdb.PTTL(ctx, "pollgrid:{c}:"+key).Val()), float64(time.Minute), key)
	}
	assert.Equal(t, time.Duration(-1), rdb.PTTL(ctx, "pollgrid:{c}:metrics").Val(), "the counters stay")

	minutes, err := s.Rollups(ctx, "c", history.PerMinute, now.Add(-40*day), now.Add(time.Hour))
	require.NoError(t, err)
	assert.Equal(t, []time.Time{thisHour}, starts(minutes), "an hour of minutes")
	hours, err := s.Rollups(ctx, "c", history.PerHour, now.Add(-40*day), now.Add(time.Hour))
	require.NoError(t, err)
	assert.Equal(t, []time.Time{recent, thisHour}, starts(hours), "a day of hours")
	days, err := s.Rollups(ctx, "c", history.PerDay, now.Add(-40*day), now.Add(time.Hour))
	require.NoError(t, err)
	want := []time.Time{dayAgo.Truncate(day), now.Truncate(day)}
	if recent.Truncate(day) != now.Truncate(day) {
		want = []time.Time{dayAgo.Truncate(day), recent.Truncate(day), now.Truncate(day)}
	}
	assert.Equal(t, slices.Compact(want), starts(days), "30 days of days")

	m, _, err := s.Metrics(ctx, "c", time.Hour, now)
	require.NoError(t, err)
	assert.Equal(t, int64(4), m.Polls, "counters keep what the rings dropped")
}

// Reports that arrive after a later period opened (from a slow worker, or
// redelivered) land in their buckets all the same.
func TestRollupsLateReports(t *testing.T) {
	ctx := context.Background()
	_, rdb := newStore(t)
	h := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	inOrder := []*pollgridv1.PollReport{
		report("c", success, h.Add(10*time.Second), time.Second),
		report("c", failure, h.Add(20*time.Second), 2*time.Second),
		report("c", success, h.Add(time.Hour+5*time.Second), 3*time.Second),
		report("c", success, h.Add(2*time.Hour), 4*time.Second),
	}
	want := history.New(rdb, store.NewKeys("in-order"))
	require.NoError(t, want.RecordReports(ctx, inOrder))

	late := history.New(rdb, store.NewKeys("late"))
	for _, i := range []int{0, 3, 1, 2} { // h opens, h+2h closes it, then h and h+1h come late
		require.NoError(t, late.RecordReports(ctx, inOrder[i:i+1]))
	}
	for _, res := range []history.Resolution{history.PerMinute, history.PerQuarterHour, history.PerHour, history.PerDay} {
		w, err := want.Rollups(ctx, "c", res, h.Add(-time.Hour), h.Add(3*time.Hour))
		require.NoError(t, err)
		got, err := late.Rollups(ctx, "c", res, h.Add(-time.Hour), h.Add(3*time.Hour))
		require.NoError(t, err)
		assert.Equal(t, w, got, res.String())
	}
	hours, err := late.Rollups(ctx, "c", history.PerHour, h, h.Add(3*time.Hour))
	require.NoError(t, err)
	require.Len(t, hours, 3)
	assert.Equal(t, int64(2), hours[0].Polls)
	assert.Equal(t, 3*time.Second, hours[0].LatencySum)
}

func expireTime(t *testing.T, rdb *redis.Client, key string) time.Time {
	t.Helper()
	at, err := rdb.PExpireTime(context.Background(), key).Result()
	require.NoError(t, err)
	require.Positive(t, at, "%s has an expiry", key)
	return time.UnixMilli(at.Milliseconds()).UTC()
}

func starts(rs []history.Rollup) []time.Time {
	out := make([]time.Time, len(rs))
	for i, r := range rs {
		out[i] = r.Start
	}
	return out
}

func TestRecent(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t)
	reports := mixedReports("c", 150, t0, time.Minute, 3)
	for chunk := range slices.Chunk(reports, 50) {
		require.NoError(t, s.RecordReports(ctx, shuffled(chunk)))
	}
	assert.InDelta(t, float64(history.HistoryTTL), float64(rdb.PTTL(ctx, "pollgrid:{c}:history").Val()), float64(time.Minute))

	for _, tc := range []struct {
		name  string
		limit int
		want  []*pollgridv1.PollReport
	}{
		{name: "all kept, oldest first", limit: 0, want: reports[50:]},
		{name: "the newest", limit: 10, want: reports[140:]},
		{name: "more than kept", limit: 1000, want: reports[50:]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Recent(ctx, "c", tc.limit)
			require.NoError(t, err)
			require.Len(t, got, len(tc.want))
			for i := range tc.want {
				assert.True(t, proto.Equal(tc.want[i], got[i]), "report %d: want %v, got %v", i, tc.want[i], got[i])
			}
		})
	}
	none, err := s.Recent(ctx, "unknown", 0)
	require.NoError(t, err)
	assert.Empty(t, none)
}

// One batch is one pipeline with one script call per connector, however many
// reports each has, and a Redis that lost its scripts is handled.
func TestRecordReportsCommands(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t)
	now := time.Now().UTC()
	batch := func(i int) []*pollgridv1.PollReport {
		var out []*pollgridv1.PollReport
		for _, name := range []string{"a", "b", "c"} {
			out = append(out, mixedReports(name, 20, now.Add(time.Duration(i)*time.Hour), time.Minute, uint64(i))...)
		}
		return shuffled(out)
	}
	require.NoError(t, s.RecordReports(ctx, batch(0)))

	before := commandCalls(t, rdb)
	require.NoError(t, s.RecordReports(ctx, batch(1)))
	after := commandCalls(t, rdb)
	assert.Equal(t, before["evalsha"]+3, after["evalsha"], "one script call per connector")
	assert.Equal(t, before["sadd"]+1, after["sadd"])
	assert.Equal(t, before["eval"], after["eval"])

	require.NoError(t, rdb.ScriptFlush(ctx).Err())
	require.NoError(t, s.RecordReports(ctx, batch(2)))
	m, _, err := s.Metrics(ctx, "b", time.Hour, now)
	require.NoError(t, err)
	assert.Equal(t, int64(60), m.Polls, "the batch after SCRIPT FLUSH was recorded once")
}

// commandCalls reads how often the server ran each command.
func commandCalls(t *testing.T, rdb *redis.Client) map[string]int {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	require.NoError(t, err)
	calls := map[string]int{}
	for line := range strings.Lines(info) {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		n, _, _ := strings.Cut(rest, ",")
		calls[strings.TrimPrefix(name, "cmdstat_")], err = strconv.Atoi(n)
		require.NoError(t, err)
	}
	return calls
}

// A connector whose keys Redis refuses for good does not hold the others
// back: they are written, and the error names it.
func TestRecordReportsRefusedConnector(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t)
	require.NoError(t, rdb.Set(ctx, "pollgrid:{bad}:metrics", "not a hash", 0).Err())
	require.NoError(t, rdb.HSet(ctx, "pollgrid:{worse}:history", "not", "a string").Err())
	now := time.Now().UTC()
	err := s.RecordReports(ctx, []*pollgridv1.PollReport{
		report("good", success, now, time.Second), report("bad", success, now, time.Second), report("good", failure, now, time.Second),
		report("worse", success, now, time.Second),
	})
	var rejected *history.RejectedError
	require.ErrorAs(t, err, &rejected)
	assert.ElementsMatch(t, []string{"bad", "worse"}, slices.Collect(maps.Keys(rejected.Connectors)))
	assert.ErrorContains(t, err, "WRONGTYPE")
	_, found, err := s.Metrics(ctx, "worse", time.Hour, now)
	require.NoError(t, err)
	assert.False(t, found, "a refused call writes nothing")
	m, _, err := s.Metrics(ctx, "good", time.Hour, now)
	require.NoError(t, err)
	assert.Equal(t, int64(2), m.Polls)
}

// Negative counts or durations from a broken worker cannot corrupt a bucket.
func TestRollupsIgnoreNegatives(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	h := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	odd := report("c", success, h, -time.Second)
	odd.ItemsFetched = -5
	for range 2 { // the second one adds to the stored bucket
		require.NoError(t, s.RecordReports(ctx, []*pollgridv1.PollReport{odd}))
	}
	got, err := s.Rollups(ctx, "c", history.PerMinute, h, h.Add(time.Minute))
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, int64(2), got[0].Polls)
	assert.Zero(t, got[0].ItemsFetched)
	assert.Zero(t, got[0].LatencySum)
}
