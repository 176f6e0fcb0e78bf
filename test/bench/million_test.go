//go:build bench

package bench

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/history"
	"github.com/pollgrid/pollgrid/pkg/scheduler"
	"github.com/pollgrid/pollgrid/pkg/store"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
	"github.com/pollgrid/pollgrid/test/harness"
)

// Scenario 7: a million connectors at 600 s (the same 1,667 polls/s due as
// 100,000 at 60 s) applied with pollctl to the whole system (scheduler, 2
// workers, aggregator): how long the apply and the scheduling take, then,
// in a window after the first ticks' backlog is worked off, whether every
// connector due was polled and how late, what every process holds, and
// what Redis holds per connector, now and extrapolated to 30 days.

const (
	millionConnectors = 1_000_000
	millionInterval   = 600 * time.Second
	// millionRSSGoal is the sum of every process's RSS the issue allows.
	millionRSSGoal = 12 << 30
	// millionRedisGoal is the Redis bytes a connector may hold after 30 days.
	millionRedisGoal = 16 << 10
	// A fire counts as polled by a request starting at most millionEarly
	// before it (clocks, and the second a cron fire is rounded to) and
	// before millionGrace after the window's end.
	millionEarly = time.Second
	millionGrace = 30 * time.Second
	// historyDays is the span of the history written for one connector to
	// extrapolate Redis to: the longest pkg/history keeps (hour rollups).
	historyDays = 30
)

type millionRun struct {
	Quiet Quiet
	Bytes int64
	Apply applied
	// Installed as in catalogRun; Drained from then until the scheduler
	// sent no more first ticks and the workers' backlog was worked off, NaN
	// when not within the wait.
	Installed, Drained float64
	// ApplyWindow is from the start of the apply until every connector is
	// scheduled (or the apply's end, without the gauge); Window the window
	// after the backlog.
	ApplyWindow, Window Window
	// Due is the upstream's record of the window against each connector's
	// fires; HistP50, HistP99 the workers' lateness histogram's bucket
	// bounds over the window.
	Due              DueCoverage
	HistP50, HistP99 float64
	// NATSEmpty is nats-server's RSS before anything was applied,
	// NATSScheduled once every connector was scheduled.
	NATSEmpty, NATSScheduled int64
	// RedisEmpty and RedisAfter are redis-server's used_memory before the
	// services started and after the window.
	RedisEmpty, RedisAfter int64
	// Sample is one connector polled in the window, its keys after it;
	// History30d the history keys of a connector polled every interval for
	// historyDays, written with pkg/history.
	Sample     keyBytes
	History30d keyBytes
	// AddedAt is when, into the window, a connector was added (with
	// pollctl apply) while the window's resync ran; AddedInEffect how long
	// from the apply's start until its schedule was installed.
	AddedAt, AddedInEffect time.Duration
}

// keyBytes is MEMORY USAGE (SAMPLES 0: every element) summed over a
// connector's keys, its history's (metrics, recent, rollups) apart.
type keyBytes struct {
	Name           string
	History, Other int64
	Keys           int
}

// PerConnector is redis-server's memory per connector after the window.
func (r millionRun) PerConnector(n int) float64 {
	return float64(r.RedisAfter-r.RedisEmpty) / float64(n)
}

// PerConnector30d extrapolates PerConnector to historyDays: the sample's
// history as it is now is replaced by a history of historyDays.
func (r millionRun) PerConnector30d(n int) float64 {
	if r.History30d.Keys == 0 || r.Sample.Keys == 0 {
		return math.NaN()
	}
	return r.PerConnector(n) - float64(r.Sample.History) + float64(r.History30d.History)
}

func benchMillion(t *testing.T, s *suite) string {
	n := s.scaled(millionConnectors)
	window := pick(s, 5*time.Minute, time.Minute)
	harness.Build(t, pollctlPkg)
	runs := repeat(t, s, func(t *testing.T) millionRun { return runMillion(t, s, n, window) })
	if len(runs) == 0 {
		return "" // every run failed: keep the results written before
	}
	return millionReport(n, window, runs)
}

