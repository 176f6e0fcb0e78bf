//go:build bench

package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/bus"
)

// Scenario 5: a worker SIGKILLed in the middle of polls, with the default
// AckWait and lease TTL: how long until the connectors it was polling are
// polled again, and whether anything was polled twice at once, signalled
// twice, or lost.

const (
	failoverConnectors = 200
	failoverInterval   = 5 * time.Second
	failoverDelay      = time.Second // the upstream's answer time
	failoverWorkers    = 3
	// recoveryDeadline is how long a cut connector may take to be polled
	// again before it counts as not recovered.
	recoveryDeadline = 2 * time.Minute
)

type killResult struct {
	Worker string
	// Cut is the polls the upstream saw cut by the kill.
	Cut int
	// Recovery is, per cut connector polled again, the seconds from the
	// kill to its next request.
	Recovery    []float64
	Unrecovered int
}

type failoverRun struct {
	Quiet     Quiet
	Kills     []killResult
	Upstream  UpstreamStats
	Signals   SignalCheck
	BadSignal int
	// Lost counts connectors whose newest answer (written whole by the
	// upstream) never reached SIGNALS.
	Lost int
}

func benchFailover(t *testing.T, s *suite) string {
	n := s.scaled(failoverConnectors)
	kills := pick(s, 5, 2)
	var run *failoverRun
	t.Run("run", func(t *testing.T) {
		r := runFailover(t, s, n, kills)
		run = &r
	})
	if run == nil {
		return ""
	}
	return failoverReport(n, *run)
}

func runFailover(t *testing.T, s *suite, n, kills int) failoverRun {
	q := s.waitQuiet(t, "failover")
	st := newStack(t, s)
	up := st.startUpstream("-connectors", strconv.Itoa(n), "-body-bytes", "0", "-delay", Dur(failoverDelay))
	// Default settings: no WORKER_ACK_WAIT, no lease_ttl; enough
	// concurrency that no poll waits for a slot.
	env := map[string]string{"CONNECTORS_FILE": connectorsFile(t, n, failoverInterval, up.URL, nil)}
	workerEnv := with(env, "WORKER_CONCURRENCY", strconv.Itoa(e2eConcurrency))
	st.startService("aggregator", "aggregator", env, true)
	sigs := st.recordSignals()
	workers := make([]*service, failoverWorkers)
	for i := range workers {
		workers[i] = st.startService(fmt.Sprintf("worker-%d", i+1), "worker", workerEnv, true)
	}
	sched := st.startService("scheduler", "scheduler", env, true)
	waitFor(t, 3*time.Minute, "every connector polled once", func() bool { return up.stats(t).Completed >= int64(n) })
	sleep(t, failoverInterval)

	run := failoverRun{Quiet: q}
	for k := range kills {
		i := k % len(workers)
		victim := workers[i]
		waitInFlight(t, victim)
		killAt := time.Now()
		victim.Kill()
		kr := killResult{Worker: victim.Name}
		var cuts []UpstreamCut
		for deadline := killAt.Add(recoveryDeadline); ; time.Sleep(250 * time.Millisecond) {
			cuts = cutsOfKill(up.cuts(t, killAt), killAt)
			settled := time.Since(killAt) > cutSettle
			if settled && allRecovered(cuts) || time.Now().After(deadline) {
				break
			}
		}
		kr.Cut = len(cuts)
		for _, c := range cuts {
			if c.NextNS == 0 {
				kr.Unrecovered++
				continue
			}
			kr.Recovery = append(kr.Recovery, time.Unix(0, c.NextNS).Sub(killAt).Seconds())
		}
		_, _, worst := Quantiles(kr.Recovery)
		t.Logf("kill %d: %s, %d polls cut, %d polled again (slowest after %.1fs), %d not within %s",
			k+1, victim.Name, kr.Cut, len(kr.Recovery), worst, kr.Unrecovered, recoveryDeadline)
		run.Kills = append(run.Kills, kr)
		workers[i] = st.startService(victim.Name, "worker", workerEnv, true)
		sleep(t, failoverInterval)
	}

	// Stop ticking (stop the scheduler, then delete the schedules it
	// installed, which NATS would otherwise go on firing), let the ticks
	// already queued be polled, then compare what the upstream answered
	// with what reached SIGNALS.
	sched.Terminate(30 * time.Second)
	ticks, err := st.JS.Stream(context.Background(), bus.TicksStream)
	require.NoError(t, err)
	require.NoError(t, ticks.Purge(context.Background(), jetstream.WithPurgeSubject(bus.SchedulePrefix+".>")))
	waitIdle(t, up)
	recs := sigs.waitCaughtUp(st)
	run.Signals = CheckSignals(recs)
	sigs.mu.Lock()
	run.BadSignal = sigs.bad
	sigs.mu.Unlock()
	for i, v := range up.versions(t).Last {
		if v == "" {
			continue
		}
		if last, ok := run.Signals.Last[bus.SignalSubject("http-json", "c"+strconv.Itoa(i))]; !ok || versionLess(last, v) {
			run.Lost++
		}
	}
	run.Upstream = up.stats(t)
	t.Logf("%d signals, %d duplicate ids, %d regressions, %d lost; upstream %+v",
		run.Signals.Signals, run.Signals.DuplicateIDs, run.Signals.Regressions, run.Lost, run.Upstream)
	return run
}

