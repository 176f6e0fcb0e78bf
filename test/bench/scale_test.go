//go:build bench

package bench

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Scenario 4: 100,000 connectors at 60 s, the whole system on this box: was
// every connector polled every interval, how late, and how much memory.

const (
	scaleConnectors = 100_000
	scaleInterval   = 60 * time.Second
	scaleWorkers    = 2
	// The lateness histogram every worker exports.
	latenessHistogram = "pollgrid_tick_lateness_seconds"
)

type scaleRun struct {
	Quiet    Quiet
	Window   Window
	Coverage Coverage
	// HistP99 is the workers' lateness histogram's p99 bucket bound over
	// the window (NaN when the workers export no such histogram).
	HistP99 float64
}

func benchScale(t *testing.T, s *suite) string {
	n := s.scaled(scaleConnectors)
	window := pick(s, 5*scaleInterval, 2*scaleInterval)
	runs := repeat(t, s, func(t *testing.T) scaleRun { return runScale(t, s, n, window) })
	return scaleReport(n, window, runs)
}

func runScale(t *testing.T, s *suite, n int, window time.Duration) scaleRun {
	q := s.waitQuiet(t, "scale")
	st := newStack(t, s)
	// A small body that changes every 10 minutes.
	up := st.startUpstream("-connectors", strconv.Itoa(n), "-body-bytes", "0", "-version-period", "10m")
	env := map[string]string{"CONNECTORS_FILE": connectorsFile(t, n, scaleInterval, up.URL, nil)}
	st.startService("aggregator", "aggregator", env, true)
	var workers []*service
	for i := 1; i <= scaleWorkers; i++ {
		workers = append(workers, st.startService(fmt.Sprintf("worker-%d", i), "worker",
			with(env, "WORKER_CONCURRENCY", strconv.Itoa(e2eConcurrency)), true))
	}
	st.startService("scheduler", "scheduler", env, true)
	waitFor(t, 5*time.Minute, "the first poll", func() bool { return up.stats(t).Requests > 0 })
	// One interval: every connector is due once, so the window starts in
	// the steady state.
	sleep(t, scaleInterval)

	hist := func() []Bucket { return latenessBuckets(t, workers) }
	h0 := hist()
	from := time.Now()
	m, err := StartMeter(st.Procs)
	if err != nil {
		t.Fatal(err)
	}
	sleep(t, window)
	to := time.Now()
	w := m.Stop()
	s.noteWindow(t, "scale", w)
	h1 := hist()
	polls := up.polls(t, from.Add(-2*scaleInterval))
	r := scaleRun{Quiet: q, Window: w, Coverage: PollCoverage(polls.Times, from, to, scaleInterval), HistP99: math.NaN()}
	if h0 != nil && h1 != nil {
		r.HistP99 = BucketQuantile(SubBuckets(h1, h0), 0.99)
	}
	_, p99, _ := Quantiles(r.Coverage.Lateness)
	t.Logf("%d polls, %d of %d connectors short, max gap %s, lateness p99 %.2fs (histogram ≤ %gs)",
		r.Coverage.Polls, r.Coverage.Short, n, r.Coverage.MaxGap, p99, r.HistP99)
	return r
}

// latenessBuckets sums the workers' lateness histograms; nil when a worker
// exports none.
func latenessBuckets(t *testing.T, workers []*service) []Bucket {
	var sum []Bucket
	for _, w := range workers {
		h, ok := w.metrics(t).Histogram(latenessHistogram)
		if !ok {
			return nil
		}
		if sum == nil {
			sum = h
			continue
		}
		for i := range sum {
			if i < len(h) && h[i].UpperBound == sum[i].UpperBound {
				sum[i].Count += h[i].Count
			}
		}
	}
	return sum
}

