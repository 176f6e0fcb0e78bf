package chaos

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	full   = flag.Bool("chaos.full", false, "run every scenario, the HA topology too, and assert the poll-gap bound (make chaos)")
	only   = flag.String("chaos.only", "", "run only the scenarios whose name contains this (development; no report is written)")
	report = flag.String("chaos.report", "", "write the guarantees and the measured table to this file (make chaos: docs/reliability.md)")
)

// load is what the suite runs: how many connectors, how often their items change.
type load struct {
	connectors, items int
	period            time.Duration // every item changes once per period
	baseline, tail    time.Duration // before the fault, and after it heals
}

func (l load) String() string {
	return fmt.Sprintf("%d http-json connectors polled every %s (timeout 900 ms, lease_ttl 2s, no retries), %d items each changing every %s, "+
		"upstream latency 50-250 ms; 2 schedulers, 3 workers (WORKER_CONCURRENCY 4, WORKER_ACK_WAIT 2s), 1 aggregator; %d CPU cores",
		l.connectors, interval, l.items, l.period, runtime.NumCPU())
}

// TestChaos runs the fault suite (faults) and its ordinary-life part
// (ordinary, ordinary_test.go), each on its own stack; `go test -run
// TestChaos/ordinary` runs one. The report is written when both ran.
func TestChaos(t *testing.T) {
	ld := load{connectors: 8, items: 4, period: 10 * time.Second, baseline: 2 * time.Second, tail: 6 * time.Second}
	if *full {
		ld = load{connectors: 12, items: 4, period: 8 * time.Second, baseline: 3 * time.Second, tail: 10 * time.Second}
	}
	var faults []result
	var life lifeReport
	ranFaults, ranLife := false, false
	t.Run("faults", func(t *testing.T) { faults = faultSuite(t, ld); ranFaults = true })
	t.Run("ordinary", func(t *testing.T) { life = ordinaryLife(t); ranLife = true })
	if *report != "" && *only == "" && ranFaults && ranLife {
		require.NoError(t, os.WriteFile(*report, []byte(reliabilityDoc(ld, faults, life)), 0o644))
		t.Logf("wrote %s", *report)
	}
}

// selected reports whether this run runs the scenario called name.
func selected(name string, short bool) bool {
	return (*full || short) && strings.Contains(name, *only)
}

// faultSuite runs the fault scenarios and returns what they measured.
func faultSuite(t *testing.T, ld load) []result {
	var results []result
	run := func(s *stack, list []scenario) {
		sm := s.startSampler()
		defer sm.close()
		// Warm up: every connector polled and its first versions signalled.
		require.True(t, waitFor(60*time.Second, func() bool {
			for _, n := range s.names {
				if len(s.up.requestsOf(n)) < 3 {
					return false
				}
			}
			return true
		}), "every connector is polled")
		seen := map[string]bool{}
		var read uint64
		sigs, err := s.readSignals(0)
		require.NoError(t, err)
		for _, sg := range sigs {
			seen[sg.ceID] = true
			seen[signalled(sg.conn, sg.item, sg.version)] = true
			read = sg.seq
		}
		for _, sc := range list {
			if !selected(sc.name, sc.short) {
				continue
			}
			w := &window{name: sc.name, start: time.Now(), fromSeq: read}
			time.Sleep(ld.baseline)
			sm.resetRSS()
			sc.run(t, s, w)
			time.Sleep(ld.tail)
			w.end = time.Now()
			time.Sleep(2 * time.Second) // the signals of polls still running at the end
			sigs, err := s.readSignals(read)
			if err != nil {
				w.fail("reading SIGNALS: %v", err)
			}
			if len(sigs) > 0 {
				read = sigs[len(sigs)-1].seq
			}
			r := s.check(w, sigs, seen, sm)
			r.fault = sc.fault
			if peak := sm.rss("worker"); peak > 0 {
				r.notes = append(r.notes, fmt.Sprintf("largest worker RSS %d MiB", peak>>10))
			}
			ok, why := r.held(*full)
			t.Logf("%s: %s\n  %s", sc.name, verdict(ok, why), strings.Join(r.summary(), "\n  "))
			results = append(results, r)
		}
	}

	someSelected := func(list []scenario) bool {
		return slices.ContainsFunc(list, func(sc scenario) bool { return selected(sc.name, sc.short) })
	}
	if someSelected(scenarios()) {
		run(newStack(t, topology{connectors: ld.connectors, items: ld.items, period: ld.period}), scenarios())
	}
	if *full && someSelected(haScenarios()) {
		run(newStack(t, topology{connectors: ld.connectors, items: ld.items, period: ld.period, natsCluster: true, sentinel: true}), haScenarios())
	}
	for _, r := range results {
		ok, why := r.held(*full)
		assert.True(t, ok, "%s: %s", r.name, strings.Join(why, "; "))
	}
	return results
}

func verdict(ok bool, why []string) string {
	if ok {
		return "held"
	}
	return "FAILED: " + strings.Join(why, "; ")
}

// summary is the scenario's measurements, one per line.
func (r result) summary() []string {
	lines := []string{
		fmt.Sprintf("signals %d, duplicates %d, versions due %d, skipped %d", r.signals, r.duplicates, r.versions, r.skipped),
		fmt.Sprintf("longest wait between polls outside faults %s (%s; bound %s), recovery after the fault %s",
			r.maxGap.Round(10*time.Millisecond), r.gapConn, pollBound, r.recovery.Round(10*time.Millisecond)),
		fmt.Sprintf("cursors back %d, last_poll back %d, state lost %d", r.cursorBack, r.pollBack, r.cursorReset),
	}
	return append(lines, r.notes...)
}
