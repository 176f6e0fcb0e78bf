package chaos

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// span is a time when polls may not happen (NATS or Redis away), for
// every connector or for some.
type span struct {
	from, to time.Time
	conns    map[string]bool // nil: every connector
}

func (sp span) covers(conn string, from, to time.Time) bool {
	return (sp.conns == nil || sp.conns[conn]) && from.Before(sp.to) && to.After(sp.from)
}

// window is one scenario's run and what it recorded beyond the checks.
type window struct {
	name       string
	start, end time.Time
	fromSeq    uint64
	excused    []span
	faultEnds  []time.Time // the moments each fault healed, for recovery
	notes      []string    // what the scenario measured, for the table
	failures   []string    // its own checks that failed
	dataLost   bool        // Redis lost its data: state restarts from empty
}

func (w *window) excuse(from, to time.Time, conns ...string) {
	sp := span{from: from, to: to}
	if len(conns) > 0 {
		sp.conns = map[string]bool{}
		for _, c := range conns {
			sp.conns[c] = true
		}
	}
	w.excused = append(w.excused, sp)
}

func (w *window) healed(at time.Time) { w.faultEnds = append(w.faultEnds, at) }

func (w *window) note(format string, args ...any) {
	w.notes = append(w.notes, fmt.Sprintf(format, args...))
}

func (w *window) fail(format string, args ...any) {
	w.failures = append(w.failures, fmt.Sprintf(format, args...))
}

// excusedFor is how much of [from, to) lies in an excused span for conn.
func (w *window) excusedFor(conn string, from, to time.Time) time.Duration {
	// Merge the spans that apply, clipped to [from, to).
	type iv struct{ a, b time.Time }
	var ivs []iv
	for _, sp := range w.excused {
		if sp.covers(conn, from, to) {
			a, b := maxTime(sp.from, from), minTime(sp.to, to)
			ivs = append(ivs, iv{a, b})
		}
	}
	sort.Slice(ivs, func(i, j int) bool { return ivs[i].a.Before(ivs[j].a) })
	var total time.Duration
	var cur *iv
	for i := range ivs {
		switch {
		case cur == nil:
			cur = &ivs[i]
		case !ivs[i].a.After(cur.b):
			cur.b = maxTime(cur.b, ivs[i].b)
		default:
			total += cur.b.Sub(cur.a)
			cur = &ivs[i]
		}
	}
	if cur != nil {
		total += cur.b.Sub(cur.a)
	}
	return total
}

// result is what one scenario measured and whether it held.
type result struct {
	name, fault string
	signals     int
	duplicates  int
	dupExamples []string
	versions    int // versions that had to be signalled
	skipped     int
	skipExample []string
	maxGap      time.Duration
	gapConn     string
	recovery    time.Duration
	cursorBack  int
	cursorReset int
	pollBack    int
	pollWorst   time.Duration
	notes       []string
	failures    []string
}

// need is how long a version must live outside faults to be sure of a
// poll: the longest wait between polls, plus a poll's own time.
const need = pollBound + time.Second

// check runs the checks of every scenario on the signals it recorded.
func (s *stack) check(w *window, sigs []signal, seen map[string]bool, sm *sampler) result {
	r := result{name: w.name, signals: len(sigs), notes: w.notes, failures: w.failures}
	benign := map[string]bool{}
	for _, n := range s.names {
		benign[n] = true
	}
	// No duplicate ce-id, in this scenario or against every earlier one.
	for _, sg := range sigs {
		if seen[sg.ceID] {
			r.duplicates++
			if len(r.dupExamples) < 3 {
				r.dupExamples = append(r.dupExamples, sg.ceID)
			}
		}
		seen[sg.ceID] = true
		seen[signalled(sg.conn, sg.item, sg.version)] = true
	}
	// No skipped version: every version that lived long enough outside the
	// faults was signalled.
	checkTo := w.end.Add(-time.Second)
	for _, n := range s.names {
		for j := range s.up.items {
			for v := s.up.version(n, j, w.start); v <= s.up.version(n, j, checkTo); v++ {
				from, to := s.up.lifetime(n, j, v)
				from, to = maxTime(from, w.start), minTime(to, checkTo)
				if !to.After(from) || to.Sub(from)-w.excusedFor(n, from, to) < need {
					continue
				}
				r.versions++
				id := n + ":i" + strconv.Itoa(j) + ":" + strconv.FormatInt(v, 10)
				if !seen[signalled(n, "i"+strconv.Itoa(j), strconv.FormatInt(v, 10))] {
					r.skipped++
					if len(r.skipExample) < 3 {
						r.skipExample = append(r.skipExample, id)
					}
				}
			}
		}
	}
	// Every due connector polled within the bound, outside the faults.
	for _, n := range s.names {
		reqs := s.up.requestsOf(n)
		prev := time.Time{}
		for _, at := range append(reqs, w.end) {
			if at.Before(w.start) {
				prev = at
				continue
			}
			if at.After(w.end) {
				break
			}
			if !prev.IsZero() {
				if gap := at.Sub(prev); gap > r.maxGap && w.excusedFor(n, prev, at) == 0 {
					r.maxGap, r.gapConn = gap, n
				}
			}
			prev = at
		}
		for _, healed := range w.faultEnds {
			for _, at := range reqs {
				if at.After(healed) {
					r.recovery = max(r.recovery, at.Sub(healed))
					break
				}
			}
		}
	}
	// Cursors and last polls only move forward.
	r.cursorBack, _, r.cursorReset, _ = sm.regressions(w.start, w.end, func(x stateSample) string { return x.cursor })
	var ex []string
	r.pollBack, r.pollWorst, _, ex = sm.regressions(w.start, w.end, func(x stateSample) string { return x.lastPoll })
	if r.pollBack > 0 {
		r.notes = append(r.notes, "last_poll went back: "+strings.Join(ex, ", "))
	}
	return r
}

// signalled is the key in check's seen set of a version of an item that
// SIGNALS holds, read from the signal's body: the ce-id's format is not the
// checks' business (it is unique per change, whatever it is made of).
func signalled(conn, item, version string) string {
	return "version\x00" + conn + "\x00" + item + "\x00" + version
}

// held says whether the scenario kept the guarantees; timing says whether
// the poll-gap bound is asserted too.
func (r result) held(timing bool) (bool, []string) {
	var why []string
	if r.duplicates > 0 {
		why = append(why, fmt.Sprintf("%d duplicate ce-id (%s)", r.duplicates, strings.Join(r.dupExamples, ", ")))
	}
	if r.skipped > 0 {
		why = append(why, fmt.Sprintf("%d of %d versions skipped (%s)", r.skipped, r.versions, strings.Join(r.skipExample, ", ")))
	}
	if r.cursorBack > 0 {
		why = append(why, fmt.Sprintf("a cursor went back %d times", r.cursorBack))
	}
	if r.pollBack > 0 {
		why = append(why, fmt.Sprintf("last_poll went back %d times (by up to %s)", r.pollBack, r.pollWorst.Round(time.Millisecond)))
	}
	if timing && r.maxGap > pollBound+500*time.Millisecond {
		why = append(why, fmt.Sprintf("%s waited %s between polls (bound %s)", r.gapConn, r.maxGap.Round(10*time.Millisecond), pollBound))
	}
	why = append(why, r.failures...)
	return len(why) == 0, why
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
