//go:build unix

package history_test

import (
	"context"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/redistest"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// BenchmarkReportMemory writes a connector's polls (see memoryCases) and
// reports its Redis bytes besides seen items (MEMORY USAGE over its keys)
// and those of its history keys: the figure of the memory goal, 16 KiB; and
// the same for a young connector polled every minute, whose history has
// not filled its rings yet.
func BenchmarkReportMemory(b *testing.B) {
	young := []memoryCase{
		{name: "1minute/every-minute", span: time.Minute, step: time.Minute},
		{name: "5minutes/every-minute", span: 5 * time.Minute, step: time.Minute},
		{name: "1hour/every-minute", span: time.Hour, step: time.Minute},
		{name: "1day/every-minute", span: 24 * time.Hour, step: time.Minute},
	}
	for _, c := range append(young, memoryCases...) {
		b.Run(c.name, func(b *testing.B) {
			s, rdb := newStore(b)
			var total, history int64
			var keys int
			for b.Loop() {
				require.NoError(b, rdb.FlushDB(context.Background()).Err())
				c.write(b, s, "c", time.Now().UTC())
				total, history, keys = connectorBytes(b, rdb, "c")
			}
			b.ReportMetric(float64(total), "bytes/connector")
			b.ReportMetric(float64(history), "history-bytes/connector")
			b.ReportMetric(float64(keys), "keys/connector")
		})
	}
}

// BenchmarkRecordReports measures flushes of 1,000 reports: per report, the
// wall time of RecordReports and the CPU it costs this process (the
// aggregator's side: grouping, encoding, go-redis) and redis-server (INFO
// cpu, so the figure moves with the load on the machine). Two shapes: 1,000
// connectors polled every 60s (one report each per flush, a new minute
// bucket every time) and 500 connectors polled every second with a 2s flush
// (two reports each, added to the minute bucket already there).
func BenchmarkRecordReports(b *testing.B) {
	for _, c := range []struct {
		name             string
		connectors, each int
		interval         time.Duration
	}{
		{name: "interval60s", connectors: 1000, each: 1, interval: time.Minute},
		{name: "interval1s", connectors: 500, each: 2, interval: time.Second},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			s, rdb := newStore(b)
			at := time.Now().UTC().Add(-24 * time.Hour)
			var reports []*pollgridv1.PollReport
			for i := range c.connectors {
				reports = append(reports, mixedReports("connector-"+strconv.Itoa(i), c.each, at, c.interval, uint64(i))...)
			}
			step := int64(time.Duration(c.each) * c.interval / time.Second)
			flush := func() {
				for _, r := range reports {
					r.StartedAt.Seconds += step
				}
				require.NoError(b, s.RecordReports(ctx, reports))
			}
			flush() // load the script, create the keys
			redisBefore, goBefore := redistest.CPU(b, rdb), processCPU(b)
			start := time.Now()
			n := 0
			for b.Loop() {
				flush()
				n += len(reports)
			}
			elapsed := time.Since(start)
			b.ReportMetric(float64(elapsed.Nanoseconds())/float64(n), "ns/report")
			b.ReportMetric(float64((processCPU(b)-goBefore).Nanoseconds())/1e3/float64(n), "go-cpu-µs/report")
			b.ReportMetric(float64((redistest.CPU(b, rdb)-redisBefore).Nanoseconds())/1e3/float64(n), "redis-cpu-µs/report")
		})
	}
}

// processCPU is the user + system CPU this process used so far.
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	require.NoError(tb, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
