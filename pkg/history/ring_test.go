package history_test

import (
	"context"
	"encoding/hex"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/pollgrid/pollgrid/pkg/history"
	"github.com/pollgrid/pollgrid/pkg/store"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// A ring written for longer than it spans keeps its last slots, each
// holding only its own period: a slot a later period takes starts from
// zero, and a report too old for the ring changes nothing.
func TestRingWrapAround(t *testing.T) {
	ctx := context.Background()
	const minuteSlots = 64
	m0 := time.Now().UTC().Truncate(15 * time.Minute).Add(-2 * time.Hour)
	// One poll a minute for 94 minutes: 30 past the ring's 64 slots.
	var reports []*pollgridv1.PollReport
	for i := range minuteSlots + 30 {
		reports = append(reports, report("c", success, m0.Add(time.Duration(i)*time.Minute+time.Second), time.Second))
	}
	for _, tc := range []struct {
		name  string
		write func(*history.Store) error
	}{
		{name: "one by one", write: func(s *history.Store) error { return record(ctx, s, reports...) }},
		{name: "one batch", write: func(s *history.Store) error { return s.RecordReports(ctx, shuffled(reports)) }},
		{name: "shuffled batches", write: func(s *history.Store) error {
			for chunk := range slices.Chunk(shuffled(reports), 7) {
				if err := s.RecordReports(ctx, chunk); err != nil {
					return err
				}
			}
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newStore(t)
			require.NoError(t, tc.write(s))
			minutes, err := s.Rollups(ctx, "c", history.PerMinute, m0.Add(-time.Hour), m0.Add(3*time.Hour))
			require.NoError(t, err)
			require.Len(t, minutes, minuteSlots, "the last 64 minutes")
			assert.Equal(t, m0.Add(30*time.Minute), minutes[0].Start)
			for _, r := range minutes {
				assert.Equal(t, int64(1), r.Polls, "minute %s holds its own poll only, not the one 64 minutes before", r.Start)
			}
			hours, err := s.Rollups(ctx, "c", history.PerHour, m0.Add(-time.Hour), m0.Add(3*time.Hour))
			require.NoError(t, err)
			var polls int64
			for _, r := range hours {
				polls += r.Polls
			}
			assert.Equal(t, int64(len(reports)), polls, "quarter-hours span a day: all of them")

			// Too old for the minute ring: dropped there, counted in the
			// quarter-hour and day.
			require.NoError(t, s.RecordReports(ctx, []*pollgridv1.PollReport{report("c", failure, m0.Add(5*time.Minute), time.Second)}))
			again, err := s.Rollups(ctx, "c", history.PerMinute, m0.Add(-time.Hour), m0.Add(3*time.Hour))
			require.NoError(t, err)
			assert.Equal(t, minutes, again)
			quarters, err := s.Rollups(ctx, "c", history.PerQuarterHour, m0, m0.Add(15*time.Minute))
			require.NoError(t, err)
			require.Len(t, quarters, 1)
			assert.Equal(t, history.Rollup{Start: m0, Width: 15 * time.Minute, Polls: 16, Successes: 15, Failures: 1,
				ItemsFetched: 150, ItemsPublished: 30, ItemsFailed: 15, LatencySum: 16 * time.Second, LatencyMax: time.Second}, quarters[0])

			// Late but in the ring: added to its minute.
			require.NoError(t, s.RecordReports(ctx, []*pollgridv1.PollReport{report("c", skipped, m0.Add(40*time.Minute), 0)}))
			late, err := s.Rollups(ctx, "c", history.PerMinute, m0.Add(40*time.Minute), m0.Add(41*time.Minute))
			require.NoError(t, err)
			require.Len(t, late, 1)
			assert.Equal(t, int64(2), late[0].Polls)
			assert.Equal(t, int64(1), late[0].Skipped)
		})
	}
}

// Ring slots are fixed-width: sums past a field's width stop at its largest
// value instead of wrapping into a small one.
func TestRingSaturates(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	at := time.Now().UTC().Truncate(time.Minute)
	huge := report("c", success, at, 3*time.Hour)
	huge.ItemsFetched = 3_000_000_000
	for range 2 { // the second adds to the stored bucket: 6e9 > 2^32-1
		require.NoError(t, s.RecordReports(ctx, []*pollgridv1.PollReport{huge}))
	}
	got, err := s.Rollups(ctx, "c", history.PerMinute, at, at.Add(time.Minute))
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, int64(1<<32-1), got[0].ItemsFetched)
	assert.Equal(t, 6*time.Hour, got[0].LatencySum, "5 bytes of microseconds hold 12 days")
	assert.Equal(t, time.Duration(1<<32-1)*time.Microsecond, got[0].LatencyMax, "4 bytes: about 71 minutes")
	m, _, err := s.Metrics(ctx, "c", time.Hour, at)
	require.NoError(t, err)
	assert.Equal(t, int64(6_000_000_000), m.ItemsFetched, "the counters are not capped")
}

