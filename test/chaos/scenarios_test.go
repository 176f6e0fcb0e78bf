package chaos

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/failpoint"
	"github.com/pollgrid/pollgrid/test/harness"
)

// scenario is one fault and what it measures.
type scenario struct {
	name  string
	fault string // for the table
	// short scenarios also run in `make test`.
	short bool
	run   func(t *testing.T, s *stack, w *window)
}

// waitFor waits for cond, checking every 50 ms, up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// leases lists the connectors whose lease owner holds now, with tokens.
func (s *stack) leases(owner string) map[string]int64 {
	c := s.redisClient()
	defer c.Close()
	out := map[string]int64{}
	for _, n := range s.names {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		v := c.Get(ctx, "pollgrid:{"+n+"}:lease").Val()
		cancel()
		if o, tok, ok := strings.Cut(v, ":"); ok && o == owner {
			out[n], _ = strconv.ParseInt(tok, 10, 64)
		}
	}
	return out
}

func (s *stack) fence(name string) int64 {
	c := s.redisClient()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	n, _ := c.Get(ctx, "pollgrid:{"+name+"}:fence").Int64()
	return n
}

// busyWorker waits for a worker that is polling now.
func (s *stack) busyWorker() *svc {
	var busy *svc
	waitFor(10*time.Second, func() bool {
		for _, sv := range s.running("worker") {
			if n, _ := strconv.ParseFloat(sv.metric("pollgrid_polls_in_flight"), 64); n > 0 {
				busy = sv
				return true
			}
		}
		return false
	})
	if busy == nil {
		busy = s.running("worker")[0]
	}
	return busy
}

var nextWorker = 4

// dieAt adds a worker built with -tags failpoints that kills itself the
// first time one of its polls reaches point; the connector's next poll, by
// another worker, must neither publish a signal twice nor skip one.
func dieAt(point string) func(*testing.T, *stack, *window) {
	return func(t *testing.T, s *stack, w *window) {
		dropped := func() (n float64) {
			for _, sv := range s.running("worker") {
				v, _ := strconv.ParseFloat(sv.metric(`pollgrid_signals_duplicate_total{type="http-json"}`), 64)
				n += v
			}
			return n
		}
		before := dropped()
		victim := s.newSvc("worker", fmt.Sprintf("w%d", nextWorker), "failpoints", map[string]string{"POLLGRID_FAILPOINT": point})
		nextWorker++
		// Not waiting for /readyz: it may reach the point before that.
		victim.p = harness.StartProcess(t, harness.BuildTagged(t, "github.com/pollgrid/pollgrid/services/worker", victim.tags), victim.env)
		s.add(victim)
		started := time.Now()
		require.True(t, waitFor(60*time.Second, victim.p.Exited), "%s never reached failpoint %s:\n%s", victim.id, point, victim.p.Stderr)
		require.Contains(t, victim.p.Stderr.String(), "failpoint "+point+": killing this process")
		died := time.Since(started)
		time.Sleep(4 * time.Second)
		w.note("%s died at %s %.1f s after it started; the other workers' re-publishes JetStream dropped as duplicates since: %.0f",
			victim.id, point, died.Seconds(), dropped()-before)
	}
}

func (s *stack) replaceWorker() {
	s.start("worker", fmt.Sprintf("w%d", nextWorker))
	nextWorker++
}