func runMillion(t *testing.T, s *suite, n int, window time.Duration) millionRun {
	// The fires are counted from each connector's phase: that needs a
	// schedule that keeps it (cron), not "@every".
	spec := scheduler.Spec("c0", millionInterval)
	require.False(t, strings.HasPrefix(spec, "@every"), "the schedule of a connector at %s is %q: its fires have no fixed phase to count them by", Dur(millionInterval), spec)

	r := millionRun{Quiet: s.waitQuiet(t, "million"), Installed: math.NaN(), Drained: math.NaN(), HistP50: math.NaN(), HistP99: math.NaN()}
	st := newStack(t, s)
	rdb := st.Redis.Client(t)
	r.RedisEmpty = usedMemory(t, rdb)
	natsPID := st.NATS.Cmd.Process.Pid
	up, sch, workers := st.catalogServices(n)
	st.startService("aggregator", "aggregator", nil, true)
	file, size := catalogFile(t, "million", 0, n, millionInterval, up.URL, nil)
	r.Bytes = size
	var err error
	r.NATSEmpty, err = ProcRSS(natsPID)
	require.NoError(t, err)

	m, err := StartMeter(st.Procs)
	require.NoError(t, err)
	r.Apply = st.applyNew(t, file, n, size)
	r.Installed = st.installed(t, sch, n, r.Apply, 20*time.Minute)
	r.ApplyWindow = m.Stop()
	r.NATSScheduled, err = ProcRSS(natsPID)
	require.NoError(t, err)

	// A new connector gets a first tick (paced: for up to an interval after
	// the apply, unless its schedule fires first): the window starts once
	// the scheduler sends none and the workers have worked them off, so
	// that it shows the steady state.
	due := float64(n) / millionInterval.Seconds()
	settling := watchFullSyncs(sch)
	if d, ok := st.waitSettled(t, sch, uint64(max(100, 2*due)), pick(s, 15*time.Minute, 5*time.Minute)); ok {
		r.Drained = d.Seconds()
		t.Logf("first ticks over and the workers' backlog worked off %s after every connector was scheduled", d.Round(time.Second))
	}
	// The window holds a periodic resync: it starts a minute before the
	// next is due (SCHEDULER_RESYNC after the last ended). Waiting for the
	// backlog to drain tends to end just after one, and a window of
	// SCHEDULER_RESYNC from there would show none; when the next is due
	// within the minute, or runs already, the window waits for the one
	// after it.
	ended := settling.Stop()
	if len(ended) == 0 {
		ended = waitFullSync(t, sch, millionResync+5*time.Minute)
	}
	if last := ended[len(ended)-1]; time.Until(last.ended.Add(millionResync)) < time.Minute {
		t.Logf("the last full sync ended %s ago (took %.1f s): the next is due within a minute, or runs; waiting for it to end",
			time.Since(last.ended).Round(time.Second), last.took)
		ended = waitFullSync(t, sch, millionResync+5*time.Minute)
	}
	last := ended[len(ended)-1]
	t.Logf("the last full sync ended %s ago (took %.1f s): the window starts a minute before the next",
		time.Since(last.ended).Round(time.Second), last.took)
	sleep(t, time.Until(last.ended.Add(millionResync-time.Minute)))

	h0 := latenessBuckets(t, workers)
	from := time.Now()
	m, err = StartMeter(st.Procs)
	require.NoError(t, err)
	profiled := st.profileCPU("million", window)
	syncs := watchFullSyncs(sch)
	// The resync starts about a minute into the window: a connector added
	// half a minute later shows how long a change waits during one. Its
	// URL is past the upstream's items (a 404 every poll); only its schedule
	// is looked at.
	sleep(t, min(millionAddAt, window/2))
	added, _ := catalogFile(t, "million-added", n, n+1, millionInterval, up.URL, nil)
	r.AddedAt = time.Since(from)
	_, r.AddedInEffect, _ = st.applyUntilScheduled(t, added, n, 0, millionInterval)
	sleep(t, time.Until(from.Add(window)))
	to := time.Now()
	for _, fs := range syncs.Stop() {
		t.Logf("a full sync of the schedules ended %s into the window, and took %.1f s", fs.ended.Sub(from).Round(time.Second), fs.took)
	}
	t.Logf("a connector added %s into the window had its schedule %s after its apply began",
		r.AddedAt.Round(100*time.Millisecond), r.AddedInEffect.Round(10*time.Millisecond))
	r.Window = m.Stop()
	profiled()
	s.noteWindow(t, "million", r.Window)
	// Fires due near the end may be polled a little after it.
	sleep(t, millionGrace)
	until := time.Now()
	if h1 := latenessBuckets(t, workers); h0 != nil && h1 != nil {
		b := SubBuckets(h1, h0)
		r.HistP50, r.HistP99 = BucketQuantile(b, 0.5), BucketQuantile(b, 0.99)
	}
	polls := up.polls(t, from.Add(-time.Minute))
	phases := make([]time.Duration, n)
	for i := range phases {
		phases[i] = scheduler.Phase("c"+strconv.Itoa(i), millionInterval)
	}
	r.Due = PollsWhenDue(polls.Times, phases, millionInterval, from, to, until, millionEarly)
	for _, sl := range r.Due.Slices(from, 10*time.Second) {
		t.Logf("fires due %s–%s into the window: %d polled, lateness p99 %.3fs max %.3fs",
			sl.From, sl.From+10*time.Second, sl.Polled, sl.P99, sl.Max)
	}
	p50, p99, pmax := Quantiles(r.Due.Lateness)
	t.Logf("%d fires due in the window, %d polled (%d missed), lateness p50 %.3fs p99 %.3fs max %.3fs (histogram p99 ≤ %gs); %d polls, %d not answering a fire",
		r.Due.Due, r.Due.Polled, r.Due.Missed(), p50, p99, pmax, r.HistP99, r.Due.Polls, r.Due.Extra)

	// Redis, after the aggregator's last flush of the window.
	r.RedisAfter = usedMemory(t, rdb)
	if i := polledIn(polls.Times, from, to); i >= 0 {
		r.Sample = connectorKeys(t, rdb, "c"+strconv.Itoa(i))
	}
	r.History30d = writeHistory(t, rdb, "bench-history-30d", historyDays*24*time.Hour, millionInterval)
	t.Logf("redis used_memory %s empty, %s after: %.0f B a connector; sample %s: history %d B, other keys %d B (%d keys); "+
		"%d days of history: %d B in %d keys; extrapolated %.0f B a connector",
		MiB(float64(r.RedisEmpty)), MiB(float64(r.RedisAfter)), r.PerConnector(n), r.Sample.Name, r.Sample.History, r.Sample.Other,
		r.Sample.Keys, historyDays, r.History30d.History, r.History30d.Keys, r.PerConnector30d(n))
	for _, u := range r.Window.Procs {
		t.Logf("%s: %.2f cores, max RSS %s (while applying and scheduling: %s)", u.Name, r.Window.Cores(u), MiB(float64(u.MaxRSS)),
			MiB(maxRSS(r.ApplyWindow, u.Name)))
	}
	return r
}

