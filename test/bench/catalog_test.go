//go:build bench

package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/catalog"
	"github.com/pollgrid/pollgrid/test/harness"
)

// Scenarios 6 and 7 (issue 16; scenario 7 is million_test.go): the control plane. Connectors are applied
// with `pollctl apply -f` to the catalog (NATS KV) of a running system (a
// scheduler and two workers started WITHOUT CONNECTORS_FILE), which the
// scheduler follows with a watch and the workers read a definition at a
// time: how long an apply takes, that applying the same file again writes
// nothing, how soon one changed connector's schedule is in effect, and
// what every process holds once all of them are polled.

const (
	catalogConnectors = 100_000
	catalogInterval   = 60 * time.Second
	catalogWorkers    = 2
	// catalogChanged is the interval one connector is changed to.
	catalogChanged = 30 * time.Second
	// The gauge of the connectors the scheduler has a schedule for.
	scheduledGauge = "pollgrid_scheduled_connectors"

	pollctlPkg = "github.com/pollgrid/pollgrid/services/pollctl"
)

// catalogExtra are the fields each bench connector has besides those
// connectorsFile writes, so that a definition is of ordinary size (issue
// 16: ~184 bytes).
var catalogExtra = map[string]any{"timeout": "10s", "enabled": true}

// applied is one `pollctl apply` run.
type applied struct {
	Wall time.Duration
	// Diff is what pollctl printed it wrote.
	Diff applyDiff
	// CPU (user + system) and MaxRSS of the pollctl process (getrusage).
	CPU    time.Duration
	MaxRSS int64
	// KVWrites is how far the catalog stream's last sequence moved.
	KVWrites uint64
}

// applyDiff is the difference pollctl printed; -1 for a count it did not
// print.
type applyDiff struct{ Created, Changed, Unchanged, Deleted int }

// Writes counts what the diff wrote; NaN when pollctl printed none of it.
func (d applyDiff) Writes() float64 {
	if d.Created < 0 && d.Changed < 0 && d.Deleted < 0 {
		return math.NaN()
	}
	return float64(max(0, d.Created) + max(0, d.Changed) + max(0, d.Deleted))
}

type catalogRun struct {
	Quiet Quiet
	// Bytes is the size of the file applied.
	Bytes        int64
	First, Again applied
	// Installed is from the start of the first apply until the scheduler
	// reported a schedule for every connector (NaN when it exports no
	// scheduledGauge).
	Installed float64
	// One: a file of the one changed connector; Whole: the whole file with
	// another connector changed. InEffect is from the start of the apply
	// until TICKS held the new schedule definition, AfterExit from
	// pollctl's exit.
	One, Whole                    applied
	OneInEffect, OneAfterExit     time.Duration
	WholeInEffect, WholeAfterExit time.Duration
	// ApplyWindow is the first apply (pollctl start to exit); Window the
	// steady state, every connector polled.
	ApplyWindow, Window Window
	Coverage            Coverage
}

func benchCatalog(t *testing.T, s *suite) string {
	n := s.scaled(catalogConnectors)
	window := pick(s, 2*catalogInterval, catalogInterval)
	harness.Build(t, pollctlPkg)
	runs := repeat(t, s, func(t *testing.T) catalogRun { return runCatalog(t, s, n, window) })
	if len(runs) == 0 {
		return "" // every run failed: keep the results written before
	}
	return catalogReport(n, window, runs)
}

// catalogSystem starts a fresh stack with the upstream serving n
// connectors, the scheduler and the workers, none of them given a
// connectors file: they serve the catalog only.
func catalogSystem(t *testing.T, s *suite, n int) (*stack, *upstream, *service) {
	st := newStack(t, s)
	up, sch, _ := st.catalogServices(n)
	return st, up, sch
}

// catalogServices starts, on the stack, the upstream serving n connectors,
// the scheduler and the workers.
func (st *stack) catalogServices(n int) (*upstream, *service, []*service) {
	up := st.startUpstream("-connectors", strconv.Itoa(n), "-body-bytes", "0", "-version-period", "10m")
	sch := st.startService("scheduler", "scheduler", nil, true)
	var workers []*service
	for i := 1; i <= catalogWorkers; i++ {
		workers = append(workers, st.startService(fmt.Sprintf("worker-%d", i), "worker",
			map[string]string{"WORKER_CONCURRENCY": strconv.Itoa(e2eConcurrency)}, true))
	}
	return up, sch, workers
}