func scenarios() []scenario {
	return []scenario{
		{name: "redis-restarted-empty", fault: "a worker frozen holding leases; Redis killed -9 and restarted empty; the worker resumed once the new fencing counters reach its tokens",
			run: redisRestartedEmpty},
		{name: "worker-kill", fault: "a worker killed -9 while polling", short: true, run: func(t *testing.T, s *stack, w *window) {
			victim := s.busyWorker()
			in := victim.metric("pollgrid_polls_in_flight")
			victim.p.Kill()
			w.note("killed %s with %s polls in flight", victim.id, in)
			time.Sleep(5 * time.Second)
			s.replaceWorker()
		}},
		{name: "worker-dies-after-publish", fault: "a worker dies (SIGKILL at a failpoint) after publishing a poll's signals, before committing its cursor",
			short: true, run: dieAt(failpoint.AfterPublish)},
		{name: "worker-dies-after-commit", fault: "a worker dies (SIGKILL at a failpoint) after committing a poll, before acking its tick",
			short: true, run: dieAt(failpoint.AfterCommit)},
		{name: "worker-stop", fault: "a worker frozen (SIGSTOP) for 6 s, past its 2 s leases, then resumed", short: true, run: func(t *testing.T, s *stack, w *window) {
			victim := s.busyWorker()
			fencedBefore, _ := strconv.ParseFloat(victim.metric("pollgrid_state_writes_fenced_total"), 64)
			victim.signal(syscall.SIGSTOP)
			held := s.leases(victim.id)
			time.Sleep(6 * time.Second)
			victim.signal(syscall.SIGCONT)
			waitFor(5*time.Second, func() bool { return victim.metric("pollgrid_polls_total") != "" })
			time.Sleep(2 * time.Second)
			fenced, _ := strconv.ParseFloat(victim.metric("pollgrid_state_writes_fenced_total"), 64)
			w.note("froze %s holding %d leases; after SIGCONT %d of its commits were fenced", victim.id, len(held), int(fenced-fencedBefore))
		}},
		{name: "nats-restart", fault: "nats-server killed -9, restarted 3 s later on its store", short: true, run: func(t *testing.T, s *stack, w *window) {
			down := time.Now()
			s.nats[0].Kill()
			time.Sleep(3 * time.Second)
			s.nats[0].Restart()
			up := time.Now()
			w.excuse(down, up)
			w.healed(up)
			w.note("NATS away %.1f s", up.Sub(down).Seconds())
		}},
		{name: "redis-freeze", fault: "redis-server frozen (SIGSTOP) for 5 s", short: true, run: func(t *testing.T, s *stack, w *window) {
			down := time.Now()
			s.redis.Freeze()
			time.Sleep(time.Second)
			worker := s.running("worker")[0]
			start := time.Now()
			code, body := httpGet(worker.http + "/readyz")
			took := time.Since(start)
			time.Sleep(4 * time.Second)
			s.redis.Thaw()
			up := time.Now()
			w.excuse(down, up)
			w.healed(up)
			w.note("/readyz during the freeze: %d in %d ms", code, took.Milliseconds())
			if code != 503 || !strings.Contains(body, "redis does not answer within 1s") {
				w.fail("/readyz during the freeze answered %d %q", code, body)
			}
			if took > 2*time.Second && *full {
				w.fail("/readyz took %s during the freeze (its deadline is 1 s)", took)
			}
		}},
		{name: "redis-restart", fault: "redis-server killed -9, restarted 2 s later on its AOF (appendfsync everysec)", run: func(t *testing.T, s *stack, w *window) {
			down := time.Now()
			s.redis.Kill()
			time.Sleep(2 * time.Second)
			s.redis.Restart(true)
			up := time.Now()
			w.excuse(down, up)
			w.healed(up)
			w.note("Redis away %.1f s", up.Sub(down).Seconds())
		}},
		{name: "leader-kill", fault: "the leading scheduler killed -9", run: func(t *testing.T, s *stack, w *window) {
			leader := s.leader()
			require.NotNil(t, leader, "a scheduler leads")
			killed := time.Now()
			leader.p.Kill()
			var next *svc
			waitFor(20*time.Second, func() bool { next = s.leader(); return next != nil })
			if next == nil {
				w.fail("no scheduler took over within 20 s")
			} else {
				w.note("%s killed; %s led %.1f s later (SCHEDULER_LEADER_TTL 3s); ticks never depended on it", leader.id, next.id, time.Since(killed).Seconds())
			}
			s.start("scheduler", fmt.Sprintf("s%d", nextWorker))
			nextWorker++
		}},
		{name: "slow-and-hung-upstreams", fault: "for 5 s, one upstream answers in 700 ms and two never answer", run: func(t *testing.T, s *stack, w *window) {
			slow, hung := s.names[0], slices.Clone(s.names[1:3])
			from := time.Now()
			s.up.setMode(slow, "slow")
			for _, n := range hung {
				s.up.setMode(n, "hang")
			}
			time.Sleep(5 * time.Second)
			for _, n := range append(hung, slow) {
				s.up.setMode(n, "")
			}
			s.up.release()
			healed := time.Now()
			attempts := 0
			for _, n := range hung {
				for _, at := range s.up.requestsOf(n) {
					if at.After(from) {
						attempts++
					}
				}
			}
			w.note("the hung upstreams were asked %d times in 5 s (each poll times out at 900 ms; a failing connector backs off, doubling from its interval)", attempts)
			w.note("a hung connector's last_error: %q", truncate(s.lastError(hung[0]), 120))
			// Each failure doubled the hung connectors' wait: they are polled
			// again once it has passed.
			back := waitFor(60*time.Second, func() bool {
				for _, n := range hung {
					if !s.succeededSince(n, healed) {
						return false
					}
				}
				return true
			})
			w.excuse(from, time.Now().Add(time.Second), hung...)
			w.note("the hung connectors succeeded again %.1f s after their upstream recovered (backoff: %v)", time.Since(healed).Seconds(), back)
			if !back {
				w.fail("the hung connectors did not succeed within 60 s of their upstream's recovery")
			}
		}},
		{name: "hostile-configs", fault: "SIGHUP with a 100 MB connectors.json, then a 20 KB one nested 9,990 deep, then one with invalid UTF-8", short: true, run: hostileConfigs},
		{name: "hostile-bodies", fault: "four connectors added whose upstream answers a gzip bomb (256 MiB), JSON nested 100,000 deep, invalid UTF-8 and 64 MiB", run: hostileBodies},
		{name: "ssrf", fault: "connectors pointed at cloud metadata, at Redis on 127.0.0.1, at localhost, at redirects to both, and across hosts with a token", short: true, run: ssrf},
	}
}

