package chaos

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// workerSum adds up one series of every running worker's /metrics.
func (l *life) workerSum(series string) float64 {
	n := 0.0
	for _, sv := range l.running("worker") {
		v, _ := strconv.ParseFloat(sv.metric(series), 64)
		n += v
	}
	return n
}

// workerLog is what the workers' logs say about one connector.
type workerLog struct {
	polls      int // "poll done" lines
	published  int // their "published" counts, added up
	crashLoops int // lines about a crash loop
}

// workerLogs reads every worker's log (JSON lines), by connector.
func (l *life) workerLogs() map[string]*workerLog {
	out := map[string]*workerLog{}
	l.mu.Lock()
	services := append([]*svc(nil), l.services...)
	l.mu.Unlock()
	for _, sv := range services {
		if sv.kind != "worker" {
			continue
		}
		for _, line := range strings.Split(sv.p.Stderr.String()+"\n"+sv.p.Stdout.String(), "\n") {
			var rec struct {
				Msg       string `json:"msg"`
				Connector string `json:"connector"`
				Published *int   `json:"published"`
			}
			if json.Unmarshal([]byte(line), &rec) != nil || rec.Connector == "" {
				continue
			}
			wl := out[rec.Connector]
			if wl == nil {
				wl = &workerLog{}
				out[rec.Connector] = wl
			}
			switch {
			case strings.Contains(rec.Msg, "crash loop"):
				wl.crashLoops++
			case rec.Msg == "poll done" && rec.Published != nil:
				wl.polls++
				wl.published += *rec.Published
			}
		}
	}
	return out
}

// lifeResult is what one ordinary-life scenario measured.
type lifeResult struct {
	name, life string
	// changes the upstream showed; signals SIGNALS holds for them.
	changes, stored int
	// missing changes, and signals beyond each change once.
	missing, extra int
	examples       []string
	// republished counts publishes beyond the changes, by the workers'
	// "poll done" lines.
	republished int
	crashLoops  int
	recovery    []string
	notes       []string
	failures    []string
}

// check compares, for each of the scenario's connectors, what SIGNALS holds
// with the changes its upstream showed, and what the workers published.
func (l *life) check(sc lifeScenario, w *lifeWindow, sigs []signal, logs map[string]*workerLog) lifeResult {
	r := lifeResult{name: sc.name, life: sc.life, recovery: w.recovery, notes: w.notes, failures: w.failures}
	for _, c := range sc.conns {
		want := l.api.changes(c.name)
		var got []signal
		for _, sg := range sigs {
			if sg.conn == c.name {
				got = append(got, sg)
			}
		}
		r.changes += len(want)
		r.stored += len(got)
		key := func(item, version, kind string) string { return fmt.Sprintf("%s %q at %q", kind, item, version) }
		count := map[string]int{}
		for _, ch := range want {
			count[key(ch.item, ch.version, ch.kind)]++
		}
		for _, sg := range got {
			count[key(sg.item, sg.version, sg.change)]--
		}
		var missing, extra []string
		for k, n := range count {
			if n > 0 {
				r.missing += n
				missing = append(missing, k)
			} else if n < 0 {
				r.extra += -n
				extra = append(extra, fmt.Sprintf("%s ×%d", k, 1-n))
			}
		}
		slices.Sort(missing)
		slices.Sort(extra)
		for _, m := range missing[:min(2, len(missing))] {
			r.examples = append(r.examples, c.name+": missing "+m)
		}
		for _, e := range extra[:min(2, len(extra))] {
			r.examples = append(r.examples, c.name+": stored "+e)
		}
		// One item's changes in the order they happened, and numbered in
		// that order when the bodies carry a sequence.
		wantOrder, gotOrder := map[string][]string{}, map[string][]string{}
		for _, ch := range want {
			wantOrder[ch.item] = append(wantOrder[ch.item], ch.version)
		}
		lastSeq := map[string]uint64{}
		for _, sg := range got {
			gotOrder[sg.item] = append(gotOrder[sg.item], sg.version)
			n, err := strconv.ParseUint(sg.sequence, 10, 64)
			if err != nil {
				continue // no sequence, or not a number: nothing to order by
			}
			if prev, ok := lastSeq[sg.item]; ok && n <= prev {
				r.failures = append(r.failures, fmt.Sprintf("%s: item %q: sequence %d after %d", c.name, sg.item, n, prev))
			}
			lastSeq[sg.item] = n
		}
		if len(missing) == 0 && len(extra) == 0 {
			for item, vs := range wantOrder {
				if !slices.Equal(vs, gotOrder[item]) {
					r.failures = append(r.failures, fmt.Sprintf("%s: item %q: SIGNALS holds versions %q, the upstream showed %q", c.name, item, gotOrder[item], vs))
				}
			}
		}
		wl := logs[c.name]
		switch {
		case wl == nil || wl.polls == 0:
			r.notes = append(r.notes, c.name+": no worker logged a finished poll")
		case wl.published > len(want):
			r.republished += wl.published - len(want)
		}
		if wl != nil {
			r.crashLoops += wl.crashLoops
		}
	}
	return r
}

// held says whether the scenario kept its promises.
func (r lifeResult) held() (bool, []string) {
	var why []string
	if r.missing > 0 {
		why = append(why, fmt.Sprintf("%d of %d changes missing from SIGNALS", r.missing, r.changes))
	}
	if r.extra > 0 {
		why = append(why, fmt.Sprintf("%d signals beyond each change once", r.extra))
	}
	if len(r.examples) > 0 {
		why = append(why, "e.g. "+strings.Join(r.examples, ", "))
	}
	if r.republished > 0 {
		why = append(why, fmt.Sprintf("%d publishes beyond the %d changes (the workers' poll done lines)", r.republished, r.changes))
	}
	if r.crashLoops > 0 {
		why = append(why, fmt.Sprintf("%d worker log lines about a crash loop", r.crashLoops))
	}
	why = append(why, r.failures...)
	return len(why) == 0, why
}

func (r lifeResult) summary() []string {
	lines := []string{fmt.Sprintf("changes %d, stored %d (missing %d, extra %d), re-published %d, crash-loop lines %d",
		r.changes, r.stored, r.missing, r.extra, r.republished, r.crashLoops)}
	lines = append(lines, r.recovery...)
	return append(lines, r.notes...)
}