// millionResync is the scheduler's SCHEDULER_RESYNC (its default) in this
// scenario; millionAddAt is when, into the window, a connector is added.
const (
	millionResync = 5 * time.Minute
	millionAddAt  = 90 * time.Second
)

// waitFullSync waits up to within for one of the scheduler's full syncs
// to end, and returns it.
func waitFullSync(t *testing.T, sch *service, within time.Duration) []fullSync {
	t.Helper()
	w := watchFullSyncs(sch)
	waitFor(t, within, "a full sync of the schedules", func() bool { return len(w.Ended()) > 0 })
	return w.Stop()
}

// fullSync is one of the scheduler's full syncs: when a sample saw it
// ended, and how long it took.
type fullSync struct {
	ended time.Time
	took  float64
}

// syncWatch samples the scheduler's full syncs
// (pollgrid_scheduler_full_sync_seconds) every second until Stop.
type syncWatch struct {
	mu    sync.Mutex
	ended []fullSync
	stop  chan struct{}
	done  chan struct{}
}

func watchFullSyncs(sch *service) *syncWatch {
	// A sample that fails counts nothing (it runs apart from the test).
	count := func() (uint64, float64) {
		resp, err := httpClient.Get(sch.HTTP + "/metrics")
		if err != nil {
			return 0, 0
		}
		defer resp.Body.Close()
		ms, err := ParseMetrics(resp.Body)
		if err != nil {
			return 0, 0
		}
		for _, m := range ms["pollgrid_scheduler_full_sync_seconds"].GetMetric() {
			if h := m.GetHistogram(); h != nil {
				return h.GetSampleCount(), h.GetSampleSum()
			}
		}
		return 0, 0
	}
	w := &syncWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		n, sum := count()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			if m, s := count(); m > n {
				if n > 0 { // else the first sample failed
					w.mu.Lock()
					w.ended = append(w.ended, fullSync{ended: time.Now(), took: (s - sum) / float64(m-n)})
					w.mu.Unlock()
				}
				n, sum = m, s
			}
		}
	}()
	return w
}

