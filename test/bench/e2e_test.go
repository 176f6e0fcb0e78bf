//go:build bench

package bench

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pollgrid/pollgrid/test/harness"
)

// Scenario 1: the same job done by pollgrid and by the raw loop, on the
// same kind of servers, counted the same way (signals stored in SIGNALS).

const (
	e2eConnectors  = 10_000
	e2eConcurrency = 32
	e2eWorkers     = 2
	e2eBodyBytes   = 2048
)

// e2eRun is one measured run of either system.
type e2eRun struct {
	System string // "raw" or "pollgrid"
	Quiet  Quiet
	Window Window
	// Signals stored in SIGNALS over the window: one per successful poll.
	Signals uint64
	// Requests the upstream received over the window.
	Requests int64
	// Conns is the TCP connections the upstream accepted over the window,
	// ConnsRun over the whole run.
	Conns, ConnsRun int64
	// DownAcked is the signals the downstream consumer acknowledged over
	// the window, DownBehind those stored and not yet acked at its end.
	DownAcked, DownBehind uint64
	// Redis is what redis-server ran over the window.
	Redis redisCalls
}

// Rate is successful polls (raw: cycles) per second.
func (r e2eRun) Rate() float64 { return float64(r.Signals) / r.Window.Wall.Seconds() }

// PerPoll is µs of CPU per successful poll.
func (r e2eRun) PerPoll(cpu time.Duration) float64 {
	if r.Signals == 0 {
		return math.NaN()
	}
	return float64(cpu.Microseconds()) / float64(r.Signals)
}

// PerSignal is µs of CPU per signal the downstream acknowledged.
func (r e2eRun) PerSignal(cpu time.Duration) float64 {
	if r.DownAcked == 0 {
		return math.NaN()
	}
	return float64(cpu.Microseconds()) / float64(r.DownAcked)
}

func benchE2E(t *testing.T, s *suite) string {
	n := s.scaled(e2eConnectors)
	// The warm-up is long enough for a saturated system to settle (the
	// first ticks, the schedules' first fires, nats-server's heap): the
	// window measures the state it settles in.
	warm := pick(s, 45*time.Second, 20*time.Second)
	window := pick(s, 20*time.Second, 10*time.Second)
	var raw, pg []e2eRun
	// Interleaved, so that a machine getting busier or quieter over the
	// session weighs on both alike.
	for rep := 1; rep <= s.reps; rep++ {
		t.Run(fmt.Sprintf("raw-%d", rep), func(t *testing.T) { raw = append(raw, runRawLoop(t, s, n, warm, window)) })
		t.Run(fmt.Sprintf("pollgrid-%d", rep), func(t *testing.T) { pg = append(pg, runPollgridE2E(t, s, n, warm, window)) })
	}
	return e2eReport(n, warm, window, raw, pg)
}

func runRawLoop(t *testing.T, s *suite, n int, warm, window time.Duration) e2eRun {
	q := s.waitQuiet(t, "e2e")
	st := newStack(t, s)
	up := st.startUpstream("-connectors", strconv.Itoa(n), "-body-bytes", strconv.Itoa(e2eBodyBytes))
	st.ensureStreams()
	st.startDownstream()
	bin := harness.Build(t, "github.com/pollgrid/pollgrid/test/bench/rawloop")
	var procs []*harness.Process
	for i := 1; i <= e2eWorkers; i++ {
		p := harness.StartProcess(t, bin, nil, "-role", "worker", "-nats", st.NATS.URL, "-redis", st.Redis.URL(),
			"-upstream", up.URL, "-connectors", strconv.Itoa(n), "-concurrency", strconv.Itoa(e2eConcurrency),
			"-id", fmt.Sprintf("raw-%d", i))
		waitFor(t, 30*time.Second, "raw worker ready", func() bool { return strings.Contains(p.Stdout.String(), "rawloop worker ready") })
		st.Procs = append(st.Procs, Proc{Name: fmt.Sprintf("worker-%d", i), PID: p.Cmd.Process.Pid})
		procs = append(procs, p)
	}
	// Every connector once a second, as interval: 1s asks of pollgrid.
	ticker := harness.StartProcess(t, bin, nil, "-role", "ticker", "-nats", st.NATS.URL,
		"-connectors", strconv.Itoa(n), "-rate", strconv.Itoa(n))
	st.Procs = append(st.Procs, Proc{Name: "ticker", PID: ticker.Cmd.Process.Pid})
	r := measureE2E(t, s, st, up, "raw", warm, window)
	r.System, r.Quiet = "raw", q
	for _, p := range append(procs, ticker) {
		t.Logf("%s", lastLine(p.Stdout.String()))
	}
	return r
}