func runCatalog(t *testing.T, s *suite, n int, window time.Duration) catalogRun {
	r := catalogRun{Quiet: s.waitQuiet(t, "catalog")}
	st, up, sch := catalogSystem(t, s, n)
	file, size := catalogFile(t, "all", 0, n, catalogInterval, up.URL, nil)
	r.Bytes = size

	// 1. Every connector new.
	m, err := StartMeter(st.Procs)
	require.NoError(t, err)
	// BENCH_PROFILE: where the first apply's time goes (the first seconds
	// of it: its length is not known before).
	profiled := func() {}
	if st.profile != "" {
		profiled = st.profileCPU("catalog-apply", 15*time.Second)
	}
	r.First = st.applyNew(t, file, n, size)
	r.ApplyWindow = m.Stop()
	profiled()
	r.Installed = st.installed(t, sch, n, r.First, 5*time.Minute)

	// 2. The same file again: nothing to write.
	r.Again = st.apply(t, file)
	t.Logf("the same apply again: %s, %+v, %d written to the KV stream", r.Again.Wall, r.Again.Diff, r.Again.KVWrites)

	// 3. One connector changed, in a file of its own, then another one in
	// the whole file.
	one, two := n/2, n/2+1
	changed := map[int]time.Duration{one: catalogChanged}
	oneFile, _ := catalogFile(t, "one", one, one+1, catalogInterval, up.URL, changed)
	r.One, r.OneInEffect, r.OneAfterExit = st.applyChange(t, oneFile, one)
	changed[two] = catalogChanged
	wholeFile, _ := catalogFile(t, "whole", 0, n, catalogInterval, up.URL, changed)
	r.Whole, r.WholeInEffect, r.WholeAfterExit = st.applyChange(t, wholeFile, two)

	// 4. Every connector polled: one interval from the first poll, then
	// the window.
	waitFor(t, 5*time.Minute, "the first poll", func() bool { return up.stats(t).Requests > 0 })
	sleep(t, catalogInterval)
	from := time.Now()
	m, err = StartMeter(st.Procs)
	require.NoError(t, err)
	sleep(t, window)
	to := time.Now()
	r.Window = m.Stop()
	s.noteWindow(t, "catalog", r.Window)
	r.Coverage = PollCoverage(up.polls(t, from.Add(-2*catalogInterval)).Times, from, to, catalogInterval)
	for _, u := range r.Window.Procs {
		t.Logf("%s: %.2f cores, max RSS %s", u.Name, r.Window.Cores(u), MiB(float64(u.MaxRSS)))
	}
	t.Logf("%.0f polls/s (due %.0f/s), %d of %d connectors short", float64(r.Coverage.Polls)/to.Sub(from).Seconds(),
		float64(n)/catalogInterval.Seconds(), r.Coverage.Short, n)
	return r
}

// catalogFile writes the connectors c<from>..c<to-1> as connectorsFile
// writes them (with catalogExtra), each at interval but those in changed,
// and returns its path and size.
func catalogFile(t *testing.T, name string, from, to int, interval time.Duration, upstreamURL string, changed map[int]time.Duration) (string, int64) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".json")
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	// Streamed: a million definitions need not be held twice.
	_, err = f.WriteString(`{"connectors":[`)
	require.NoError(t, err)
	for i := from; i < to; i++ {
		every := interval
		if d, ok := changed[i]; ok {
			every = d
		}
		e := map[string]any{
			"name": "c" + strconv.Itoa(i), "type": "http-json", "interval": Dur(every),
			"config": map[string]string{
				"url": upstreamURL + "/items/" + strconv.Itoa(i), "items": ".items", "id": ".id", "version": ".version",
			},
		}
		for k, v := range catalogExtra {
			e[k] = v
		}
		data, err := json.Marshal(e)
		require.NoError(t, err)
		if i > from {
			data = append([]byte{','}, data...)
		}
		_, err = f.Write(data)
		require.NoError(t, err)
	}
	_, err = f.WriteString("]}")
	require.NoError(t, err)
	info, err := f.Stat()
	require.NoError(t, err)
	return path, info.Size()
}