// Ended returns the full syncs that ended so far.
func (w *syncWatch) Ended() []fullSync {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.ended)
}

// Stop ends the sampling and returns the full syncs that ended.
func (w *syncWatch) Stop() []fullSync {
	close(w.stop)
	<-w.done
	return w.Ended()
}

// firstTicksCounter counts the first ticks the scheduler sends itself (a
// new connector's first poll; paced, so they may go on for up to an
// interval after an apply).
const firstTicksCounter = "pollgrid_first_ticks_total"

// firstTicksWaiting is how many new connectors still wait for theirs (a
// scheduler before it exported this only had the counter: a sync of a
// million connectors paused the first ticks long enough to look over).
const firstTicksWaiting = "pollgrid_first_ticks_waiting"

// waitSettled waits until no connector waits for its first tick
// (firstTicksWaiting), the scheduler has sent none for firstTicksQuiet
// (when it exports firstTicksCounter), and the workers' consumer on TICKS
// holds at most limit ticks not yet delivered or not yet acked, and
// returns how long that took; false when it did not within d.
func (st *stack) waitSettled(t *testing.T, sch *service, limit uint64, d time.Duration) (time.Duration, bool) {
	t.Helper()
	const firstTicksQuiet = 10 * time.Second
	began := time.Now()
	name := bus.Filter{}.ConsumerName()
	var backlog uint64
	first, counted := sch.metrics(t).Value(firstTicksCounter)
	firstMoved := time.Now()
	for deadline := began.Add(d); ; time.Sleep(time.Second) {
		m := sch.metrics(t)
		if v, ok := m.Value(firstTicksCounter); ok && v != first {
			first, firstMoved = v, time.Now()
		}
		if v, ok := m.Value(firstTicksWaiting); ok && v > 0 {
			firstMoved = time.Now()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := st.JS.Consumer(ctx, bus.TicksStream, name)
		if err == nil {
			var info *jetstream.ConsumerInfo
			info, err = c.Info(ctx)
			if err == nil {
				backlog = info.NumPending + uint64(info.NumAckPending)
			}
		}
		cancel()
		if err == nil && backlog <= limit && (!counted || time.Since(firstMoved) >= firstTicksQuiet) {
			return time.Since(began), true
		}
		if time.Now().After(deadline) {
			t.Logf("waited %s for the first ticks to end and the workers' backlog to fall to %d: %s = %.0f, last moved %s ago; "+
				"%d ticks (%v); going on", d, limit, firstTicksCounter, first, time.Since(firstMoved).Round(time.Second), backlog, err)
			return 0, false
		}
	}
}

// usedMemory is redis-server's used_memory (INFO memory).
func usedMemory(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "memory").Result()
	require.NoError(t, err)
	v, err := strconv.ParseInt(infoField(info, "used_memory"), 10, 64)
	require.NoError(t, err, "INFO memory used_memory")
	return v
}