// The recent reports are a ring of bytes: long entries leave fewer of them,
// the newest, each whole; text past its cap keeps its start and its cause.
func TestRecentRing(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	at := time.Now().UTC().Add(-time.Hour)
	var reports []*pollgridv1.PollReport
	for i := range 300 {
		r := report("c", failure, at.Add(time.Duration(i)*time.Second), time.Second)
		r.Error = "poll c: GET https://example.com/api: " + strings.Repeat("x", 1000) + ": the cause " + string(rune('a'+i%26))
		r.Traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		reports = append(reports, r)
	}
	for chunk := range slices.Chunk(reports, 13) {
		require.NoError(t, s.RecordReports(ctx, chunk))
	}
	got, err := s.Recent(ctx, "c", 0)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(got), 20, "the 20 a connector's page lists, at least")
	require.Less(t, len(got), history.RecentKept)
	t.Logf("%d reports kept with 256-byte errors", len(got))
	newest := reports[len(reports)-len(got):]
	for i, r := range got {
		want := proto.CloneOf(newest[i])
		want.Traceparent = ""
		assert.LessOrEqual(t, len(r.GetError()), 256)
		assert.True(t, strings.HasPrefix(r.GetError(), "poll c: GET https://example.com/api: xx"), r.GetError())
		assert.True(t, strings.HasSuffix(r.GetError(), want.GetError()[len(want.GetError())-13:]), "keeps the cause: %s", r.GetError())
		r.Error, want.Error = "", ""
		assert.True(t, proto.Equal(want, r), "report %d: want %v, got %v", i, want, r)
	}
	m, _, err := s.Metrics(ctx, "c", time.Hour, time.Now())
	require.NoError(t, err)
	assert.LessOrEqual(t, len(m.LastError), 512)
	assert.True(t, strings.HasSuffix(m.LastError, ": the cause "+string(rune('a'+299%26))), m.LastError)
}

// A connector written by the former layout (rollup hashes, a recent list,
// the latency window and open hour in the metrics hash) moves over on its
// next write: the window carries over, the open hour's minute hash, the
// one without an expiry, gets one, the recent list goes.
func TestFormerLayoutMovesOver(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t)
	now := time.Now().UTC()
	hour := now.Truncate(time.Hour)
	// 100 polls of 200ms, 4-byte big-endian microseconds, newest first.
	window := strings.Repeat(string([]byte{0, 3, 13, 64}), history.LatencyWindow)
	openMinutes := "pollgrid:{c}:rollup:1m:" + strconv.FormatInt(hour.Unix(), 10)
	closedHours := "pollgrid:{c}:rollup:1h:" + strconv.FormatInt(hour.Truncate(24*time.Hour).Unix(), 10)
	require.NoError(t, rdb.HSet(ctx, "pollgrid:{c}:metrics", "type", "weather-noaa", "polls", "100", "successes", "100",
		"latency", window, "rollup_minute", strconv.FormatInt(hour.Add(5*time.Minute).Unix(), 10)).Err())
	require.NoError(t, rdb.RPush(ctx, "pollgrid:{c}:recent", "an old report").Err())
	require.NoError(t, rdb.HSet(ctx, openMinutes, "5", "1,0,0,10,2,1,200000,200000").Err())
	require.NoError(t, rdb.HSet(ctx, closedHours, "0", "1,0,0,10,2,1,200000,200000").Err())
	require.NoError(t, rdb.PExpire(ctx, closedHours, time.Hour).Err())

	require.NoError(t, s.RecordReports(ctx, []*pollgridv1.PollReport{report("c", success, now, 1200*time.Millisecond)}))

	assert.Zero(t, rdb.Exists(ctx, "pollgrid:{c}:recent").Val(), "the recent list is gone")
	ttl := rdb.PTTL(ctx, openMinutes).Val()
	assert.Positive(t, ttl, "the open hour's minutes expire")
	assert.LessOrEqual(t, ttl, 25*time.Hour)
	assert.Equal(t, time.Hour, rdb.PTTL(ctx, closedHours).Val().Round(time.Minute), "the rest expire as they would have")
	fields, err := rdb.HKeys(ctx, "pollgrid:{c}:metrics").Result()
	require.NoError(t, err)
	assert.NotContains(t, fields, "latency")
	assert.NotContains(t, fields, "rollup_minute")

	m, _, err := s.Metrics(ctx, "c", time.Hour, now)
	require.NoError(t, err)
	assert.Equal(t, int64(101), m.Polls)
	assert.InDelta(t, 0.21, m.LatencyAvgSeconds, 1e-9, "the new poll and 99 of the window carried over")
	recent, err := s.Recent(ctx, "c", 0)
	require.NoError(t, err)
	assert.Len(t, recent, 1)
}

