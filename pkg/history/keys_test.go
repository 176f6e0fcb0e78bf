package history_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/history"
	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/pkg/store"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// t0 is a fixed "now" with whole milliseconds, as stored.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// newStore is a history over a fresh redis-server, with the default prefix.
func newStore(tb testing.TB) (*history.Store, *redis.Client) {
	tb.Helper()
	rdb := redistest.Start(tb).Client(tb)
	return history.New(rdb, store.NewKeys("")), rdb
}

// Reports leave exactly the documented keys, each connector's under its hash
// tag: its metrics hash and its history's head, rings and recent reports.
func TestKeysShareTheConnectorSlot(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t)
	now := time.Now().UTC()
	names := []string{"noaa-alerts-ca", "github-nats-server"}
	for _, name := range names {
		require.NoError(t, s.RecordReports(ctx, []*pollgridv1.PollReport{
			report(name, success, now.Add(-26*time.Hour), time.Second), report(name, success, now, time.Second)}))
	}

	var want []string
	for _, name := range names {
		for _, suffix := range []string{"metrics", "history", "minutes", "quarters", "days", "reports"} {
			want = append(want, store.NewKeys("").Connector(name, suffix))
		}
	}
	want = append(want, "pollgrid:connectors")
	keys, err := rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	// Every connector key is named by store.Keys, whose hash tag puts it in
	// the slot of the connector's lease and state (store's TestKeys).
	assert.ElementsMatch(t, want, keys)
}

func TestOneRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t)
	hook := &redistest.RoundTrips{}
	rdb.AddHook(hook)

	// Warm the script cache: the very first EVALSHA of a script falls back to EVAL.
	require.NoError(t, s.RecordReports(ctx, []*pollgridv1.PollReport{report("warm", success, t0, time.Second)}))

	for _, tc := range []struct {
		name string
		op   func() error
	}{
		{"record reports of three connectors", func() error {
			return s.RecordReports(ctx, []*pollgridv1.PollReport{report("c", success, t0, time.Second),
				report("d", success, t0, time.Second), report("c", failure, t0.Add(time.Minute), time.Second),
				report("e", skipped, t0, 0)})
		}},
		{"recent", func() error { _, err := s.Recent(ctx, "c", 0); return err }},
		{"rollups", func() error { _, err := s.Rollups(ctx, "c", history.PerMinute, t0.Add(-24*time.Hour), t0); return err }},
		{"metrics", func() error { _, _, err := s.Metrics(ctx, "c", time.Hour, t0); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := hook.Count()
			require.NoError(t, tc.op())
			assert.Equal(t, int64(1), hook.Count()-before)
		})
	}
}