func haScenarios() []scenario {
	return []scenario{
		{name: "nats-cluster-node-lost", fault: "one node of a 3-node NATS cluster (R3 streams) killed -9, restarted 5 s later", run: func(t *testing.T, s *stack, w *window) {
			down := time.Now()
			s.nats[1].Kill()
			time.Sleep(5 * time.Second)
			s.nats[1].Restart()
			// The streams and consumers the lost node led elect new leaders
			// among the other two: polls wait for that, which is not the
			// worker failover the poll bound is about. Recovery is measured
			// from the kill.
			w.excuse(down, down.Add(6*time.Second))
			w.healed(down)
			w.note("node %s away %.1f s; the services kept the other two nodes; recovery counts JetStream's leader elections", s.nats[1].Name, time.Since(down).Seconds())
		}},
		{name: "redis-sentinel-master-lost", fault: "the master of a Sentinel set (2 replicas, 3 Sentinels) killed -9", run: func(t *testing.T, s *stack, w *window) {
			master := s.sentinel.CurrentMaster()
			require.NotNil(t, master)
			down := time.Now()
			master.Kill()
			var promoted *harness.RedisServer
			waitFor(30*time.Second, func() bool {
				promoted = s.sentinel.CurrentMaster()
				return promoted != nil && promoted != master
			})
			if promoted == nil || promoted == master {
				w.fail("no replica was promoted within 30 s")
				return
			}
			up := time.Now()
			w.excuse(down, up)
			w.healed(up)
			w.note("master on port %d lost; the replica on port %d promoted %.1f s later", master.Port, promoted.Port, up.Sub(down).Seconds())
		}},
	}
}

