//go:build bench

package bench

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/test/harness"
)

// Scenario 3: how long the scheduler takes to load 100,000 connectors
// (-check-config), and from its process start to the first tick.

func benchStartup(t *testing.T, s *suite) string {
	n := s.scaled(schedConnectors)
	file := connectorsFile(t, n, schedInterval, "http://127.0.0.1:9", nil)
	bin := harness.Build(t, "github.com/pollgrid/pollgrid/services/scheduler")

	var check, firstStored, firstReceived []float64
	for rep := 1; rep <= s.reps; rep++ {
		t.Run(fmt.Sprintf("check-config-%d", rep), func(t *testing.T) {
			s.waitQuiet(t, "startup")
			began := time.Now()
			p := harness.StartProcess(t, bin, map[string]string{"CONNECTORS_FILE": file}, "-check-config")
			code := p.Wait(5 * time.Minute)
			took := time.Since(began)
			require.Equal(t, 0, code, "scheduler -check-config: %s%s", p.Stdout, p.Stderr)
			t.Logf("-check-config took %s: %s", took, strings.TrimSpace(p.Stdout.String()))
			check = append(check, took.Seconds())
		})
	}
	for rep := 1; rep <= s.reps; rep++ {
		t.Run(fmt.Sprintf("first-tick-%d", rep), func(t *testing.T) {
			s.waitQuiet(t, "startup")
			st := newStack(t, s)
			rec := &tickRecorder{}
			began := time.Now()
			st.startService("scheduler", "scheduler", map[string]string{"CONNECTORS_FILE": file}, false)
			st.consumeTicks(rec)
			waitFor(t, 3*time.Minute, "the first tick", func() bool { return rec.count() > 0 })
			rec.mu.Lock()
			stored, received := rec.firstStored.Sub(began), rec.firstReceived.Sub(began)
			rec.mu.Unlock()
			t.Logf("first tick stored %s and received %s after the scheduler started", stored, received)
			firstStored = append(firstStored, stored.Seconds())
			firstReceived = append(firstReceived, received.Seconds())
		})
	}

	var b strings.Builder
	fmt.Fprintf(&b, "%s connectors at `interval: %s` in one file. Config load: wall time of `scheduler -check-config` "+
		"(process start to exit). First tick: fresh nats-server and redis-server, time from starting the scheduler process "+
		"to nats-server storing the first tick in TICKS (its stream timestamp), and to the test's consumer receiving it "+
		"(the consumer can only attach once the scheduler has created the stream). %s each; median (min–max).\n\n",
		Num(float64(n), 0), Dur(schedInterval), Plural(s.reps, "run"))
	sec := func(v float64) string { return Num(v, 2) + " s" }
	tb := Table{Header: []string{"measure", "result", "goal", ""}}
	cs, fs, fr := Summarize(check), Summarize(firstStored), Summarize(firstReceived)
	tb.Add("`scheduler -check-config`", Range(cs, sec), "≤ 1 s", Verdict(cs.Median <= 1, cs.Median))
	tb.Add("scheduler start → first tick stored", Range(fs, sec), "≤ 2 s", Verdict(fs.Median <= 2, fs.Median))
	tb.Add("scheduler start → first tick received", Range(fr, sec), "", "")
	b.WriteString(tb.Markdown())
	return b.String()
}