// polledIn is the first connector with a request in [from, to); -1 when
// none.
func polledIn(times [][]int64, from, to time.Time) int {
	f, e := from.UnixMilli(), to.UnixMilli()
	for i, ts := range times {
		if slices.ContainsFunc(ts, func(at int64) bool { return at >= f && at < e }) {
			return i
		}
	}
	return -1
}

// historySuffixes are the key suffixes pkg/history keeps for a connector
// (history.go: "metrics", the head "history", a key a ring and "reports";
// "recent" and "rollup:*" in its first layout): everything else of the
// connector is the store's.
var historySuffixes = []string{"metrics", "history", "minutes", "quarters", "days", "reports", "recent", "rollup:"}

// connectorKeys sums MEMORY USAGE over connector name's keys.
func connectorKeys(t *testing.T, rdb *redis.Client, name string) keyBytes {
	t.Helper()
	ctx := context.Background()
	kb := keyBytes{Name: name}
	prefix := store.NewKeys("").Connector(name, "")
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		b, err := rdb.MemoryUsage(ctx, k, 0).Result()
		require.NoError(t, err, "MEMORY USAGE %s", k)
		suffix := strings.TrimPrefix(k, prefix)
		if slices.ContainsFunc(historySuffixes, func(h string) bool { return strings.HasPrefix(suffix, h) }) {
			kb.History += b
		} else {
			kb.Other += b
		}
		kb.Keys++
	}
	require.NoError(t, iter.Err())
	return kb
}

// writeHistory records, with pkg/history as the aggregator does, the
// reports of connector name polled every interval over the span ending
// now (each a success of one item fetched and published, in flushes of
// 500), and returns its keys' bytes.
func writeHistory(t *testing.T, rdb *redis.Client, name string, span, interval time.Duration) keyBytes {
	t.Helper()
	hs := history.New(rdb, store.NewKeys(""))
	now := time.Now().UTC()
	n := int(span / interval)
	reports := make([]*pollgridv1.PollReport, n)
	for i := range reports {
		reports[i] = &pollgridv1.PollReport{
			Connector: name, ConnectorType: "http-json", Worker: "worker-1",
			Outcome:   pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS,
			StartedAt: timestamppb.New(now.Add(-span + time.Duration(i)*interval)), Duration: durationpb.New(3 * time.Millisecond),
			ItemsFetched: 1, ItemsPublished: 1, FencingToken: uint64(i + 1),
		}
	}
	for chunk := range slices.Chunk(reports, 500) {
		require.NoError(t, hs.RecordReports(context.Background(), chunk), "record %s's history", name)
	}
	return connectorKeys(t, rdb, name)
}