// apply runs `pollctl apply -f file` against the stack's NATS and waits for
// it to exit 0.
func (st *stack) apply(t *testing.T, file string) applied {
	t.Helper()
	return st.startApply(t, file).wait(t)
}

// running is a `pollctl apply` started.
type running struct {
	st    *stack
	file  string
	p     *harness.Process
	seq0  uint64
	began time.Time
	// exited is when the process ended, code its exit code; done closes then.
	exited time.Time
	code   int
	done   chan struct{}
}

// applyNew applies a file of n connectors none of which the catalog
// holds, and says how it went.
func (st *stack) applyNew(t *testing.T, file string, n int, size int64) applied {
	a := st.apply(t, file)
	t.Logf("apply of %d new connectors (%s): %s, %+v; pollctl %s CPU, %s", n, megabytes(float64(size)), a.Wall, a.Diff,
		a.CPU, MiB(float64(a.MaxRSS)))
	if a.KVWrites != uint64(n) {
		t.Logf("the apply moved %s by %d, not %d", catalogStream, a.KVWrites, n)
	}
	return a
}

// installed waits up to d for the scheduler to report n connectors
// scheduled after apply a, and returns the seconds from the apply's start
// (NaN when it did not within d).
func (st *stack) installed(t *testing.T, sch *service, n int, a applied, d time.Duration) float64 {
	waited, ok := st.waitScheduled(t, sch, n, d)
	if !ok {
		return math.NaN()
	}
	s := waited.Seconds() + a.Wall.Seconds()
	t.Logf("every connector scheduled %s after the apply began", time.Duration(s*float64(time.Second)))
	return s
}

func (st *stack) startApply(t *testing.T, file string) *running {
	t.Helper()
	bin := harness.Build(t, pollctlPkg)
	r := &running{st: st, file: file, seq0: st.lastSeq(catalogStream), done: make(chan struct{})}
	r.began = time.Now()
	r.p = harness.StartProcess(t, bin, map[string]string{"NATS_URL": st.NATS.URL}, "apply", "-f", file)
	// Its exit is noted as it happens: the caller may be busy meanwhile
	// (reading a schedule while the apply runs).
	go func() {
		defer close(r.done)
		r.code = r.p.Wait(15 * time.Minute)
		r.exited = time.Now()
	}()
	return r
}

// wait waits for the apply to exit 0 and returns what it did.
func (r *running) wait(t *testing.T) applied {
	t.Helper()
	<-r.done
	a := applied{Wall: r.exited.Sub(r.began)}
	require.Equal(t, 0, r.code, "pollctl apply -f %s:\n%s\n%s", r.file, tail(r.p.Stdout.String(), 2000), tail(r.p.Stderr.String(), 2000))
	ps := r.p.Cmd.ProcessState
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		a.MaxRSS = ru.Maxrss * 1024 // kB on Linux
	}
	a.CPU = ps.UserTime() + ps.SystemTime()
	a.Diff = parseApplyDiff(r.p.Stdout.String())
	a.KVWrites = r.st.lastSeq(catalogStream) - r.seq0
	if math.IsNaN(a.Diff.Writes()) {
		t.Logf("no difference found in pollctl's output:\n%s", tail(r.p.Stdout.String(), 2000))
	}
	return a
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// catalogStream is the stream behind the catalog's KV bucket.
const catalogStream = "KV_" + catalog.Bucket

// applySummaryRE is the last line pollctl apply prints: "FILE: 3 created,
// 1 changed, 0 deleted, 99996 unchanged".
var applySummaryRE = regexp.MustCompile(`(\d+) created, (\d+) changed, (\d+) deleted, (\d+) unchanged`)