func scaleReport(n int, window time.Duration, runs []scaleRun) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s `http-json` connectors at `interval: %s` against the local upstream (a small body whose version changes "+
		"every 10 minutes), the whole system: 1 scheduler, %d workers × `WORKER_CONCURRENCY=%d`, 1 aggregator, "+
		"nats-server, redis-server. Window of %s after one interval of warm-up. The upstream records when each connector "+
		"was polled: a connector falls short when it got fewer polls in the window than the window allows; lateness is "+
		"the gap between successive polls of a connector minus the interval; the workers' `%s` histogram gives a "+
		"bucket bound for comparison. %s; median (min–max).\n\n",
		Num(float64(n), 0), Dur(scaleInterval), scaleWorkers, e2eConcurrency, Dur(window), latenessHistogram, Plural(len(runs), "run"))
	n0 := func(v float64) string { return Num(v, 0) }
	sec := func(v float64) string { return Num(v, 2) + " s" }
	short := collect(runs, func(r scaleRun) float64 { return float64(r.Coverage.Short) })
	never := collect(runs, func(r scaleRun) float64 { return float64(r.Coverage.Never) })
	rate := collect(runs, func(r scaleRun) float64 { return float64(r.Coverage.Polls) / r.Window.Wall.Seconds() })
	p50 := collect(runs, func(r scaleRun) float64 { return Quantile(r.Coverage.Lateness, 0.5) })
	p99 := collect(runs, func(r scaleRun) float64 { return Quantile(r.Coverage.Lateness, 0.99) })
	maxGap := collect(runs, func(r scaleRun) float64 { return r.Coverage.MaxGap.Seconds() })
	histP99 := collect(runs, func(r scaleRun) float64 { return r.HistP99 })
	allowed := 0
	if len(runs) > 0 {
		allowed = runs[0].Coverage.Allowed
	}
	worstRSS := collect(runs, func(r scaleRun) float64 {
		var m float64
		for _, u := range r.Window.Procs {
			if !u.Apart {
				m = max(m, float64(u.MaxRSS))
			}
		}
		return m
	})

	tb := Table{Header: []string{"measure", "result", "goal", ""}}
	tb.Add(fmt.Sprintf("connectors polled fewer than %d times in the window (of %s)", allowed, Num(float64(n), 0)),
		Range(short, n0), "0 (every connector polled every interval)", Verdict(short.Median == 0, short.Median))
	tb.Add("connectors not polled at all in the window", Range(never, n0), "0", Verdict(never.Median == 0, never.Median))
	tb.Add("polls per second (offered "+Num(float64(n)/scaleInterval.Seconds(), 0)+"/s)", Range(rate, n0), "", "")
	tb.Add("lateness p50 (gap − interval)", Range(p50, sec), "", "")
	tb.Add("lateness p99 (gap − interval)", Range(p99, sec), "≤ 1 s", Verdict(p99.Median <= 1, p99.Median))
	tb.Add("longest gap between two polls of a connector", Range(maxGap, sec), "", "")
	tb.Add("workers' lateness histogram p99 (bucket bound)", Range(histP99, func(v float64) string { return "≤ " + sec(v) }), "", "")
	tb.Add("largest max RSS of any process (upstream aside)", Range(worstRSS, MiB), "≤ 256 MiB each", Verdict(worstRSS.Median <= 256<<20, worstRSS.Median))
	b.WriteString(tb.Markdown() + "\n")

	procs := Table{Header: []string{"process", "CPU", "max RSS"}}
	if len(runs) > 0 {
		for _, p := range runs[0].Window.Procs {
			name := p.Name
			cores := collect(runs, func(r scaleRun) float64 {
				if u, ok := r.Window.Get(name); ok && u.Err == nil {
					return r.Window.Cores(u)
				}
				return math.NaN()
			})
			rss := collect(runs, func(r scaleRun) float64 {
				if u, ok := r.Window.Get(name); ok {
					return float64(u.MaxRSS)
				}
				return math.NaN()
			})
			procs.Add(name, Range(cores, func(v float64) string { return Num(v, 2) + " core" }), Range(rss, MiB))
		}
	}
	b.WriteString(procs.Markdown())
	return b.String()
}