func millionReport(n int, window time.Duration, runs []millionRun) string {
	var b strings.Builder
	var size float64
	if len(runs) > 0 {
		size = float64(runs[0].Bytes)
	}
	due := float64(n) / millionInterval.Seconds()
	fmt.Fprintf(&b, "%s `http-json` connectors at `interval: %s` (%s polls/s due) in one file (%s), applied with `pollctl apply -f` "+
		"to a system started without `CONNECTORS_FILE`: 1 scheduler, %d workers × `WORKER_CONCURRENCY=%d`, 1 aggregator, "+
		"nats-server, redis-server, against the local upstream (a small body whose version changes every 10 minutes). "+
		"First window: from the start of the apply until the scheduler reports every connector scheduled. Then the suite "+
		"waits until no new connector waits for its first tick (`%s` is 0; they are paced, for up to an interval) and none was sent for 10 s (`%s`), and the workers have worked them off "+
		"(their consumer on TICKS holds at most 2 s of due ticks), then until a minute before the scheduler's next periodic resync "+
		"(`SCHEDULER_RESYNC`, 5 minutes, after the last full sync ended, by `pollgrid_scheduler_full_sync_seconds`), so that the window holds one, "+
		"and measures a window of %s; %s into it (half a minute into the resync), it adds one connector with `pollctl apply -f` and "+
		"times its schedule's installation from the apply's start (read back from TICKS). A connector's fires are due at its phase (`scheduler.Phase`, the "+
		"cron schedule's second in its interval) plus whole intervals: a fire due in the window is polled when the upstream "+
		"saw a request of that connector starting at most %s before it and at most %s after the window's end; lateness is "+
		"that request's start minus the due time (the workers' `%s` histogram gives a bucket bound besides). Redis: "+
		"`used_memory` (`INFO memory`) after the window minus that of the empty server, ÷ connectors; extrapolated to %d days "+
		"by replacing one sample connector's history keys (`MEMORY USAGE … SAMPLES 0` of its `metrics` and `history`, or "+
		"`recent` and `rollup:*` in the layout before) with those of a connector whose %d days of reports, one every %s, the suite writes with `pkg/history` "+
		"as the aggregator does. %s; median (min–max).\n\n",
		Num(float64(n), 0), Dur(millionInterval), Num(due, 0), megabytes(size), catalogWorkers, e2eConcurrency, firstTicksWaiting, firstTicksCounter, Dur(window),
		Dur(min(millionAddAt, window/2)), Dur(millionEarly), Dur(millionGrace), latenessHistogram, historyDays, historyDays, Dur(millionInterval), Plural(len(runs), "run"))
	sec := func(v float64) string { return Num(v, 1) + " s" }
	sec3 := func(v float64) string { return Num(v, 3) + " s" }
	n0 := func(v float64) string { return Num(v, 0) }
	bytes := func(v float64) string { return Num(v, 0) + " B" }
	kib := func(v float64) string { return Num(v/1024, 1) + " KiB" }
	gib := func(v float64) string { return Num(v/(1<<30), 2) + " GiB" }

	apply := collect(runs, func(r millionRun) float64 { return r.Apply.Wall.Seconds() })
	dueN := collect(runs, func(r millionRun) float64 { return float64(r.Due.Due) })
	missed := collect(runs, func(r millionRun) float64 { return float64(r.Due.Missed()) })
	p50 := collect(runs, func(r millionRun) float64 { return Quantile(r.Due.Lateness, 0.5) })
	p99 := collect(runs, func(r millionRun) float64 { return Quantile(r.Due.Lateness, 0.99) })
	pmax := collect(runs, func(r millionRun) float64 { _, _, m := Quantiles(r.Due.Lateness); return m })
	rssSum := func(w Window) float64 {
		var sum float64
		for _, u := range w.Procs {
			if !u.Apart {
				sum += float64(u.MaxRSS)
			}
		}
		return sum
	}
	sumWindow := collect(runs, func(r millionRun) float64 { return rssSum(r.Window) })
	sumApply := collect(runs, func(r millionRun) float64 { return rssSum(r.ApplyWindow) + float64(r.Apply.MaxRSS) })
	perConn := collect(runs, func(r millionRun) float64 { return r.PerConnector(n) })
	per30 := collect(runs, func(r millionRun) float64 { return r.PerConnector30d(n) })

	tb := Table{Header: []string{"measure", "result", "goal", ""}}
	tb.Add(fmt.Sprintf("`pollctl apply` of %s new connectors", Num(float64(n), 0)), Range(apply, sec), "≤ 60 s", Verdict(apply.Median <= 60, apply.Median))
	tb.Add("… KV writes", Range(collect(runs, func(r millionRun) float64 { return float64(r.Apply.KVWrites) }), n0), "", "")
	tb.Add("… pollctl's CPU, max RSS", Range(collect(runs, func(r millionRun) float64 { return r.Apply.CPU.Seconds() }), sec)+", "+
		Range(collect(runs, func(r millionRun) float64 { return float64(r.Apply.MaxRSS) }), MiB), "", "")
	tb.Add("apply start → every connector scheduled", Range(collect(runs, func(r millionRun) float64 { return r.Installed }), sec), "", "")
	tb.Add("… then until the first ticks were over and worked off", Range(collect(runs, func(r millionRun) float64 { return r.Drained }), sec), "", "")
	tb.Add(fmt.Sprintf("fires due in the %s window (%s of the interval)", Dur(window), Num(window.Seconds()/millionInterval.Seconds()*100, 0)+" %"),
		Range(dueN, n0), "", "")
	tb.Add("… not polled (every connector polled once per interval)", Range(missed, n0), "0", Verdict(missed.Median == 0, missed.Median))
	tb.Add("lateness p50 (request start − due time)", Range(p50, sec3), "", "")
	addedAt := collect(runs, func(r millionRun) float64 { return r.AddedAt.Seconds() })
	tb.Add(fmt.Sprintf("a connector added %s into the window, during the resync: apply start → its schedule installed", Range(addedAt, sec)),
		Range(collect(runs, func(r millionRun) float64 { return r.AddedInEffect.Seconds() }), sec), "", "")
	tb.Add("lateness p99", Range(p99, sec3), "≤ 1 s", Verdict(p99.Median <= 1, p99.Median))
	tb.Add("lateness max", Range(pmax, sec3), "", "")
	tb.Add("workers' lateness histogram p50 / p99 (bucket bounds)",
		Range(collect(runs, func(r millionRun) float64 { return r.HistP50 }), func(v float64) string { return "≤ " + sec3(v) })+" / "+
			Range(collect(runs, func(r millionRun) float64 { return r.HistP99 }), func(v float64) string { return "≤ " + sec3(v) }), "", "")
	tb.Add("polls per second in the window (due "+Num(due, 0)+"/s); requests answering no due fire",
		Range(collect(runs, func(r millionRun) float64 { return float64(r.Due.Polls) / r.Window.Wall.Seconds() }), n0)+"; "+
			Range(collect(runs, func(r millionRun) float64 { return float64(r.Due.Extra) }), n0), "", "")
	tb.Add("sum of every process's max RSS in the window (upstream aside)", Range(sumWindow, gib), "≤ 12 GiB", Verdict(sumWindow.Median <= millionRSSGoal, sumWindow.Median))
	tb.Add("… while applying and scheduling, pollctl included", Range(sumApply, gib), "≤ 12 GiB", Verdict(sumApply.Median <= millionRSSGoal, sumApply.Median))
	tb.Add("nats-server RSS per connector scheduled ((all scheduled − before the apply) ÷ connectors: schedule, KV definition)",
		Range(collect(runs, func(r millionRun) float64 { return float64(r.NATSScheduled-r.NATSEmpty) / float64(n) }), bytes), "", "")
	tb.Add("Redis `used_memory` per connector after the window", Range(perConn, bytes), "", "")
	tb.Add("… one sample connector's keys: history / the rest",
		Range(collect(runs, func(r millionRun) float64 { return float64(r.Sample.History) }), bytes)+" / "+
			Range(collect(runs, func(r millionRun) float64 { return float64(r.Sample.Other) }), bytes), "", "")
	tb.Add(fmt.Sprintf("… a connector's history after %d days at %s (written with pkg/history)", historyDays, Dur(millionInterval)),
		Range(collect(runs, func(r millionRun) float64 { return float64(r.History30d.History) }), bytes), "", "")
	tb.Add(fmt.Sprintf("Redis per connector extrapolated to %d days", historyDays), Range(per30, kib), "≤ 16 KiB",
		Verdict(per30.Median <= millionRedisGoal, per30.Median))
	b.WriteString(tb.Markdown() + "\n")
	b.WriteString(procTable(runs, func(r millionRun) (Window, Window) { return r.ApplyWindow, r.Window },
		"applying and scheduling", "in the window"))
	return b.String()
}