// parseApplyDiff reads the counts of pollctl apply's summary line; -1 each
// when it printed none.
func parseApplyDiff(out string) applyDiff {
	d := applyDiff{Created: -1, Changed: -1, Unchanged: -1, Deleted: -1}
	all := applySummaryRE.FindAllStringSubmatch(out, -1)
	if len(all) == 0 {
		return d
	}
	m := all[len(all)-1]
	num := func(s string) int { v, _ := strconv.Atoi(s); return v }
	return applyDiff{Created: num(m[1]), Changed: num(m[2]), Deleted: num(m[3]), Unchanged: num(m[4])}
}

// lastSeq is the last sequence of a stream: a write moves it by one.
func (st *stack) lastSeq(name string) uint64 { return st.streamState(name).LastSeq }

// waitScheduled waits until the scheduler reports a schedule for n
// connectors and returns how long that took; false when it exports no
// such gauge, or it did not reach n within d.
func (st *stack) waitScheduled(t *testing.T, sch *service, n int, d time.Duration) (time.Duration, bool) {
	t.Helper()
	began := time.Now()
	if _, ok := sch.metrics(t).Value(scheduledGauge); !ok {
		t.Logf("the scheduler exports no %s: the time to schedule every connector is not measured", scheduledGauge)
		return 0, false
	}
	var have float64
	for deadline := time.Now().Add(d); ; time.Sleep(100 * time.Millisecond) {
		have, _ = sch.metrics(t).Value(scheduledGauge)
		if int(have) >= n {
			return time.Since(began), true
		}
		if time.Now().After(deadline) {
			t.Logf("waited %s for the scheduler to schedule %d connectors: %s = %.0f; going on without the figure", d, n, scheduledGauge, have)
			return 0, false
		}
	}
}

// applyChange applies file, which changes connector c<i> from
// catalogInterval to catalogChanged, and returns the apply and how long
// from its start, and from pollctl's exit, until TICKS held the
// connector's new schedule definition.
func (st *stack) applyChange(t *testing.T, file string, i int) (applied, time.Duration, time.Duration) {
	t.Helper()
	return st.applyUntilScheduled(t, file, i, catalogInterval, catalogChanged)
}

// applyUntilScheduled applies file, which sets connector c<i>'s interval
// from before (0: a new connector) to after, and returns the apply and how
// long from its start, and from pollctl's exit, until TICKS held the
// connector's schedule definition at after (read with a direct get on its
// schedule subject).
func (st *stack) applyUntilScheduled(t *testing.T, file string, i int, before, after time.Duration) (applied, time.Duration, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ticks, err := st.JS.Stream(ctx, bus.TicksStream)
	require.NoError(t, err)
	require.True(t, ticks.CachedInfo().Config.AllowDirect, "TICKS allows direct gets")
	name := "c" + strconv.Itoa(i)
	subject := bus.ScheduleSubject("http-json", name)
	interval := func() time.Duration {
		m, err := ticks.GetLastMsgForSubject(ctx, subject)
		if err != nil {
			return 0
		}
		tick, err := bus.DecodeTick(m.Data)
		if err != nil {
			return 0
		}
		return tick.GetInterval().AsDuration()
	}
	require.Equal(t, before, interval(), "the schedule of %s before the change", name)

	// The schedule is read while the apply runs.
	run := st.startApply(t, file)
	began := run.began
	var inEffect time.Time
	for deadline := began.Add(2 * time.Minute); inEffect.IsZero(); time.Sleep(2 * time.Millisecond) {
		if interval() == after {
			inEffect = time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("the schedule of %s was not set to %s 2 minutes after its apply began", name, Dur(after))
		}
	}
	a := run.wait(t)
	exited := began.Add(a.Wall)
	t.Logf("%s set to %s: in effect %s after its apply began, %s after pollctl exited; apply %s, %+v",
		name, Dur(after), inEffect.Sub(began), inEffect.Sub(exited), a.Wall, a.Diff)
	return a, inEffect.Sub(began), inEffect.Sub(exited)
}