// A connector last written by layout 1 (one string of 14,330 bytes,
// testdata/layout1.hex: recorded by that layout's code from the reports
// below) moves over on its next write and then reads as if layout 2 had
// written it all: the same metrics, rollups and latency window, and the
// newest of the same recent reports.
func TestLayout1MovesOver(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t)
	fixture, err := os.ReadFile("testdata/layout1.hex")
	require.NoError(t, err)
	for line := range strings.Lines(string(fixture)) {
		field, value, _ := strings.Cut(strings.TrimSpace(line), " ")
		b, err := hex.DecodeString(value)
		require.NoError(t, err, field)
		switch {
		case field == "history":
			require.Len(t, b, 14330)
			require.NoError(t, rdb.Set(ctx, "pollgrid:{c}:history", b, 0).Err())
		case len(b) > 0:
			require.NoError(t, rdb.HSet(ctx, "pollgrid:{c}:metrics", field, b).Err())
		}
	}
	native := history.New(rdb, store.NewKeys("native"))
	require.NoError(t, native.RecordReports(ctx, mixedReports("c", 20, t0.Add(-5*24*time.Hour), 6*time.Hour, 7)))
	require.NoError(t, native.RecordReports(ctx, mixedReports("c", 400, t0.Add(-3*time.Hour), 27*time.Second, 8)))

	next := mixedReports("c", 30, t0, 20*time.Second, 9)
	require.NoError(t, s.RecordReports(ctx, next))
	require.NoError(t, native.RecordReports(ctx, next))

	keys, err := rdb.Keys(ctx, "pollgrid:{c}:*").Result()
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"pollgrid:{c}:metrics", "pollgrid:{c}:history", "pollgrid:{c}:minutes",
		"pollgrid:{c}:quarters", "pollgrid:{c}:days", "pollgrid:{c}:reports"}, keys)
	assert.Less(t, rdb.StrLen(ctx, "pollgrid:{c}:history").Val(), int64(1024), "the head alone")

	now := t0.Add(15 * time.Minute)
	moved, want := readAll(t, s, "c", now), readAll(t, native, "c", now)
	assert.Equal(t, want.metrics, moved.metrics)
	assert.NotEmpty(t, want.days)
	assert.Equal(t, want.minutes, moved.minutes)
	assert.Equal(t, want.quarters, moved.quarters)
	assert.Equal(t, want.hours, moved.hours)
	assert.Equal(t, want.days, moved.days)
	// Layout 1's ring was larger: the one moved over keeps its newest
	// bytes, so it may hold one report fewer or more than one written anew.
	require.GreaterOrEqual(t, len(moved.recent), 100)
	n := min(len(moved.recent), len(want.recent))
	assert.InDelta(t, len(want.recent), len(moved.recent), 1)
	for i := range n {
		assert.True(t, proto.Equal(want.recent[len(want.recent)-n+i], moved.recent[len(moved.recent)-n+i]), "report %d", i)
	}
}
