package chaos

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// reliabilityDoc is docs/reliability.md: the guarantees, how each is
// enforced, the production settings they assume, and the table `make
// chaos` measured.
func reliabilityDoc(ld load, results []result, life lifeReport) string {
	var b strings.Builder
	commit, _ := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	b.WriteString(`# Reliability

What pollgrid guarantees when its parts fail, how each guarantee is enforced, the production
settings it assumes, and what the fault suite measured. This file is written by ` + "`make chaos`" + `
(test/chaos); edit the template in test/chaos/report_test.go, not the file.

## Guarantees and how they are enforced

| guarantee | enforced by |
|---|---|
| At most one worker polls a connector at a time | a Redis lease per connector with a fencing token; a commit with a token older than the connector's newest writes nothing (one Lua script) |
| A cursor moves only after the poll's signals are acknowledged, and only forward | the commit runs after every publish is acknowledged by JetStream; a failed or fenced poll commits nothing |
| A change is published once, a return to an earlier version included | seen versions and a per-item change sequence in Redis (` + "`seen_cap`" + ` items per connector, 100,000 by default); ` + "`Nats-Msg-Id`" + ` is a hash of the connector, item, version, change, sequence and generation, each part length-prefixed, so that a re-publish of one change inside the SIGNALS duplicate window is dropped by JetStream and no separator makes two changes one; the body's ` + "`sequence`" + ` orders one item's changes |
| A dead or frozen worker delays its connectors by seconds | ticks are redelivered after ` + "`WORKER_ACK_WAIT`" + ` and leases expire after ` + "`lease_ttl`" + ` (2 s each by default) |
| NATS and Redis outages are survived, not crashed on | NATS: reconnect for ever (also through rejected credentials); a connection that closes for good fails /healthz and stops the process. Redis: every call bounded by its context, nothing retried by the client (a script whose answer is lost may have run) |
| A service waiting for NATS or Redis is not restarted for it | its HTTP endpoints open before it connects: ` + "`/healthz`" + ` answers 200 from the first second, ` + "`/readyz`" + ` 503 with what it waits for (` + "`waiting for NATS at nats://...: ...`" + `, no password) |
| Redis losing its data or going back in time is noticed, and reported once | every 10 s each service steps a counter kept in Redis next to its epoch and compares the pair with the one NATS remembers (key-value bucket ` + "`pollgrid`" + `): another epoch is a data loss, a counter not above the remembered one a rollback (a snapshot restored, a lagging replica promoted); the service whose compare-and-set moves the record across the event reports it (` + "`pollgrid_redis_data_loss_total`" + `, ` + "`pollgrid_redis_rollback_total`" + `, an error log line saying what it means); a check that fails is logged (once per cause, with the fix) and counted (` + "`pollgrid_redis_epoch_check_errors_total`" + `) |
| An upstream's outage, rate limit or an operator's pause ends with a poll | a skipped tick (backing off, paused) is no attempt and no failure; a connector is polled at the first tick after its back-off (ours after failures, or the upstream's ` + "`Retry-After`" + `) or its resume (the ordinary-life table below) |
| Ticks keep firing without a scheduler | JetStream message schedules in the TICKS stream; schedulers only keep them in line with the config |
| A connector cannot be turned against the network it runs in | the outbound guard refuses loopback, link-local, private and unspecified addresses at dial time, redirects included, unless ` + "`UPSTREAM_ALLOW`" + ` or the connector's ` + "`config.allow_hosts`" + ` allows them; a redirect to another host drops the connector's headers |
| A config cannot take a service down | 16 MiB (` + "`CONFIG_MAX_BYTES`" + `) and 100 levels (` + "`CONFIG_MAX_DEPTH`" + `) checked before parsing, invalid UTF-8 rejected with its path; a rejected reload keeps the running config |

## Production settings they assume

- **JetStream**: a 3-node cluster with ` + "`NATS_STREAM_REPLICAS=3`" + ` (TICKS with every schedule, SIGNALS and REPORTS survive a node);
  file storage. nats-server syncs to disk every 2 minutes by default (` + "`sync_interval`" + `): a killed process loses
  nothing (the OS has the writes), a lost machine may lose the last interval on that node, which R3 covers. Set
  ` + "`sync_interval: always`" + ` only if you run R1 and cannot lose a machine's last writes.
- **Redis**: AOF on (` + "`appendonly yes`" + `, ` + "`appendfsync everysec`" + `): a killed server keeps all but the last second of
  leases, fencing counters, cursors and seen versions. Replicas with Sentinel (` + "`REDIS_URL=redis-sentinel://...`" + `) or a Cluster
  (` + "`redis-cluster://...`" + `) fail over in seconds; replication is asynchronous, so a failover, like a restart without AOF,
  may lose recent writes: the fencing across data loss (issue 9, item 1) is what keeps that safe, and the services report
  such a loss or rollback ([operate](operate.md#redis-lost-its-data-or-went-back-in-time)).
- **The SIGNALS duplicate window** (` + "`NATS_DUPLICATE_WINDOW`" + `, 10 minutes): a re-publish after a crash, or after Redis lost the
  seen versions, is dropped only inside it; set it to the longest outage you intend to absorb.
- ` + "`WORKER_ACK_WAIT`" + ` and ` + "`lease_ttl`" + ` (2 s): the failover bound. Raise both together if your network or Redis can stall longer.

## The fault suite

`)
	fmt.Fprintf(&b, "Measured by `make chaos` on %s (commit %s). Load: %s.\n\n", time.Now().UTC().Format("2006-01-02"), strings.TrimSpace(string(commit)), ld)
	b.WriteString("Every scenario runs real nats-server and redis-server processes and the services as OS processes. After each, the\n" +
		"recorder checks the SIGNALS stream and the state in Redis: no duplicate `ce-id` (in the scenario or any earlier), no\n" +
		"skipped version (every version that existed at least " + need.String() + " outside the fault was signalled), every connector\n" +
		"polled within its interval plus the failover bound (" + pollBound.String() + ") outside the fault, cursors and `last_poll` only\n" +
		"moving forward. `make test` runs the scenarios marked short, asserting all but the timing.\n\n")
	b.WriteString("| scenario | fault | signals / duplicates | versions due / skipped | longest wait between polls (bound " + pollBound.String() + ") | recovery | cursors / last_poll back | result | measured |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		ok, why := r.held(true)
		res := "held"
		if !ok {
			res = "**failed**: " + strings.Join(why, "; ")
		}
		recovery := "—"
		if r.recovery > 0 {
			recovery = r.recovery.Round(100 * time.Millisecond).String()
		}
		notes := strings.Join(r.notes, "; ")
		if r.cursorReset > 0 {
			notes += fmt.Sprintf("; %d state samples found a connector's state gone (Redis lost its data)", r.cursorReset)
		}
		fmt.Fprintf(&b, "| %s | %s | %d / %d | %d / %d | %s | %s | %d / %d | %s | %s |\n",
			r.name, r.fault, r.signals, r.duplicates, r.versions, r.skipped, r.maxGap.Round(10*time.Millisecond), recovery,
			r.cursorBack, r.pollBack, res, strings.ReplaceAll(notes, "|", "\\|"))
	}
	b.WriteString(`
The two worker-dies scenarios stop a worker at an exact point of a poll: a worker built with ` + "`-tags failpoints`" + `
(pkg/failpoint) and started with ` + "`POLLGRID_FAILPOINT=after-publish`" + ` or ` + "`after-commit`" + ` kills itself with SIGKILL the
first time one of its polls has published signals and not yet committed its cursor, or has committed and not yet acked
its tick. Binaries built without the tag (every release, ` + "`make build`" + `, the images) contain no such hook. The
worker-kill scenario kills a worker whose polls are in flight at whatever point they have reached.
`)
	writeLife(&b, life)
	return b.String()
}