func runPollgridE2E(t *testing.T, s *suite, n int, warm, window time.Duration) e2eRun {
	q := s.waitQuiet(t, "e2e")
	st := newStack(t, s)
	up := st.startUpstream("-connectors", strconv.Itoa(n), "-body-bytes", strconv.Itoa(e2eBodyBytes))
	env := map[string]string{"CONNECTORS_FILE": connectorsFile(t, n, time.Second, up.URL, nil)}
	st.startService("aggregator", "aggregator", env, true)
	for i := 1; i <= e2eWorkers; i++ {
		st.startService(fmt.Sprintf("worker-%d", i), "worker", with(env, "WORKER_CONCURRENCY", strconv.Itoa(e2eConcurrency)), true)
	}
	st.startService("scheduler", "scheduler", env, true)
	st.startDownstream()
	r := measureE2E(t, s, st, up, "pollgrid", warm, window)
	r.System, r.Quiet = "pollgrid", q
	return r
}

// measureE2E waits for the first signal, warms up, then measures one window.
func measureE2E(t *testing.T, s *suite, st *stack, up *upstream, system string, warm, window time.Duration) e2eRun {
	waitFor(t, 3*time.Minute, "the first signal", func() bool { return st.streamMsgs("SIGNALS") > 0 })
	sleep(t, warm)
	sig0, up0, redis0 := st.streamMsgs("SIGNALS"), up.stats(t), st.redisCalls(t)
	down0, _ := st.downstreamState()
	m, err := StartMeter(st.Procs)
	if err != nil {
		t.Fatal(err)
	}
	profiled := st.profileCPU("e2e-"+system, window)
	sleep(t, window)
	w := m.Stop()
	profiled()
	s.noteWindow(t, "e2e", w)
	sig1, up1, redis1 := st.streamMsgs("SIGNALS"), up.stats(t), st.redisCalls(t)
	down1, behind := st.downstreamState()
	r := e2eRun{Window: w, Signals: sig1 - sig0, Requests: up1.Requests - up0.Requests,
		Conns: up1.Connections - up0.Connections, ConnsRun: up1.Connections, DownAcked: down1 - down0, DownBehind: behind,
		Redis: redisCalls{Scripts: redis1.Scripts - redis0.Scripts, Commands: redis1.Commands - redis0.Commands}}
	d, _ := w.Get("downstream")
	t.Logf("%.0f polls/s, %.0f upstream requests/s, %.0f µs CPU per poll (summed), %d new connections to the upstream; "+
		"downstream acked %.0f signals/s at %.0f µs each, %d behind at the end",
		r.Rate(), float64(r.Requests)/w.Wall.Seconds(), r.PerPoll(w.Sum()), r.Conns,
		float64(r.DownAcked)/w.Wall.Seconds(), r.PerSignal(d.CPU), r.DownBehind)
	return r
}