// redisRestartedEmpty is issue 9's first finding: a worker paused before
// Redis lost its data resumes when the new fencing counters have reached
// its tokens. Its commits must be refused and its late publishes must not
// show: last_poll and cursors never go back, no duplicate, nothing skipped.
func redisRestartedEmpty(t *testing.T, s *stack, w *window) {
	var victim *svc
	var held map[string]int64
	waitFor(20*time.Second, func() bool {
		for _, sv := range s.running("worker") {
			if l := s.leases(sv.id); len(l) > 0 {
				victim, held = sv, l
				sv.signal(syscall.SIGSTOP)
				// Read again: the leases it holds now that it is frozen.
				held = s.leases(sv.id)
				if len(held) > 0 {
					return true
				}
				sv.signal(syscall.SIGCONT)
			}
		}
		return false
	})
	if victim == nil || len(held) == 0 {
		w.fail("no worker held a lease to freeze")
		return
	}
	down := time.Now()
	s.redis.Restart(false)
	up := time.Now()
	w.dataLost = true
	w.excuse(down, up.Add(2*time.Second))
	w.healed(up)
	// Resume the frozen worker when a connector's new counter reaches the
	// token it holds (the moment a comparison of token and counter accepts
	// its commit), or after 30 s.
	target, token := "", int64(0)
	for n, tok := range held {
		if token == 0 || tok < token {
			target, token = n, tok
		}
	}
	reached := waitFor(30*time.Second, func() bool { return s.fence(target) >= token })
	victim.signal(syscall.SIGCONT)
	w.note("froze %s holding %d leases (%s token %d); Redis restarted empty; resumed it when the new counter was %d (reached: %v)",
		victim.id, len(held), target, token, s.fence(target), reached)
	time.Sleep(3 * time.Second)
}

func hostileConfigs(t *testing.T, s *stack, w *window) {
	good, err := os.ReadFile(s.config)
	require.NoError(t, err)
	sched := s.running("scheduler")[0]
	_, peakBefore := sched.rssKB()
	// 100 MB, sparse: refused from its size, unread.
	f, err := os.Create(s.config)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(100<<20))
	require.NoError(t, f.Close())
	start := time.Now()
	s.reload("rejected")
	w.note("100 MB file: every service rejected it in %d ms", time.Since(start).Milliseconds())
	// 20 KB nested 9,990 deep.
	deep := `{"connectors": [{"name": "deep", "type": "http-json", "config": ` + strings.Repeat(`{"a":`, 9_990) + "1" + strings.Repeat("}", 9_990) + `}]}`
	require.NoError(t, os.WriteFile(s.config, []byte(deep), 0o600))
	start = time.Now()
	s.reload("rejected")
	w.note("9,990-deep file: rejected in %d ms", time.Since(start).Milliseconds())
	// Invalid UTF-8 in a label.
	bad := strings.Replace(string(good), `"type": "http-json"`, "\"labels\": {\"team\": \"w\xffx\"}, \"type\": \"http-json\"", 1)
	require.NoError(t, os.WriteFile(s.config, []byte(bad), 0o600))
	s.reload("rejected")
	_, peakAfter := sched.rssKB()
	w.note("invalid UTF-8: rejected; the scheduler's peak memory grew %d KiB over the three (%d KiB)", peakAfter-peakBefore, peakAfter)
	if peakAfter-peakBefore > 64<<10 {
		w.fail("the scheduler's peak memory grew by %d KiB reading hostile configs", peakAfter-peakBefore)
	}
	require.NoError(t, os.WriteFile(s.config, good, 0o600))
	s.reload("ok")
}

func hostileBodies(t *testing.T, s *stack, w *window) {
	kinds := []string{"gzip-bomb", "deep", "bad-utf8", "huge"}
	for _, k := range kinds {
		s.extra = append(s.extra, fmt.Sprintf(`{"name": "hostile-%s", "type": "http-json", "interval": "1s", "timeout": "900ms", "retries": {"max": 0},
			"config": {"url": "%s/hostile/%s", "items": ".items[]", "id": ".id"}}`, k, s.up.URL, k))
	}
	s.writeConfig()
	s.reload("ok")
	time.Sleep(8 * time.Second)
	var errs []string
	for _, k := range kinds {
		errs = append(errs, fmt.Sprintf("%s: %q", k, truncate(s.lastError("hostile-"+k), 110)))
	}
	s.extra = nil
	s.writeConfig()
	s.reload("ok")
	w.note("their polls failed with: %s", strings.Join(errs, "; "))
}

