package chaos

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pollgrid/pollgrid/pkg/admin"
)

// outageOf is an outage of d: the upstream answers status (with Retry-After
// when retryAfter is not "") while one of two items changes, then heals.
func outageOf(d time.Duration, status int, retryAfter string) func(*life, *lifeWindow, []lifeConnector) {
	return func(l *life, w *lifeWindow, conns []lifeConnector) {
		l.outage(w, conns[0], d, status, retryAfter)
	}
}

// outage lists two items and waits for a poll of them; makes the upstream
// answer status for d while the second item changes (a consumer must get
// that change once the upstream is back); heals it and checks that the
// connector is polled again when its back-off ends.
func (l *life) outage(w *lifeWindow, c lifeConnector, d time.Duration, status int, retryAfter string) (from, healed time.Time) {
	listed := time.Now()
	l.api.list(c.name, lifeItem{"i0", "v1"}, lifeItem{"i1", "v1"})
	if !waitFor(c.interval+30*time.Second, func() bool { return !l.api.firstOK(c.name, listed).IsZero() }) {
		w.fail("%s: its items were never polled", c.name)
		return
	}
	from = time.Now()
	l.api.fail(c.name, status, retryAfter)
	l.api.list(c.name, lifeItem{"i0", "v1"}, lifeItem{"i1", "v2"})
	time.Sleep(d) // the outage itself
	healed = time.Now()
	l.api.heal(c.name)
	wait, _ := strconv.Atoi(retryAfter)
	l.pollsAgain(w, c, from, healed, time.Duration(wait)*time.Second)
	return from, healed
}

// lifeState is a connector's state in Redis.
type lifeState struct {
	notBefore, lastSuccess time.Time
	failures               int
}

func (l *life) state(name string) lifeState {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	vals := l.rdb.HMGet(ctx, "pollgrid:{"+name+"}:state", "not_before", "last_success", "consecutive_failures").Val()
	ms := func(i int) time.Time {
		n, err := strconv.ParseInt(str(vals, i), 10, 64)
		if err != nil || n == 0 {
			return time.Time{}
		}
		return time.UnixMilli(n)
	}
	failures, _ := strconv.Atoi(str(vals, 2))
	return lifeState{notBefore: ms(0), lastSuccess: ms(1), failures: failures}
}

// justified is the longest back-off n consecutive failures of a connector
// polled every interval can set after the last of them: the wait doubles
// from the interval, up to 15 minutes (poll.Backoff; jitter only shortens
// it), or the upstream's Retry-After. A scenario waits for a connector to
// come back no longer than twice that.
func justified(interval time.Duration, n int, retryAfter time.Duration) time.Duration {
	d := interval
	for i := 1; i < n && d < 15*time.Minute; i++ {
		d *= 2
	}
	return max(min(d, max(interval, 15*time.Minute)), retryAfter)
}

