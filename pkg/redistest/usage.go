package redistest

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// CPU is the CPU redis-server used so far, user and system (INFO cpu):
// what a benchmark reads before and after to charge Redis's side of its work.
func CPU(tb testing.TB, rdb redis.UniversalClient) time.Duration {
	tb.Helper()
	var total time.Duration
	for name, value := range infoFields(tb, rdb, "cpu") {
		if name == "used_cpu_user" || name == "used_cpu_sys" {
			secs, err := strconv.ParseFloat(value, 64)
			require.NoError(tb, err, "%s:%s", name, value)
			total += time.Duration(secs * float64(time.Second))
		}
	}
	return total
}

// ScriptTime is the time redis-server spent running Lua scripts so far
// (INFO commandstats, EVALSHA and EVAL): their work, without the network's.
func ScriptTime(tb testing.TB, rdb redis.UniversalClient) time.Duration {
	tb.Helper()
	var total time.Duration
	for name, stats := range infoFields(tb, rdb, "commandstats") {
		if name != "cmdstat_evalsha" && name != "cmdstat_eval" {
			continue
		}
		for stat := range strings.SplitSeq(stats, ",") {
			if v, ok := strings.CutPrefix(stat, "usec="); ok {
				usec, err := strconv.ParseInt(v, 10, 64)
				require.NoError(tb, err, "%s:%s", name, stats)
				total += time.Duration(usec) * time.Microsecond
			}
		}
	}
	return total
}

// infoFields is one section of INFO as name → value.
func infoFields(tb testing.TB, rdb redis.UniversalClient, section string) map[string]string {
	tb.Helper()
	info, err := rdb.Info(context.Background(), section).Result()
	require.NoError(tb, err)
	out := map[string]string{}
	for line := range strings.Lines(info) {
		if name, value, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			out[name] = value
		}
	}
	return out
}