func ssrf(t *testing.T, s *stack, w *window) {
	redisAddr := "127.0.0.1:" + strconv.Itoa(redisPort(s))
	// A second upstream host, allowed only to the one connector that names it.
	other := newUpstreamOn(t, "127.0.0.3", s.up)
	targets := map[string]string{
		"ssrf-metadata":          "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
		"ssrf-redis":             "http://" + redisAddr + "/",
		"ssrf-localhost":         "http://localhost:" + strconv.Itoa(redisPort(s)) + "/",
		"ssrf-redirect-redis":    s.up.URL + "/redirect?to=http://" + redisAddr + "/",
		"ssrf-redirect-metadata": s.up.URL + "/redirect?to=http://169.254.169.254/latest/meta-data/",
	}
	for name, url := range targets {
		s.extra = append(s.extra, fmt.Sprintf(`{"name": %q, "type": "http-json", "interval": "1s", "timeout": "900ms", "retries": {"max": 0},
			"config": {"url": %q, "items": ".items[]", "id": ".id"}}`, name, url))
	}
	s.extra = append(s.extra,
		fmt.Sprintf(`{"name": "echo-same", "type": "http-json", "interval": "1s", "timeout": "900ms",
			"config": {"url": "%s/echo/echo-same", "headers": {"X-Api-Token": "${CHAOS_TOKEN}"}, "items": ".items[]", "id": ".id", "version": ".version | tostring"}}`, s.up.URL),
		fmt.Sprintf(`{"name": "echo-cross", "type": "http-json", "interval": "1s", "timeout": "900ms",
			"config": {"url": "%s/redirect?to=%s/echo/echo-cross", "headers": {"X-Api-Token": "${CHAOS_TOKEN}"}, "allow_hosts": ["127.0.0.3"],
			"items": ".items[]", "id": ".id", "version": ".version | tostring"}}`, s.up.URL, other))
	s.writeConfig()
	s.reload("ok")
	time.Sleep(6 * time.Second)

	refused := 0
	for name := range targets {
		e := s.lastError(name)
		if strings.Contains(e, "outbound guard refused") {
			refused++
		} else {
			w.fail("%s was not refused: last_error %q", name, e)
		}
	}
	w.note("%d of %d SSRF connectors refused, e.g. %q", refused, len(targets), truncate(s.lastError("ssrf-redirect-redis"), 160))
	attacks := strings.Count(s.redis.Stdout.String(), "SECURITY ATTACK")
	w.note("Redis logged %d \"Possible SECURITY ATTACK\"", attacks)
	if attacks > 0 {
		w.fail("Redis saw %d HTTP requests", attacks)
	}
	crossed := s.up.headersOf("echo-cross")
	leaked := 0
	for _, h := range crossed {
		if h.Get("X-Api-Token") != "" {
			leaked++
		}
	}
	w.note("the redirect to another host arrived %d times, %d with the connector's X-Api-Token", len(crossed), leaked)
	if len(crossed) == 0 {
		w.fail("the cross-host redirect never arrived")
	}
	if leaked > 0 {
		w.fail("X-Api-Token followed a redirect to another host %d times", leaked)
	}
	// Redaction of an echoed secret is the poll path's (redact.Redactor.JSON).
	sigs, _ := s.readSignals(w.fromSeq)
	inData := 0
	for _, sg := range sigs {
		if sg.conn == "echo-same" && strings.Contains(string(sg.data), token) {
			inData++
		}
	}
	w.note("an upstream echoing the token: %d signals carried it in their data", inData)
	if inData > 0 && *full {
		// Short runs only report it: the poll path's call of
		// redact.Redactor.JSON on signal data lands with pkg/poll's changes.
		w.fail("%d signals carried a ${VAR} secret in their data (pkg/poll must pass item data through redact.Redactor.JSON)", inData)
	}
	s.extra = nil
	s.writeConfig()
	s.reload("ok")
}

func redisPort(s *stack) int {
	if s.redis != nil {
		return s.redis.Port
	}
	return s.sentinel.CurrentMaster().Port
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