// pollsAgain checks that a connector whose upstream failed from from to
// healed (asking to wait retryAfter, if not 0) is polled again no later
// than the back-off in force at healed plus its interval plus lifeSlack, and
// not before that back-off ended; that no failure was counted without a
// poll (a crash-loop verdict); and waits for the poll that came back to
// commit.
func (l *life) pollsAgain(w *lifeWindow, c lifeConnector, from, healed time.Time, retryAfter time.Duration) {
	failed, last := 0, time.Time{}
	for _, a := range l.api.answers(c.name) {
		if a.status != http.StatusOK && !a.at.Before(from) && a.at.Before(healed) {
			failed++
			last = a.at
		}
	}
	// A poll failing as the outage ended commits its failure a moment
	// later: read the back-off once the state counts every failed answer, or
	// once a success cleared them.
	var st lifeState
	waitFor(5*time.Second, func() bool {
		st = l.state(c.name)
		return st.failures >= failed || st.failures == 0
	})
	if st.failures > failed {
		w.fail("%s: %d consecutive failures recorded for %d failed polls: failures counted without a poll (a crash-loop verdict?)",
			c.name, st.failures, failed)
	}
	backoffEnd := maxTime(healed, st.notBefore)
	bound := backoffEnd.Add(c.interval + lifeSlack)
	// Wait for the poll until the bound, but not much longer than the
	// back-off its failed polls could set.
	most := last.Add(justified(c.interval, failed, retryAfter))
	giveUp := minTime(bound, maxTime(healed, last.Add(2*justified(c.interval, failed, retryAfter))).Add(c.interval+lifeSlack)).Add(10 * time.Second)
	waitFor(time.Until(giveUp), func() bool { return !l.api.firstOK(c.name, healed).IsZero() })
	polled := l.api.firstOK(c.name, healed)
	early := 0
	for _, a := range l.api.answers(c.name) {
		if !a.at.Before(healed) && a.at.Before(backoffEnd) {
			early++
		}
	}
	in := backoffEnd.Sub(healed)
	switch {
	case polled.IsZero():
		longer := ""
		if st.notBefore.After(most.Add(time.Second)) {
			longer = fmt.Sprintf(", longer than its failed polls can set: %s after the last one at most", most.Sub(last))
		}
		w.fail("%s: not polled again %.0f s after its outage ended (back-off in force: %.1f s after it%s; %d failed polls, consecutive_failures %d)",
			c.name, time.Since(healed).Seconds(), in.Seconds(), longer, failed, st.failures)
		w.recovered("%s: back-off %.1f s, never polled again", c.name, in.Seconds())
		return
	case polled.After(bound):
		w.fail("%s: polled again %.1f s after its back-off ended (its interval is %s; slack %s)",
			c.name, polled.Sub(backoffEnd).Seconds(), c.interval, lifeSlack)
	}
	if early > 0 {
		w.fail("%s: polled %d times before the back-off in force when its outage ended (%.1f s) was over", c.name, early, in.Seconds())
	}
	w.recovered("%s: back-off %.1f s, polled %.1f s after it", c.name, in.Seconds(), polled.Sub(backoffEnd).Seconds())
	w.note("%s: %d failed polls in %.0f s", c.name, failed, healed.Sub(from).Seconds())
	if !waitFor(c.interval+10*time.Second, func() bool { return l.state(c.name).failures == 0 }) {
		w.fail("%s: its poll after the outage did not commit a success (last error: %q)", c.name, truncate(l.lastError(c.name), 120))
	}
}

// retryAfterStorm: 429 with Retry-After: 5 for 20 s. Never polled before a
// Retry-After ended, polled again when the storm ends.
func retryAfterStorm(l *life, w *lifeWindow, conns []lifeConnector) {
	c := conns[0]
	const retryAfter = 5 * time.Second
	from, healed := l.outage(w, c, 20*time.Second, http.StatusTooManyRequests, "5")
	if from.IsZero() {
		return
	}
	asked, early, shortest := 0, 0, time.Duration(0)
	answers := l.api.answers(c.name)
	for _, a := range answers {
		if a.status == http.StatusTooManyRequests {
			asked++
		}
	}
	for i := 1; i < len(answers); i++ {
		prev := answers[i-1]
		if prev.status != http.StatusTooManyRequests {
			continue
		}
		// The worker reads Retry-After after the upstream recorded its
		// answer: the next request may come no earlier than 5 s after it.
		gap := answers[i].at.Sub(prev.at)
		if shortest == 0 || gap < shortest {
			shortest = gap
		}
		if gap < retryAfter {
			early++
		}
	}
	w.note("%d answers 429 in %.0f s; the shortest wait after one: %.1f s", asked, healed.Sub(from).Seconds(), shortest.Seconds())
	if early > 0 {
		w.fail("%s: polled %d times before the upstream's Retry-After: 5 ended (shortest wait %.1f s)", c.name, early, shortest.Seconds())
	}
}