func catalogReport(n int, window time.Duration, runs []catalogRun) string {
	var b strings.Builder
	var size float64
	if len(runs) > 0 {
		size = float64(runs[0].Bytes)
	}
	fmt.Fprintf(&b, "%s `http-json` connectors at `interval: %s` in one file (%s, %s bytes a connector), applied with "+
		"`pollctl apply -f` (the binary, timed from its start to its exit) to a running system that was started "+
		"without `CONNECTORS_FILE`: 1 scheduler (serving the catalog's admin verbs and following its bucket), %d workers × "+
		"`WORKER_CONCURRENCY=%d`, nats-server, redis-server, against the local upstream (a small body whose version "+
		"changes every 10 minutes). Writes: the count pollctl printed, and how far the last sequence of the stream "+
		"`%s` moved. A changed connector is in effect when a direct get of its schedule subject on TICKS returns the new "+
		"interval (read every 2 ms during the apply): once from a file holding only that connector, once from the whole "+
		"file with one more connector changed. Steady state: a window of %s after one interval from the first poll; "+
		"the upstream records every poll. %s; median (min–max).\n\n",
		Num(float64(n), 0), Dur(catalogInterval), megabytes(size), Num(size/float64(n), 0), catalogWorkers, e2eConcurrency,
		catalogStream, Dur(window), Plural(len(runs), "run"))
	sec := func(v float64) string { return Num(v, 2) + " s" }
	ms := func(v float64) string { return Num(v*1000, 0) + " ms" }
	n0 := func(v float64) string { return Num(v, 0) }
	wall := func(f func(catalogRun) applied) Summary {
		return collect(runs, func(r catalogRun) float64 { return f(r).Wall.Seconds() })
	}
	first, again := wall(func(r catalogRun) applied { return r.First }), wall(func(r catalogRun) applied { return r.Again })
	created := collect(runs, func(r catalogRun) float64 { return float64(r.First.Diff.Created) })
	installed := collect(runs, func(r catalogRun) float64 { return r.Installed })
	againDiff := collect(runs, func(r catalogRun) float64 { return r.Again.Diff.Writes() })
	againKV := collect(runs, func(r catalogRun) float64 { return float64(r.Again.KVWrites) })
	oneIn := collect(runs, func(r catalogRun) float64 { return r.OneInEffect.Seconds() })
	oneExit := collect(runs, func(r catalogRun) float64 { return r.OneAfterExit.Seconds() })
	oneWall := wall(func(r catalogRun) applied { return r.One })
	wholeIn := collect(runs, func(r catalogRun) float64 { return r.WholeInEffect.Seconds() })
	wholeExit := collect(runs, func(r catalogRun) float64 { return r.WholeAfterExit.Seconds() })
	wholeWrites := collect(runs, func(r catalogRun) float64 { return float64(r.Whole.KVWrites) })
	pollctlCPU := collect(runs, func(r catalogRun) float64 { return r.First.CPU.Seconds() })
	pollctlRSS := collect(runs, func(r catalogRun) float64 { return float64(r.First.MaxRSS) })
	rss := func(name string) Summary {
		return collect(runs, func(r catalogRun) float64 { return maxRSS(r.Window, name) })
	}
	workerRSS := collect(runs, func(r catalogRun) float64 {
		m := math.NaN()
		for i := 1; i <= catalogWorkers; i++ {
			if v := maxRSS(r.Window, fmt.Sprintf("worker-%d", i)); !(v <= m) {
				m = v
			}
		}
		return m
	})
	rate := collect(runs, func(r catalogRun) float64 { return float64(r.Coverage.Polls) / r.Window.Wall.Seconds() })
	short := collect(runs, func(r catalogRun) float64 { return float64(r.Coverage.Short) })
	never := collect(runs, func(r catalogRun) float64 { return float64(r.Coverage.Never) })
	due := float64(n) / catalogInterval.Seconds()

	tb := Table{Header: []string{"measure", "result", "goal", ""}}
	tb.Add(fmt.Sprintf("`pollctl apply` of %s new connectors (validate + write)", Num(float64(n), 0)), Range(first, sec), "≤ 5 s", Verdict(first.Median <= 5, first.Median))
	tb.Add("… connectors it printed as created", Range(created, n0), Num(float64(n), 0), Verdict(created.Median == float64(n), created.Median))
	tb.Add("… pollctl's CPU, max RSS", Range(pollctlCPU, sec)+", "+Range(pollctlRSS, MiB), "", "")
	tb.Add("apply start → every connector scheduled (`"+scheduledGauge+"`)", Range(installed, sec), "", "")
	tb.Add("the same apply again (nothing changed)", Range(again, sec), "≤ 3 s", Verdict(again.Median <= 3, again.Median))
	tb.Add("… writes: printed by pollctl / KV stream sequence moved", Range(againDiff, n0)+" / "+Range(againKV, n0), "0",
		Verdict(againDiff.Max == 0 && againKV.Max == 0, againKV.Median))
	tb.Add("one connector changed (a file of it alone): apply start → new schedule in TICKS", Range(oneIn, ms), "≤ 1 s", Verdict(oneIn.Median <= 1, oneIn.Median))
	tb.Add("… its apply (pollctl start → exit); pollctl exit → new schedule in TICKS", Range(oneWall, ms)+"; "+Range(oneExit, ms), "", "")
	tb.Add("one connector changed in the whole file: apply start → new schedule in TICKS", Range(wholeIn, sec), "", "")
	tb.Add("… pollctl exit → new schedule in TICKS; KV writes", Range(wholeExit, ms)+"; "+Range(wholeWrites, n0), "", "")
	tb.Add("scheduler max RSS, every connector polled", Range(rss("scheduler"), MiB), "≤ 128 MiB", Verdict(rss("scheduler").Median <= 128<<20, rss("scheduler").Median))
	tb.Add("worker max RSS (the larger of the two)", Range(workerRSS, MiB), "≤ 64 MiB each", Verdict(workerRSS.Median <= 64<<20, workerRSS.Median))
	natsRSS := rss("nats-server")
	tb.Add("nats-server max RSS, every connector polled (the catalog's bucket and a schedule each)", Range(natsRSS, MiB),
		"≤ 256 MiB at 100,000", Verdict(natsRSS.Median <= natsGoal, natsRSS.Median))
	tb.Add("polls per second (due "+Num(due, 0)+"/s)", Range(rate, n0), "", "")
	tb.Add(fmt.Sprintf("connectors polled fewer times than the window allows (of %s); not at all", Num(float64(n), 0)),
		Range(short, n0)+"; "+Range(never, n0), "0", Verdict(short.Median == 0, short.Median))
	b.WriteString(tb.Markdown() + "\n")
	b.WriteString(procTable(runs, func(r catalogRun) (Window, Window) { return r.ApplyWindow, r.Window },
		"during the first apply", "every connector polled"))
	return b.String()
}

