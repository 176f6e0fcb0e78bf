package store_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/store"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// A full poll cycle and a report leave exactly the documented keys, and all
// of one connector's keys hash to one Redis Cluster slot.
func TestKeysShareTheConnectorSlot(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, store.Options{})
	// Rollups expire at times derived from started_at: report an hour ago
	// and now, which closes the hour before.
	now := time.Now().UTC()
	hourAgo := now.Add(-time.Hour)
	rollups := []string{
		"rollup:1m:" + strconv.FormatInt(hourAgo.Truncate(time.Hour).Unix(), 10),
		"rollup:1m:" + strconv.FormatInt(now.Truncate(time.Hour).Unix(), 10),
		"rollup:1h:" + strconv.FormatInt(hourAgo.Truncate(24*time.Hour).Unix(), 10),
	}
	for _, name := range []string{"noaa-alerts-ca", "github-nats-server"} {
		l, _, err := s.Acquire(ctx, name, "w", leaseTTL, store.ClaimTick)
		require.NoError(t, err)
		require.NoError(t, s.Commit(ctx, l, store.Commit{State: store.State{Cursor: "x"}, Seen: items("a"), Now: t0}))
		_, _, err = s.Acquire(ctx, name, "w", leaseTTL, store.ClaimTick) // leave a lease in place
		require.NoError(t, err)
		require.NoError(t, s.RecordReports(ctx, []*pollgridv1.PollReport{
			report(name, success, hourAgo, time.Second), report(name, success, now, time.Second)}))
	}
	ok, err := s.AcquireLeader(ctx, "scheduler", "s1", leaseTTL)
	require.NoError(t, err)
	require.True(t, ok)

	keys, err := rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	slices.Sort(keys)
	want := []string{"pollgrid:connectors", "pollgrid:leader:scheduler"}
	for _, name := range []string{"noaa-alerts-ca", "github-nats-server"} {
		for _, suffix := range append([]string{"fence", "lease", "metrics", "recent", "seen", "state"}, rollups...) {
			want = append(want, "pollgrid:{"+name+"}:"+suffix)
		}
	}
	slices.Sort(want)
	assert.Equal(t, want, keys)

	slots := map[string]map[int]bool{}
	for _, k := range keys {
		for _, name := range []string{"noaa-alerts-ca", "github-nats-server"} {
			if strings.Contains(k, "{"+name+"}") {
				if slots[name] == nil {
					slots[name] = map[int]bool{}
				}
				slots[name][clusterSlot(k)] = true
			}
		}
	}
	assert.Equal(t, map[int]bool{clusterSlot("noaa-alerts-ca"): true}, slots["noaa-alerts-ca"])
	assert.Equal(t, map[int]bool{clusterSlot("github-nats-server"): true}, slots["github-nats-server"])
}

func TestClusterSlotMatchesRedis(t *testing.T) {
	// Vectors from the Redis Cluster specification.
	assert.Equal(t, 0x31C3, int(crc16([]byte("123456789"))))
	assert.Equal(t, clusterSlot("user1000"), clusterSlot("{user1000}.following"))
	assert.Equal(t, clusterSlot("foo{}{bar}"), int(crc16([]byte("foo{}{bar}"))%16384), "an empty tag hashes the whole key")
	assert.Equal(t, clusterSlot("bar"), clusterSlot("foo{bar}{zap}"), "the first tag counts")
}

// clusterSlot is Redis Cluster's HASH_SLOT, with its hash tag rule.
func clusterSlot(key string) int {
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if end := strings.IndexByte(key[open+1:], '}'); end > 0 {
			key = key[open+1 : open+1+end]
		}
	}
	return int(crc16([]byte(key)) % 16384)
}

// crc16 is CRC-16/XMODEM, the checksum of Redis Cluster's key slots.
func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// connSetup tells the handshake of a new pooled connection, which is not the
// operation's own round trip.
func connSetup(cmd redis.Cmder) bool {
	switch cmd.Name() {
	case "hello", "client", "auth", "select":
		return true
	}
	return false
}

// roundTrips counts what the client sends: a pipeline or a MULTI/EXEC is one.
type roundTrips struct{ n atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !connSetup(cmd) {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !connSetup(cmds[0]) {
			h.n.Add(1)
		}
		return next(ctx, cmds)
	}
}

func TestOneRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, rdb := newStore(t, store.Options{})
	hook := &roundTrips{}
	rdb.AddHook(hook)

	// Warm the script cache: the very first EVALSHA of a script falls back to EVAL.
	l, _, err := s.Acquire(ctx, "warm", "w", leaseTTL, store.ClaimTick)
	require.NoError(t, err)
	require.NoError(t, s.Commit(ctx, l, store.Commit{Now: t0}))
	require.NoError(t, s.RecordReports(ctx, []*pollgridv1.PollReport{report("warm", success, t0, time.Second)}))

	for _, tc := range []struct {
		name string
		op   func() error
	}{
		{"acquire", func() error { l, _, err = s.Acquire(ctx, "c", "w", leaseTTL, store.ClaimTick); return err }},
		{"commit", func() error { return s.Commit(ctx, l, store.Commit{Seen: items("a", "b"), Now: t0}) }},
		{"record reports of three connectors", func() error {
			return s.RecordReports(ctx, []*pollgridv1.PollReport{report("c", success, t0, time.Second),
				report("d", success, t0, time.Second), report("c", failure, t0.Add(time.Minute), time.Second),
				report("e", skipped, t0, 0)})
		}},
		{"recent", func() error { _, err := s.Recent(ctx, "c", 0); return err }},
		{"rollups", func() error { _, err := s.Rollups(ctx, "c", store.PerMinute, t0.Add(-24*time.Hour), t0); return err }},
		{"metrics", func() error { _, _, err := s.Metrics(ctx, "c", time.Hour, t0); return err }},
		{"last polls", func() error { _, err := s.LastPolls(ctx, []string{"a", "b", "c"}); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := hook.n.Load()
			require.NoError(t, tc.op())
			assert.Equal(t, int64(1), hook.n.Load()-before)
		})
	}
}