// pauseResume pauses two connectors for 25 s, changes an item of each
// meanwhile, and resumes them: no poll while paused, polled at the first
// tick after resume, the change signalled once.
func pauseResume(l *life, w *lifeWindow, conns []lifeConnector) {
	ctx := context.Background()
	listed := time.Now()
	for _, c := range conns {
		l.api.list(c.name, lifeItem{"i0", "v1"})
	}
	for _, c := range conns {
		if !waitFor(c.interval+30*time.Second, func() bool { return !l.api.firstOK(c.name, listed).IsZero() }) {
			w.fail("%s: its items were never polled", c.name)
			return
		}
	}
	for _, c := range conns {
		if _, err := l.admin.Pause(ctx, c.name, "chaos"); err != nil {
			w.fail("pause %s: %v", c.name, err)
			return
		}
	}
	paused := time.Now()
	for _, c := range conns {
		l.api.list(c.name, lifeItem{"i0", "v2"})
		if st, err := l.admin.Status(ctx, c.name); err != nil || st.Health != admin.HealthPaused {
			w.fail("%s: status while paused: health %q, error %v", c.name, st.Health, err)
		}
	}
	time.Sleep(25 * time.Second) // the pause itself
	resumed := time.Now()
	for _, c := range conns {
		if _, err := l.admin.Resume(ctx, c.name); err != nil {
			w.fail("resume %s: %v", c.name, err)
			return
		}
	}
	for _, c := range conns {
		// A poll that began before the pause may still be fetching, for up
		// to its 900 ms timeout.
		if n := l.api.requestsSince(c.name, paused.Add(time.Second)) - l.api.requestsSince(c.name, resumed); n > 0 {
			w.fail("%s: polled %d times while paused", c.name, n)
		}
		bound := resumed.Add(c.interval + lifeSlack)
		waitFor(time.Until(bound.Add(10*time.Second)), func() bool { return !l.api.firstOK(c.name, resumed).IsZero() })
		polled := l.api.firstOK(c.name, resumed)
		switch {
		case polled.IsZero():
			w.fail("%s: not polled within %s of its resume", c.name, c.interval+lifeSlack+10*time.Second)
			w.recovered("%s: never polled after resume", c.name)
			continue
		case polled.After(bound):
			w.fail("%s: polled %.1f s after its resume (interval %s)", c.name, polled.Sub(resumed).Seconds(), c.interval)
		}
		w.recovered("%s: polled %.1f s after resume", c.name, polled.Sub(resumed).Seconds())
		l.pollEnded(w, c, polled)
	}
	w.note("paused %.0f s; no poll while paused", resumed.Sub(paused).Seconds())
}

// pollEnded waits for the poll that fetched at `at` to commit: a later
// request, or a success recorded since.
func (l *life) pollEnded(w *lifeWindow, c lifeConnector, at time.Time) {
	if !waitFor(c.interval+10*time.Second, func() bool {
		st := l.state(c.name)
		return l.api.requestsSince(c.name, at.Add(time.Millisecond)) > 0 || (st.failures == 0 && st.lastSuccess.After(at.Add(-500*time.Millisecond)))
	}) {
		w.fail("%s: the poll at %s never ended", c.name, at.Format("15:04:05.000"))
	}
}

// changeBack: an item at A, then B, then A again; each version polled once
// at least, all within the duplicate window. SIGNALS must hold three
// signals for it: A created, B updated, A updated.
func changeBack(l *life, w *lifeWindow, conns []lifeConnector) {
	c := conns[0]
	var first, last time.Time
	for _, v := range []string{"A", "B", "A"} {
		set := time.Now()
		l.api.list(c.name, lifeItem{"doc", v})
		if !waitFor(c.interval+30*time.Second, func() bool { return !l.api.firstOK(c.name, set).IsZero() }) {
			w.fail("%s: version %s was never polled", c.name, v)
			return
		}
		last = l.api.firstOK(c.name, set)
		if first.IsZero() {
			first = last
		}
	}
	l.pollEnded(w, c, last)
	span := last.Sub(first)
	w.note("the item went A → B → A in %.1f s (duplicate window %s)", span.Seconds(), lifeDuplicateWindow)
	if span >= lifeDuplicateWindow {
		w.fail("the item took %.1f s to go A → B → A, not within the %s duplicate window: the scenario proves nothing", span.Seconds(), lifeDuplicateWindow)
	}
}