// cutSettle is how long after a kill the upstream may take to see the
// killed worker's connections close; a cut later than that is not the
// kill's (a surviving worker's timeout, say).
const cutSettle = 2 * time.Second

func cutsOfKill(cuts []UpstreamCut, killAt time.Time) []UpstreamCut {
	var out []UpstreamCut
	for _, c := range cuts {
		if c.AtNS <= killAt.Add(cutSettle).UnixNano() {
			out = append(out, c)
		}
	}
	return out
}

func allRecovered(cuts []UpstreamCut) bool {
	for _, c := range cuts {
		if c.NextNS == 0 {
			return false
		}
	}
	return true
}

// waitInFlight waits (up to 30 s) until the worker reports polls in flight,
// so that the kill cuts some; a worker without the gauge is killed at once.
func waitInFlight(t *testing.T, w *service) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		v, ok := w.metrics(t).Value("pollgrid_polls_in_flight")
		if !ok || v >= 1 {
			return
		}
	}
	t.Logf("%s had no poll in flight for 30 s: killing it anyway", w.Name)
}

// waitIdle waits until no request is in flight at the upstream and none
// began for 3 s.
func waitIdle(t *testing.T, up *upstream) {
	t.Helper()
	var last UpstreamStats
	stable := 0
	waitFor(t, 3*time.Minute, "the upstream to go idle", func() bool {
		st := up.stats(t)
		if st == last && st.Requests == st.Completed+st.Cuts {
			stable++
		} else {
			stable = 0
		}
		last = st
		return stable >= 30 // 3 s of 100 ms checks
	})
}

func failoverReport(n int, r failoverRun) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d `http-json` connectors at `interval: %s` whose upstream answer takes %s (a new version each time), "+
		"%d workers × `WORKER_CONCURRENCY=%d`, default AckWait and lease TTL. A worker is SIGKILLed while it has polls in "+
		"flight (its `pollgrid_polls_in_flight` ≥ 1); the upstream sees which requests were cut (the client went before "+
		"the answer) and when each cut connector's next request came. The killed worker is restarted between kills. "+
		"At the end the scheduler stops, its schedules are deleted, the queued ticks drain, and a consumer that read SIGNALS from its start checks the "+
		"signals. %s.\n\n", n, Dur(failoverInterval), Dur(failoverDelay), failoverWorkers, e2eConcurrency, Plural(len(r.Kills), "kill"))
	var all []float64
	cut, unrecovered := 0, 0
	for _, k := range r.Kills {
		all = append(all, k.Recovery...)
		cut += k.Cut
		unrecovered += k.Unrecovered
	}
	p50, p99, worst := Quantiles(all)
	sec := func(v float64) string { return Num(v, 1) + " s" }
	n0 := func(v int) string { return Num(float64(v), 0) }
	tb := Table{Header: []string{"measure", "result", "goal", ""}}
	tb.Add("polls cut by the kills", n0(cut), "", "")
	tb.Add("kill → cut connector's next request, p50", sec(p50), "", "")
	tb.Add("kill → cut connector's next request, p99", sec(p99), "≤ 3 s", Verdict(p99 <= 3, p99))
	tb.Add("kill → cut connector's next request, max", sec(worst), "", "")
	tb.Add("cut connectors not polled again within "+Dur(recoveryDeadline), n0(unrecovered), "0", Verdict(unrecovered == 0, 0))
	tb.Add("double polls (a request began while one of the same connector was in flight)", Num(float64(r.Upstream.Overlaps), 0), "0", Verdict(r.Upstream.Overlaps == 0, 0))
	tb.Add("signals with a ce-id seen before", n0(r.Signals.DuplicateIDs), "0", Verdict(r.Signals.DuplicateIDs == 0, 0))
	tb.Add("signals whose version is not above the connector's previous one", n0(r.Signals.Regressions), "0", Verdict(r.Signals.Regressions == 0, 0))
	tb.Add("connectors whose newest answered version never reached SIGNALS", n0(r.Lost), "0", Verdict(r.Lost == 0, 0))
	tb.Add("signals read / undecodable", n0(r.Signals.Signals)+" / "+n0(r.BadSignal), "", "")
	b.WriteString(tb.Markdown() + "\n")
	var kills []string
	for i, k := range r.Kills {
		after := Range(Summarize(k.Recovery), sec)
		if k.Unrecovered > 0 {
			after += fmt.Sprintf(", %d never", k.Unrecovered)
		}
		kills = append(kills, fmt.Sprintf("%d: %s, %d cut, next request after %s", i+1, k.Worker, k.Cut, after))
	}
	b.WriteString("Kills: " + strings.Join(kills, "; ") + ".\n")
	return b.String()
}
