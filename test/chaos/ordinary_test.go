package chaos

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/admin"
)

// The ordinary-life part of the suite (issue 14): nothing crashes; an
// upstream is down for a while or asks us to wait, an operator pauses a
// connector, an item changes back, ids hold separators, a listing is big.
// Every scenario's connectors run side by side on one stack; afterwards each
// is checked as a user would see it:
//
//   - every change the upstream showed is in SIGNALS exactly once, in order
//     (counted by item and version from the bodies, whatever the ce-id is);
//   - nothing is re-published: the workers' "poll done" lines count as many
//     publishes as there were changes;
//   - no crash-loop verdict (no worker log line about one);
//   - after an outage, a successful poll no later than the back-off in force
//     when it ended (not_before in Redis) plus the interval plus lifeSlack.

const (
	// lifeDuplicateWindow is the stack's NATS_DUPLICATE_WINDOW: short, so
	// that a re-publish after it is stored and seen instead of dropped, and
	// long enough for an item to go A → B → A inside it at a 1s interval.
	lifeDuplicateWindow = 10 * time.Second
	// lifeSlack is how late a connector may be polled after its back-off
	// ends, beyond its interval (the phase of its next tick).
	lifeSlack = 2 * time.Second
	// snapshotItems is the big listing's size: five times the seen cap that
	// re-published most of it on every poll.
	snapshotItems = 50_000
)

// lifeConnector is one connector of an ordinary-life scenario, on
// /life/<name> of the life upstream.
type lifeConnector struct {
	name     string
	interval time.Duration
	timeout  time.Duration // 0: 900ms
	leaseTTL time.Duration // 0: the default, 2s
}

func (c lifeConnector) entry(url string) string {
	timeout := c.timeout
	if timeout == 0 {
		timeout = 900 * time.Millisecond
	}
	lease := ""
	if c.leaseTTL > 0 {
		lease = fmt.Sprintf(`, "lease_ttl": %q`, c.leaseTTL)
	}
	return fmt.Sprintf(`{"name": %q, "type": "http-json", "interval": %q, "timeout": %q, "retries": {"max": 0}%s,
		"config": {"url": "%s/life/%s", "items": ".items[]", "id": ".id", "version": ".version"}}`,
		c.name, c.interval, timeout, lease, url, c.name)
}

// lifeScenario is one ordinary day and the connectors it lives on.
type lifeScenario struct {
	name  string
	life  string // what happens, for the table
	short bool   // also in `make test`
	conns []lifeConnector
	run   func(l *life, w *lifeWindow, conns []lifeConnector)
}

// lifeWindow is one scenario's run: notes and failures, and how each
// connector came back from its outage.
type lifeWindow struct {
	*window
	mu       sync.Mutex
	recovery []string
}

func (w *lifeWindow) note(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.window.note(format, args...)
}

func (w *lifeWindow) fail(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.window.fail(format, args...)
}

func (w *lifeWindow) recovered(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.recovery = append(w.recovery, fmt.Sprintf(format, args...))
}

func lifeScenarios() []lifeScenario {
	return []lifeScenario{
		{name: "outage-20s-at-1s", life: "the upstream answers 500 for 20 s, then 200; an item changed meanwhile (interval 1s)", short: true,
			conns: []lifeConnector{{name: "outage-20s-1s", interval: time.Second}}, run: outageOf(20*time.Second, http.StatusInternalServerError, "")},
		{name: "outage-20s-at-10s", life: "the upstream answers 500 for 20 s, then 200; an item changed meanwhile (interval 10s)", short: true,
			conns: []lifeConnector{{name: "outage-20s-10s", interval: 10 * time.Second}}, run: outageOf(20*time.Second, http.StatusInternalServerError, "")},
		{name: "outage-2m-at-10s", life: "the upstream answers 500 for 2 min, then 200; an item changed meanwhile (interval 10s)", short: true,
			conns: []lifeConnector{{name: "outage-2m-10s", interval: 10 * time.Second}}, run: outageOf(2*time.Minute, http.StatusInternalServerError, "")},
		{name: "outage-2m-at-1s", life: "the upstream answers 500 for 2 min, then 200; an item changed meanwhile (interval 1s)", short: true,
			conns: []lifeConnector{{name: "outage-2m-1s", interval: time.Second}}, run: outageOf(2*time.Minute, http.StatusInternalServerError, "")},
		{name: "429-storm", life: "the upstream answers 429 with Retry-After: 5 for 20 s, then 200; an item changed meanwhile (interval 1s)", short: true,
			conns: []lifeConnector{{name: "storm-429", interval: time.Second}}, run: retryAfterStorm},
		{name: "pause-resume", life: "two connectors (interval 1s and 10s) paused for 25 s through the admin API, an item changed meanwhile, then resumed", short: true,
			conns: []lifeConnector{{name: "paused-1s", interval: time.Second}, {name: "paused-10s", interval: 10 * time.Second}}, run: pauseResume},
		{name: "change-back", life: "an item goes A → B → A within the duplicate window (interval 1s)", short: true,
			conns: []lifeConnector{{name: "change-back", interval: time.Second}}, run: changeBack},
		{name: "ids-with-separators", life: `6 items: "a" at version "b:c" beside "a:b" at "c", "x\ny" beside "x y", "x\ty", a non-ASCII id`, short: true,
			conns: []lifeConnector{{name: "odd-ids", interval: time.Second}}, run: oddIDs},
		{name: "big-snapshot", life: "a 50,000-item listing polled 3 times, 15 s apart (past the duplicate window), then paused", short: true,
			conns: []lifeConnector{{name: "snapshot", interval: 15 * time.Second, timeout: 12 * time.Second, leaseTTL: 10 * time.Second}}, run: bigSnapshot},
	}
}