// writeLife is the ordinary-life part of the report.
func writeLife(b *strings.Builder, life lifeReport) {
	fmt.Fprintf(b, `
## Ordinary life

Nothing crashes: an upstream is down for a while or asks to wait, an operator pauses a connector, an item changes
back, ids hold separators, a listing is big. Measured on the same run: %d http-json connectors of the scenarios side
by side on one stack like the fault suite's (2 schedulers, 3 workers, 1 aggregator; real nats-server and redis-server),
with `+"`NATS_DUPLICATE_WINDOW=%s`"+` so that a re-publish after the window is stored, not dropped; %.0f s in all. Each
scenario checks what a user sees: every change its upstream showed is in SIGNALS exactly once and in order (by item and
version, from the signals' bodies); nothing re-published (the workers' `+"`poll done`"+` lines count one publish per
change); no crash-loop verdict (no worker log line about one); after an outage, a successful poll no later than the
back-off in force when it ended (`+"`not_before`"+` in Redis) plus the interval plus %s. Over the whole stack the workers
counted %.0f crash-loop verdicts (`+"`pollgrid_crash_loops_total`"+`) and %.0f re-publishes JetStream dropped
(`+"`pollgrid_signals_duplicate_total`"+`). `+"`make test`"+` runs %s.

| scenario | what happens | changes / stored / re-published | crash loops | polled again after the back-off | result | measured |
|---|---|---|---|---|---|---|
`, life.connectors, lifeDuplicateWindow, life.took.Seconds(), lifeSlack, life.crashLoops, life.duplicates, shortLife())
	cell := func(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "|", "\\|"), "\n", `\n`) }
	for _, r := range life.results {
		ok, why := r.held()
		res := "held"
		if !ok {
			res = "**failed**: " + strings.Join(why, "; ")
		}
		recovery := "—"
		if len(r.recovery) > 0 {
			recovery = strings.Join(r.recovery, "; ")
		}
		fmt.Fprintf(b, "| %s | %s | %d / %d / %d | %d | %s | %s | %s |\n", r.name, cell(r.life), r.changes, r.stored, r.republished,
			r.crashLoops, cell(recovery), cell(res), cell(strings.Join(r.notes, "; ")))
	}
}

