//go:build bench

package bench

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Scenario 2: the scheduler alone, 100,000 connectors at 10 s (10,000 ticks/s
// offered), with the test as the workers: a consumer that acks every tick
// at once.

const (
	schedConnectors = 100_000
	schedInterval   = 10 * time.Second
)

type schedRun struct {
	Quiet  Quiet
	Window Window
	Ticks  TickWindow
	Bad    int
	// NATSEmpty is nats-server's RSS before the scheduler started,
	// NATSInstalled once the scheduler reported every schedule installed
	// (0 when it exports no such gauge).
	NATSEmpty, NATSInstalled int64
}

// natsGoal is the RSS nats-server may hold at 100,000 connectors.
const natsGoal = 256 << 20

// PerSchedule is nats-server's RSS per installed schedule: (RSS once every
// schedule is installed − RSS before) ÷ n; NaN without the figure.
func (r schedRun) PerSchedule(n int) float64 {
	if r.NATSInstalled == 0 {
		return math.NaN()
	}
	return float64(r.NATSInstalled-r.NATSEmpty) / float64(n)
}

// PerScheduleWindow is the same with the largest RSS of the window, ticks
// flowing.
func (r schedRun) PerScheduleWindow(n int) float64 {
	return (r.rss("nats-server") - float64(r.NATSEmpty)) / float64(n)
}

func benchScheduler(t *testing.T, s *suite) string {
	n := s.scaled(schedConnectors)
	settle := pick(s, 2*schedInterval, schedInterval)
	window := pick(s, 6*schedInterval, 2*schedInterval)
	runs := repeat(t, s, func(t *testing.T) schedRun { return runScheduler(t, s, n, settle, window) })
	return schedReport(n, settle, window, runs)
}

func runScheduler(t *testing.T, s *suite, n int, settle, window time.Duration) schedRun {
	q := s.waitQuiet(t, "scheduler")
	st := newStack(t, s)
	natsEmpty, err := ProcRSS(st.NATS.Cmd.Process.Pid)
	require.NoError(t, err)
	// No worker runs: the URL is never called.
	file := connectorsFile(t, n, schedInterval, "http://127.0.0.1:9", nil)
	sch := st.startService("scheduler", "scheduler", map[string]string{"CONNECTORS_FILE": file}, true)
	rec := &tickRecorder{}
	st.consumeTicks(rec)
	waitFor(t, 3*time.Minute, "the first tick", func() bool { return rec.count() > 0 })
	var natsInstalled int64
	if _, ok := st.waitScheduled(t, sch, n, 3*time.Minute); ok {
		natsInstalled, err = ProcRSS(st.NATS.Cmd.Process.Pid)
		require.NoError(t, err)
	}
	sleep(t, settle)

	from := time.Now()
	rec.keepFrom(from)
	m, err := StartMeter(st.Procs)
	if err != nil {
		t.Fatal(err)
	}
	sleep(t, window)
	to := time.Now()
	w := m.Stop()
	s.noteWindow(t, "scheduler", w)
	// Ticks meant for the window may still come: give them one interval.
	grace := schedInterval
	sleep(t, grace)
	tw := AnalyseTicks(rec.records(), n, from, to, schedInterval, grace)
	r := schedRun{Quiet: q, Window: w, Ticks: tw, Bad: rec.bad, NATSEmpty: natsEmpty, NATSInstalled: natsInstalled}
	p50, p99, _ := Quantiles(tw.Lateness)
	schU, _ := w.Get("scheduler")
	natsU, _ := w.Get("nats-server")
	t.Logf("%.0f ticks/s, %d missed, lateness p50 %.3fs p99 %.3fs, scheduler %.2f cores %s; nats-server %.2f cores, RSS %s empty, "+
		"%s with every schedule installed (%.0f B a schedule), %s at most in the window (%.0f B a schedule)",
		float64(tw.Delivered)/w.Wall.Seconds(), tw.Missed, p50, p99, w.Cores(schU), MiB(float64(schU.MaxRSS)), w.Cores(natsU),
		MiB(float64(natsEmpty)), MiB(float64(natsInstalled)), r.PerSchedule(n), MiB(float64(natsU.MaxRSS)), r.PerScheduleWindow(n))
	return r
}

func (r schedRun) cores(name string) float64 {
	if u, ok := r.Window.Get(name); ok && u.Err == nil {
		return r.Window.Cores(u)
	}
	return math.NaN()
}

func (r schedRun) rss(name string) float64 {
	if u, ok := r.Window.Get(name); ok {
		return float64(u.MaxRSS)
	}
	return math.NaN()
}

func schedReport(n int, settle, window time.Duration, runs []schedRun) string {
	var b strings.Builder
	offered := float64(n) / schedInterval.Seconds()
	fmt.Fprintf(&b, "%s connectors at `interval: %s` (%s ticks/s offered): the scheduler process alone with nats-server and "+
		"redis-server, and in the test a consumer (durable `workers` on TICKS, filter `pollgrid.tick.>`) acking every tick at once. "+
		"Window of %s after the first tick plus %s; lateness = receive time − intended time (`Nats-Schedule-Next` − interval "+
		"for ticks fired by NATS, else the tick's `due_at`); a missed fire is a connector with fewer ticks intended in the "+
		"window (and received within one interval after it) than the window allows. nats-server's RSS per schedule: its RSS "+
		"once the scheduler reports every schedule installed (`%s`), and its largest in the window, minus its RSS before the "+
		"scheduler started, ÷ connectors; at 100,000: that RSS before plus 100,000 × the window's figure. %s; median (min–max).\n\n",
		Num(float64(n), 0), Dur(schedInterval), Num(offered, 0), Dur(window), Dur(settle), scheduledGauge, Plural(len(runs), "run"))

	perSec := func(v float64) string { return Num(v, 0) + "/s" }
	ms := func(v float64) string { return Num(v*1000, 0) + " ms" }
	cores := func(v float64) string { return Num(v, 2) + " core" }
	n0 := func(v float64) string { return Num(v, 0) }

	delivered := collect(runs, func(r schedRun) float64 { return float64(r.Ticks.Delivered) / r.Window.Wall.Seconds() })
	missed := collect(runs, func(r schedRun) float64 { return float64(r.Ticks.Missed) })
	q := func(f func([]float64) float64) Summary {
		return collect(runs, func(r schedRun) float64 { return f(r.Ticks.Lateness) })
	}
	p50 := q(func(x []float64) float64 { return Quantile(x, 0.5) })
	p99 := q(func(x []float64) float64 { return Quantile(x, 0.99) })
	pmax := q(func(x []float64) float64 { _, _, m := Quantiles(x); return m })
	schCores := collect(runs, func(r schedRun) float64 { return r.cores("scheduler") })
	schRSS := collect(runs, func(r schedRun) float64 { return r.rss("scheduler") })
	natsCores := collect(runs, func(r schedRun) float64 { return r.cores("nats-server") })
	natsRSS := collect(runs, func(r schedRun) float64 { return r.rss("nats-server") })
	redisCores := collect(runs, func(r schedRun) float64 { return r.cores("redis-server") })
	noIntended := collect(runs, func(r schedRun) float64 { return float64(r.Ticks.NoIntended + r.Bad) })

	goalTicks := 0.95 * offered
	tb := Table{Header: []string{"measure", "result", "goal", ""}}
	tb.Add("ticks delivered per second", Range(delivered, perSec), "≥ "+Num(goalTicks, 0)+"/s", Verdict(delivered.Median >= goalTicks, delivered.Median))
	tb.Add(fmt.Sprintf("connectors with a missed fire (of %s)", Num(float64(n), 0)), Range(missed, n0), "0", Verdict(missed.Median == 0, missed.Median))
	tb.Add("tick lateness p50", Range(p50, ms), "", "")
	tb.Add("tick lateness p99", Range(p99, ms), "≤ 250 ms", Verdict(p99.Median <= 0.250, p99.Median))
	tb.Add("tick lateness max", Range(pmax, ms), "", "")
	tb.Add("scheduler CPU", Range(schCores, cores), "≤ 0.3 core", Verdict(schCores.Median <= 0.3, schCores.Median))
	tb.Add("scheduler max RSS", Range(schRSS, MiB), "≤ 256 MiB", Verdict(schRSS.Median <= 256<<20, schRSS.Median))
	tb.Add("nats-server CPU", Range(natsCores, cores), "≤ 0.5 core", Verdict(natsCores.Median <= 0.5, natsCores.Median))
	tb.Add("nats-server max RSS", Range(natsRSS, MiB), "", "")
	bytes := func(v float64) string { return Num(v, 0) + " B" }
	perSched := collect(runs, func(r schedRun) float64 { return r.PerSchedule(n) })
	perSchedWindow := collect(runs, func(r schedRun) float64 { return r.PerScheduleWindow(n) })
	tb.Add("nats-server RSS per schedule: every schedule installed / largest in the window", Range(perSched, bytes)+" / "+Range(perSchedWindow, bytes), "", "")
	at100k := collect(runs, func(r schedRun) float64 { return float64(r.NATSEmpty) + 100_000*r.PerScheduleWindow(n) })
	tb.Add("nats-server RSS at 100,000 connectors (before + 100,000 × per schedule in the window)", Range(at100k, MiB), "≤ 256 MiB",
		Verdict(at100k.Median <= natsGoal, at100k.Median))
	tb.Add("redis-server CPU", Range(redisCores, cores), "", "")
	tb.Add("ticks without an intended time or undecodable", Range(noIntended, n0), "0", Verdict(noIntended.Median == 0, noIntended.Median))
	b.WriteString(tb.Markdown())
	return b.String()
}