// megabytes formats a file size as the issue gives it (18.4 MB).
func megabytes(bytes float64) string { return Num(bytes/1e6, 1) + " MB" }

func maxRSS(w Window, name string) float64 {
	if u, ok := w.Get(name); ok {
		return float64(u.MaxRSS)
	}
	return math.NaN()
}

func cores(w Window, name string) float64 {
	if u, ok := w.Get(name); ok && u.Err == nil {
		return w.Cores(u)
	}
	return math.NaN()
}

// procTable shows each process's CPU and max RSS over two windows of
// every run (medians over the runs).
func procTable[R any](runs []R, windows func(R) (Window, Window), first, second string) string {
	if len(runs) == 0 {
		return ""
	}
	tb := Table{Header: []string{"process", "CPU " + first, "max RSS " + first, "CPU " + second, "max RSS " + second}}
	c := func(v float64) string { return Num(v, 2) + " core" }
	w0, _ := windows(runs[0])
	for _, p := range w0.Procs {
		name := p.Name
		a := func(r R) Window { w, _ := windows(r); return w }
		z := func(r R) Window { _, w := windows(r); return w }
		tb.Add(name,
			Range(collect(runs, func(r R) float64 { return cores(a(r), name) }), c),
			Range(collect(runs, func(r R) float64 { return maxRSS(a(r), name) }), MiB),
			Range(collect(runs, func(r R) float64 { return cores(z(r), name) }), c),
			Range(collect(runs, func(r R) float64 { return maxRSS(z(r), name) }), MiB))
	}
	return tb.Markdown()
}
