package chaos

import (
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// reliabilityDoc is docs/reliability.md: the guarantees, how each is
// enforced, the production settings they assume, and the table `make
// chaos` measured.
func reliabilityDoc(ld load, results []result) string {
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
| A signal is published once per (item, version) | seen versions in Redis; ` + "`Nats-Msg-Id = <name>:<item>:<version>`" + ` so that a re-publish inside the SIGNALS duplicate window is dropped by JetStream |
| A dead or frozen worker delays its connectors by seconds | ticks are redelivered after ` + "`WORKER_ACK_WAIT`" + ` and leases expire after ` + "`lease_ttl`" + ` (2 s each by default) |
| NATS and Redis outages are survived, not crashed on | NATS: reconnect for ever (also through rejected credentials); a connection that closes for good fails /healthz and stops the process. Redis: every call bounded by its context, nothing retried by the client (a script whose answer is lost may have run) |
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
  may lose recent writes: the fencing across data loss (issue 9, item 1) is what keeps that safe.
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
	return b.String()
}
