//go:build bench

package bench

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clusterKeepUp is the share of the polls due that a run must serve for
// its figures to be read as cost rather than saturation.
const clusterKeepUp = 0.95

// signalsKept is how long SIGNALS keeps a signal: bus.StreamOptions'
// default, which the services keep.
const signalsKept = 72 * time.Hour

// perMinute is the polls per second of 1,000 connectors polled every minute.
const perMinute = 1000.0 / 60

func clusterReport(n int, warm, window time.Duration, single, cluster []clusterRun) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s `http-json` connectors at `interval: %s` (%s polls/s due), each polling its own URL of the local upstream "+
		"(a ~2 KB body whose item changes on every request, so every successful poll stores one signal), "+
		"a load meant to be one both systems keep up with, so that the figures are cost, not saturation. Both systems: 1 scheduler, %d workers × "+
		"`WORKER_CONCURRENCY=%d`, 1 aggregator, `LOG_LEVEL=warn`, no trace exporter, connectors from `CONNECTORS_FILE`, no downstream consumer. "+
		"**single**: one nats-server, one redis-server (as `e2e`). **cluster**: a %d-node JetStream cluster with `NATS_STREAM_REPLICAS=%d` "+
		"(TICKS, SIGNALS, REPORTS and the connectors' KV bucket R%d) and a Redis Cluster of %d masters without replicas "+
		"(`REDIS_URL=redis-cluster://...`); every server without persistence to disk besides JetStream's file store, as the suite runs them. "+
		"Each run: fresh servers, warm-up %s after the first signal, then a %s window; polls = how far SIGNALS' last sequence moved; "+
		"CPU from /proc/<pid>/stat of every process, RSS sampled every second; the upstream is not in the sums. "+
		"%s of each, interleaved (single first); median (min–max).\n\n",
		Num(float64(n), 0), Dur(clusterInterval), Num(float64(n)/clusterInterval.Seconds(), 0), clusterWorkers, clusterConcurrency,
		clusterNodes, clusterNodes, clusterNodes, clusterNodes, Dur(warm), Dur(window), Plural(max(len(single), len(cluster)), "run"))

	us := func(v float64) string { return Num(v, 0) + " µs" }
	rate := func(v float64) string { return Num(v, 0) + "/s" }
	cores := func(v float64) string { return Num(v, 2) + " cores" }
	x := func(v float64) string { return Num(v, 2) + "×" }
	n0 := func(v float64) string { return Num(v, 0) }
	mib := func(v float64) string { return MiB(v) }
	row := func(tb *Table, what string, f func(clusterRun) float64, format func(float64) string) {
		a, c := collect(single, f), collect(cluster, f)
		tb.Add(what, Range(a, format), Range(c, format), x(c.Median/a.Median))
	}

	due := float64(n) / clusterInterval.Seconds()
	served := func(r clusterRun) float64 { return r.Rate() / due }
	behind := 0
	for _, r := range append(slices.Clone(single), cluster...) {
		if served(r) < clusterKeepUp {
			behind++
		}
	}
	if behind > 0 {
		fmt.Fprintf(&b, "**%s served less than %.0f %% of the polls due: its figures include saturation, not only cost.**\n\n",
			Plural(behind, "run"), clusterKeepUp*100)
	} else {
		fmt.Fprintf(&b, "Every run served at least %.0f %% of the polls due.\n\n", clusterKeepUp*100)
	}

	tb := Table{Header: []string{"measure", "single", "cluster", "cluster ÷ single (medians)"}}
	row(&tb, "successful polls per second (signals stored)", clusterRun.Rate, rate)
	row(&tb, "polls served ÷ due", served, func(v float64) string { return Num(v*100, 0) + " %" })
	row(&tb, "upstream requests per second", func(r clusterRun) float64 { return float64(r.Requests) / r.Window.Wall.Seconds() }, rate)
	tb.Add("ticks fired and not yet acked at the window's end (at most one per connector: a fire replaces a pending tick)", Range(collect(single, func(r clusterRun) float64 { return float64(r.Pending) }), n0),
		Range(collect(cluster, func(r clusterRun) float64 { return float64(r.Pending) }), n0), "")
	for _, kind := range clusterKinds {
		row(&tb, "CPU per poll: "+kindLabel(kind), func(r clusterRun) float64 { cpu, _ := r.Kind(kind); return r.PerPoll(cpu) }, us)
	}
	row(&tb, "**CPU per poll, all of pollgrid**", func(r clusterRun) float64 { return r.PerPoll(r.Window.Sum()) }, us)
	row(&tb, "CPU, all of pollgrid", func(r clusterRun) float64 { return r.Window.Sum().Seconds() / r.Window.Wall.Seconds() }, cores)
	for _, kind := range clusterKinds {
		row(&tb, "max RSS: "+kindLabel(kind), func(r clusterRun) float64 { _, rss := r.Kind(kind); return float64(rss) }, mib)
	}
	row(&tb, "**max RSS, all of pollgrid** (each process's maximum, summed)", func(r clusterRun) float64 { return float64(r.RSS()) }, mib)
	row(&tb, "JetStream storage at the window's end (nodes summed)", func(r clusterRun) float64 { return float64(r.Stored) }, mib)
	row(&tb, "JetStream storage grown per signal over the window (nodes summed)", clusterRun.PerSignalStored,
		func(v float64) string { return Num(v, 0) + " bytes" })
	b.WriteString(tb.Markdown() + "\n")

	// The cost per connector, extrapolated linearly: CPU per poll times the
	// polls of 1,000 connectors at 60 s; RSS divided by the connectors.
	b.WriteString("Per 1,000 connectors polled every minute (16.7 polls/s), **extrapolated linearly** from this run: " +
		"CPU = CPU per poll × 16.7/s, which leaves out what a process spends while idle and what batching saves at a higher rate; " +
		"RSS = the summed max RSS ÷ " + Num(float64(n)/1000, 0) + ", which counts each process's fixed footprint as if it grew with the connectors, " +
		"so it overstates (scenario 4 holds 100,000 connectors at 60 s); disk = storage grown per signal × 16.7/s × 72 h, " +
		"SIGNALS' default max age, for connectors whose every poll finds a change, as here (a signal is published only on a change).\n\n")
	per := Table{Header: []string{"per 1,000 connectors at 60 s", "single", "cluster", "cluster ÷ single (medians)"}}
	for _, kind := range clusterKinds {
		row(&per, "CPU: "+kindLabel(kind), func(r clusterRun) float64 {
			cpu, _ := r.Kind(kind)
			return r.PerPoll(cpu) * perMinute / 1e6
		}, func(v float64) string { return Num(v, 4) + " cores" })
	}
	row(&per, "**CPU, all of pollgrid**", func(r clusterRun) float64 { return r.PerPoll(r.Window.Sum()) * perMinute / 1e6 },
		func(v float64) string { return Num(v, 4) + " cores" })
	row(&per, "RSS, all of pollgrid (upper bound)", func(r clusterRun) float64 { return float64(r.RSS()) / (float64(n) / 1000) }, mib)
	row(&per, "JetStream disk for SIGNALS' 72 h, every poll a signal (as here)", func(r clusterRun) float64 {
		return r.PerSignalStored() * perMinute * signalsKept.Seconds()
	}, func(v float64) string { return Num(v/(1<<30), 1) + " GiB" })
	b.WriteString(per.Markdown() + "\n")

	// Per process; the nodes of a kind ranked by CPU in each run, since the
	// leader of a stream is a different node from run to run.
	b.WriteString("Per process (nodes of a cluster ranked by CPU within each run, busiest first). " +
		"Polls/s at one core: the rate at which the process would keep one CPU busy, extrapolated linearly " +
		"(redis-server runs its commands on one thread, so for it one core is the ceiling).\n\n")
	pp := Table{Header: []string{"process", "single: CPU per poll", "single: cores", "single: max RSS", "single: polls/s at one core",
		"cluster: CPU per poll", "cluster: cores", "cluster: max RSS", "cluster: polls/s at one core"}}
	type slot struct {
		label string
		kind  string
		rank  int
	}
	var slots []slot
	for _, kind := range clusterKinds {
		count := 0
		for _, r := range append(slices.Clone(single), cluster...) {
			count = max(count, len(r.Ranked(kind)))
		}
		for i := range count {
			label := kind
			if count > 1 {
				label = fmt.Sprintf("%s, %s", kind, ordinal(i+1))
			}
			slots = append(slots, slot{label, kind, i})
		}
	}
	slots = append(slots, slot{"upstream (not in the sums)", "upstream", 0})
	for _, sl := range slots {
		cells := []string{sl.label}
		for _, runs := range [][]clusterRun{single, cluster} {
			get := func(f func(clusterRun, Usage) float64) Summary {
				return collect(runs, func(r clusterRun) float64 {
					if ranked := r.Ranked(sl.kind); sl.rank < len(ranked) {
						return f(r, ranked[sl.rank])
					}
					return math.NaN()
				})
			}
			cells = append(cells,
				Range(get(func(r clusterRun, u Usage) float64 { return r.PerPoll(u.CPU) }), us),
				Range(get(func(r clusterRun, u Usage) float64 { return r.Window.Cores(u) }), func(v float64) string { return Num(v, 2) }),
				Range(get(func(_ clusterRun, u Usage) float64 { return float64(u.MaxRSS) }), mib),
				Range(get(func(r clusterRun, u Usage) float64 {
					if c := r.Window.Cores(u); c > 0 {
						return r.Rate() / c
					}
					return math.NaN()
				}), n0))
		}
		pp.Add(cells...)
	}
	b.WriteString(pp.Markdown() + "\n")

	var order []string
	for i := range max(len(single), len(cluster)) {
		for _, runs := range [][]clusterRun{single, cluster} {
			if i >= len(runs) {
				continue
			}
			r := runs[i]
			line := fmt.Sprintf("%s %s/s at %s µs (%s)", r.System, Num(r.Rate(), 0), Num(r.PerPoll(r.Window.Sum()), 0), r.Quiet)
			if len(r.Leaders) > 0 {
				line += "; leaders: " + leaderLine(r)
			}
			order = append(order, line)
		}
	}
	b.WriteString("Runs in order: " + strings.Join(order, "; ") + ".\n")
	return b.String()
}

// leaderLine names, for each stream and consumer, the node leading it and
// that node's rank by CPU in the run ("TICKS nats-server-2 (busiest)").
func leaderLine(r clusterRun) string {
	rank := map[string]string{}
	for i, u := range r.Ranked("nats-server") {
		rank[u.Name] = ordinal(i + 1)
	}
	var keys []string
	for k := range r.Leaders {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s on %s (%s)", k, r.Leaders[k], rank[r.Leaders[k]]))
	}
	return strings.Join(parts, ", ")
}

func kindLabel(kind string) string {
	switch kind {
	case "nats-server", "redis-server":
		return kind + " (nodes summed)"
	case "worker":
		return "workers (summed)"
	}
	return kind
}

func ordinal(i int) string {
	switch i {
	case 1:
		return "busiest"
	case 2:
		return "2nd"
	case 3:
		return "3rd"
	}
	return strconv.Itoa(i) + "th"
}