// shortLife says which ordinary-life scenarios `make test` runs.
func shortLife() string {
	var long []string
	for _, sc := range lifeScenarios() {
		if !sc.short {
			long = append(long, sc.name)
		}
	}
	if len(long) == 0 {
		return "every one of them"
	}
	return "all but " + strings.Join(long, ", ")
}

// The ordinary-life table is written under the fault table, one row per
// scenario, with what failed and a cell's | and newlines escaped.
func TestReliabilityDocOrdinaryLife(t *testing.T) {
	doc := reliabilityDoc(load{connectors: 1, items: 1, period: time.Second}, nil, lifeReport{connectors: 2, took: 90 * time.Second, results: []lifeResult{
		{name: "change-back", life: "A → B → A", changes: 3, stored: 3, notes: []string{"went A → B → A in 2.0 s"}},
		{name: "odd-ids", life: "\"x\ny\" | \"x y\"", changes: 6, stored: 4, missing: 2, examples: []string{"odd-ids: missing created \"x y\" at \"1\""}},
	}})
	assert.Contains(t, doc, "## Ordinary life")
	assert.Contains(t, doc, "| change-back | A → B → A | 3 / 3 / 0 | 0 | — | held | went A → B → A in 2.0 s |\n")
	assert.Contains(t, doc, `| odd-ids | "x\ny" \| "x y" | 6 / 4 / 0 | 0 | — | **failed**: 2 of 6 changes missing from SIGNALS; e.g. odd-ids: missing created "x y" at "1" |`)
	assert.Contains(t, doc, "`make test` runs "+shortLife()+".")
}