func with(env map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range env {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func e2eReport(n int, warm, window time.Duration, raw, pg []e2eRun) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s `http-json` connectors at `interval: 1s`, each polling its own URL of the local upstream "+
		"(a ~2 KB body holding one item whose version changes on every request, so every successful poll stores one signal). "+
		"pollgrid: 1 scheduler, %d workers × `WORKER_CONCURRENCY=%d`, 1 aggregator, `LOG_LEVEL=warn`, no trace exporter. "+
		"Raw loop (`test/bench/rawloop`): a ticker offering %s ticks/s over core NATS, %d worker processes × %d goroutines; "+
		"per tick one Lua EVALSHA (lease + state), HTTP GET, JSON decode, one JetStream publish to SIGNALS awaiting its PubAck, "+
		"one Lua EVALSHA (save + release). Both systems have the user's side running: a downstream process (`test/bench/downstream`) "+
		"reading every signal through its own durable JetStream pull consumer on SIGNALS (filter `signals.>`), acking each; "+
		"its CPU is shown apart, like the upstream's, not in the sums (nats-server's work for it is). "+
		"Each run: fresh nats-server and redis-server, warm-up %s after the first signal, then a %s window; "+
		"polls = signals stored in SIGNALS over the window, CPU from /proc/<pid>/stat of every process, RSS sampled every second. "+
		"%s of each, interleaved (raw first); median (min–max).\n\n",
		Num(float64(n), 0), e2eWorkers, e2eConcurrency, Num(float64(n), 0), e2eWorkers, e2eConcurrency, Dur(warm), Dur(window), Plural(max(len(raw), len(pg)), "run"))

	rawRate, pgRate := collect(raw, e2eRun.Rate), collect(pg, e2eRun.Rate)
	perPollSum := func(r e2eRun) float64 { return r.PerPoll(r.Window.Sum()) }
	rawCPU, pgCPU := collect(raw, perPollSum), collect(pg, perPollSum)
	var pairs []float64
	for i := range min(len(raw), len(pg)) {
		pairs = append(pairs, pg[i].Rate()/raw[i].Rate())
	}
	ratio := pgRate.Median / rawRate.Median
	diff := pgCPU.Median - rawCPU.Median
	x := func(v float64) string { return Num(v, 2) + "×" }
	us := func(v float64) string { return Num(v, 0) + " µs" }

	head := Table{Header: []string{"headline", "result", "goal", ""}}
	head.Add("pollgrid polls/s ÷ raw-loop cycles/s (medians)", x(ratio)+" (run pairs: "+Range(Summarize(pairs), x)+")", "≥ 0.75", Verdict(ratio >= 0.75, ratio))
	head.Add("CPU per poll, all processes, pollgrid − raw loop (medians)", Signed(diff, 0)+" µs", "≤ +70 µs", Verdict(diff <= 70, diff))
	b.WriteString(head.Markdown() + "\n")

	rate := func(v float64) string { return Num(v, 0) + "/s" }
	tb := Table{Header: []string{"measure", "raw loop", "pollgrid"}}
	tb.Add("successful polls (raw: cycles) per second", Range(rawRate, rate), Range(pgRate, rate))
	reqRate := func(r e2eRun) float64 { return float64(r.Requests) / r.Window.Wall.Seconds() }
	tb.Add("upstream requests per second", Range(collect(raw, reqRate), rate), Range(collect(pg, reqRate), rate))
	tb.Add("CPU per poll, summed over every process but the upstream and the downstream", Range(rawCPU, us), Range(pgCPU, us))
	downRate := func(r e2eRun) float64 { return float64(r.DownAcked) / r.Window.Wall.Seconds() }
	tb.Add("downstream: signals acked per second", Range(collect(raw, downRate), rate), Range(collect(pg, downRate), rate))
	behind := func(r e2eRun) float64 { return float64(r.DownBehind) }
	tb.Add("downstream: signals stored and not yet acked at the window's end", Range(collect(raw, behind), func(v float64) string { return Num(v, 0) }),
		Range(collect(pg, behind), func(v float64) string { return Num(v, 0) }))
	downCPU := func(r e2eRun) float64 {
		if u, ok := r.Window.Get("downstream"); ok {
			return r.PerSignal(u.CPU)
		}
		return math.NaN()
	}
	tb.Add("downstream: CPU per signal acked (not in the sums)", Range(collect(raw, downCPU), us), Range(collect(pg, downCPU), us))
	conns := func(r e2eRun) float64 { return float64(r.Conns) }
	connsRun := func(r e2eRun) float64 { return float64(r.ConnsRun) }
	n0 := func(v float64) string { return Num(v, 0) }
	tb.Add("new TCP connections to the upstream in the window", Range(collect(raw, conns), n0), Range(collect(pg, conns), n0))
	tb.Add("TCP connections to the upstream over the whole run", Range(collect(raw, connsRun), n0), Range(collect(pg, connsRun), n0))
	perPoll := func(v func(e2eRun) uint64) func(e2eRun) float64 {
		return func(r e2eRun) float64 { return float64(v(r)) / float64(max(r.Signals, 1)) }
	}
	n1 := func(v float64) string { return Num(v, 1) }
	scripts := perPoll(func(r e2eRun) uint64 { return r.Redis.Scripts })
	commands := perPoll(func(r e2eRun) uint64 { return r.Redis.Commands })
	tb.Add("redis-server: scripts run per poll (`INFO commandstats`: EVALSHA, EVAL; the aggregator's included)",
		Range(collect(raw, scripts), n1), Range(collect(pg, scripts), n1))
	tb.Add("redis-server: commands per poll, inside scripts or not (the suite's own left out)",
		Range(collect(raw, commands), n1), Range(collect(pg, commands), n1))
	b.WriteString(tb.Markdown() + "\n")

	// Per process, in the order they matter to the comparison.
	names := []string{"nats-server", "redis-server", "ticker", "scheduler"}
	for i := 1; i <= e2eWorkers; i++ {
		names = append(names, fmt.Sprintf("worker-%d", i))
	}
	names = append(names, "aggregator", "upstream", "downstream")
	perProc := Table{Header: []string{"process", "raw: CPU per poll", "raw: max RSS", "pollgrid: CPU per poll", "pollgrid: max RSS"}}
	for _, name := range names {
		cells := []string{name}
		if name == "upstream" || name == "downstream" {
			cells[0] = name + " (not in the sums)"
		}
		for _, runs := range [][]e2eRun{raw, pg} {
			cpu := collect(runs, func(r e2eRun) float64 {
				if u, ok := r.Window.Get(name); ok {
					return r.PerPoll(u.CPU)
				}
				return math.NaN()
			})
			rss := collect(runs, func(r e2eRun) float64 {
				if u, ok := r.Window.Get(name); ok {
					return float64(u.MaxRSS)
				}
				return math.NaN()
			})
			cells = append(cells, Range(cpu, us), Range(rss, MiB))
		}
		perProc.Add(cells...)
	}
	b.WriteString(perProc.Markdown() + "\n")

	var order []string
	for i := range max(len(raw), len(pg)) {
		for _, runs := range [][]e2eRun{raw, pg} {
			if i < len(runs) {
				order = append(order, fmt.Sprintf("%s %s/s at %s µs (%s)", runs[i].System, Num(runs[i].Rate(), 0),
					Num(perPollSum(runs[i]), 0), runs[i].Quiet))
			}
		}
	}
	b.WriteString("Runs in order: " + strings.Join(order, "; ") + ".\n")
	return b.String()
}