// life is the ordinary-life stack: the suite's stack with every scenario's
// connectors, the life upstream, a Redis client and the admin API.
type life struct {
	*stack
	api   *lifeUpstream
	rdb   redis.UniversalClient
	admin *admin.Client
}

// lifeReport is what the ordinary-life part measured.
type lifeReport struct {
	results    []lifeResult
	connectors int
	// crashLoops and duplicates are the workers' counters at the end, over
	// every connector of the stack.
	crashLoops, duplicates float64
	took                   time.Duration
}

// ordinaryLife runs the selected ordinary-life scenarios side by side on
// one stack and returns what they measured.
func ordinaryLife(t *testing.T) lifeReport {
	var list []lifeScenario
	for _, sc := range lifeScenarios() {
		if selected(sc.name, sc.short) {
			list = append(list, sc)
		}
	}
	if len(list) == 0 {
		t.Skip("no ordinary-life scenario selected")
	}
	began := time.Now()
	api := newLifeUpstream(t)
	var entries []string
	var names []string
	for _, sc := range list {
		for _, c := range sc.conns {
			entries = append(entries, c.entry(api.URL))
			names = append(names, c.name)
		}
	}
	s := newStack(t, topology{entries: entries, env: map[string]string{
		"NATS_DUPLICATE_WINDOW": lifeDuplicateWindow.String(),
		"LOG_LEVEL":             "info", // the workers' "poll done" lines count publishes
	}})
	nc, err := nats.Connect(s.natsURL)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	l := &life{stack: s, api: api, rdb: s.redisClient(), admin: admin.NewClient(nc, 30*time.Second)}
	t.Cleanup(func() { _ = l.rdb.Close() })
	// A new connector's first tick comes at once.
	require.True(t, waitFor(60*time.Second, func() bool {
		for _, n := range names {
			if len(api.answers(n)) == 0 {
				return false
			}
		}
		return true
	}), "every connector is polled")
	t.Logf("ordinary life: %d connectors polled %.1f s after the start", len(names), time.Since(began).Seconds())

	windows := make([]*lifeWindow, len(list))
	var wg sync.WaitGroup
	for i, sc := range list {
		windows[i] = &lifeWindow{window: &window{name: sc.name, start: time.Now()}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc.run(l, windows[i], sc.conns)
			windows[i].end = time.Now()
			t.Logf("%s: done after %.0f s", sc.name, windows[i].end.Sub(windows[i].start).Seconds())
		}()
	}
	wg.Wait()

	sigs, err := s.readSignals(0)
	require.NoError(t, err, "reading SIGNALS")
	logs := l.workerLogs()
	rep := lifeReport{connectors: len(names)}
	for i, sc := range list {
		r := l.check(sc, windows[i], sigs, logs)
		ok, why := r.held()
		t.Logf("%s: %s\n  %s", sc.name, verdict(ok, why), strings.Join(r.summary(), "\n  "))
		rep.results = append(rep.results, r)
	}
	rep.crashLoops = l.workerSum(`pollgrid_crash_loops_total{type="http-json"}`)
	rep.duplicates = l.workerSum(`pollgrid_signals_duplicate_total{type="http-json"}`)
	rep.took = time.Since(began)
	t.Logf("ordinary life: %d signals in SIGNALS; the workers counted %.0f crash-loop verdicts and %.0f re-publishes JetStream dropped; %.0f s in all",
		len(sigs), rep.crashLoops, rep.duplicates, rep.took.Seconds())
	assert.Zero(t, rep.crashLoops, "pollgrid_crash_loops_total: no connector of this stack had a worker die while polling it")
	assert.Zero(t, rep.duplicates, "pollgrid_signals_duplicate_total: nothing of this stack was published twice")
	for _, r := range rep.results {
		ok, why := r.held()
		assert.True(t, ok, "%s: %s", r.name, strings.Join(why, "; "))
	}
	return rep
}