// oddIDs lists 6 items whose ids and versions hold separators: each must be
// signalled once.
func oddIDs(l *life, w *lifeWindow, conns []lifeConnector) {
	c := conns[0]
	set := time.Now()
	l.api.list(c.name, lifeItem{"a", "b:c"}, lifeItem{"a:b", "c"}, lifeItem{"x\ny", "1"}, lifeItem{"x y", "1"},
		lifeItem{"x\ty", "1"}, lifeItem{"ünï/cødé", "1"})
	if !waitFor(c.interval+30*time.Second, func() bool { return !l.api.firstOK(c.name, set).IsZero() }) {
		w.fail("%s: its items were never polled", c.name)
		return
	}
	l.pollEnded(w, c, l.api.firstOK(c.name, set))
}

// bigSnapshot lists 50,000 items and waits for three polls of them: the
// first publishes 50,000 signals, the next two nothing, as their reports say.
func bigSnapshot(l *life, w *lifeWindow, conns []lifeConnector) {
	c := conns[0]
	items := make([]lifeItem, snapshotItems)
	for i := range items {
		items[i] = lifeItem{ID: fmt.Sprintf("s%05d", i), Version: "1"}
	}
	set := time.Now()
	l.api.list(c.name, items...)
	dupBefore := l.workerSum(`pollgrid_signals_duplicate_total{type="http-json"}`)
	// Three polls, reported: the aggregator keeps each poll's report.
	var polls []admin.Poll
	ok := waitFor(3*c.interval+90*time.Second, func() bool {
		st, err := l.admin.Status(context.Background(), c.name)
		if err != nil {
			return false
		}
		polls = polls[:0]
		for _, p := range st.Recent {
			if p.Outcome == "success" && p.ItemsFetched == snapshotItems && !p.StartedAt.Before(set.Add(-time.Second)) {
				polls = append(polls, p)
			}
		}
		return len(polls) >= 3
	})
	var published []string
	var took []string
	for _, p := range polls {
		published = append(published, strconv.FormatInt(p.ItemsPublished, 10))
		took = append(took, fmt.Sprintf("%.1f s", p.DurationSeconds))
	}
	dups := l.workerSum(`pollgrid_signals_duplicate_total{type="http-json"}`) - dupBefore
	w.note("its polls published %s (reports) in %s; pollgrid_signals_duplicate_total of the stack rose by %.0f meanwhile",
		strings.Join(published, ", "), strings.Join(took, ", "), dups)
	// Polling it on would only load the stack the other scenarios share.
	if _, err := l.admin.Pause(context.Background(), c.name, "chaos"); err != nil {
		w.fail("pause %s after its three polls: %v", c.name, err)
	}
	if !ok {
		w.fail("%s: %d of 3 polls of the %d items succeeded within %s (failures: %q)", c.name, len(polls), snapshotItems,
			3*c.interval+90*time.Second, truncate(l.lastError(c.name), 120))
		return
	}
	if polls[0].ItemsPublished != snapshotItems || polls[1].ItemsPublished != 0 || polls[2].ItemsPublished != 0 {
		w.fail("%s: its three polls published %s; want %d, 0, 0", c.name, strings.Join(published, ", "), snapshotItems)
	}
	peak := 0
	for _, sv := range l.running("worker") {
		_, p := sv.rssKB()
		peak = max(peak, p)
	}
	w.note("largest worker peak RSS %d MiB", peak>>10)
}
