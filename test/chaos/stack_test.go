package chaos

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/test/harness"
)

// Load of the suite: benign connectors polled every second, each with
// items changing every period.
const (
	interval = time.Second
	// failoverBound is how late a connector may be polled after a worker
	// dies or freezes: WORKER_ACK_WAIT and lease_ttl (2 s each, the
	// defaults) plus one second for the tick's phase and the new poll.
	failoverBound = 3 * time.Second
	// pollBound is the longest a due connector may wait between polls.
	pollBound = interval + failoverBound
)

// svc is one pollgrid service process.
type svc struct {
	kind string // scheduler, worker, aggregator
	id   string
	tags string // build tags of its binary
	env  map[string]string
	http string
	p    *harness.Process
	t    testing.TB
}

func (s *svc) start() {
	s.t.Helper()
	s.p = harness.StartProcess(s.t, harness.BuildTagged(s.t, "github.com/pollgrid/pollgrid/services/"+s.kind, s.tags), s.env)
	s.p.WaitHTTP(s.t, s.http+"/readyz", 60*time.Second)
}

func (s *svc) signal(sig syscall.Signal) { _ = s.p.Cmd.Process.Signal(sig) }

// metric reads one sample of the service's /metrics ("" when absent).
func (s *svc) metric(series string) string {
	client := &http.Client{Timeout: 2 * time.Second} // the process may be frozen
	resp, err := client.Get(s.http + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// rssKB is the process's resident memory and its peak, from /proc.
func (s *svc) rssKB() (rss, peak int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.p.Cmd.Process.Pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) >= 2 {
			n, _ := strconv.Atoi(fields[1])
			switch fields[0] {
			case "VmRSS:":
				rss = n
			case "VmHWM:":
				peak = n
			}
		}
	}
	return rss, peak
}

// stack is one topology: NATS (a server or a cluster), Redis (a server or a
// Sentinel set), the upstream and the services.
type stack struct {
	t        testing.TB
	natsURL  string
	nats     []*harness.NATSServer
	redis    *harness.RedisServer
	sentinel *harness.SentinelSet
	redisURL string
	up       *upstream
	names    []string // the benign connectors
	config   string   // CONNECTORS_FILE
	extra    []string // entries added to the config (hostile, SSRF)
	env      map[string]string

	mu       sync.Mutex
	services []*svc
}

// token is the secret the SSRF and redaction connectors send.
const token = "chaos-token-5e3f9a"

type topology struct {
	natsCluster bool // 3 nodes, R3 streams
	sentinel    bool // master, 2 replicas, 3 Sentinels
	connectors  int
	items       int
	period      time.Duration
	// entries are connectors of the config besides the benign ones, and
	// env environment of every service on top of the suite's (the
	// ordinary-life stack).
	entries []string
	env     map[string]string
}

func newStack(t testing.TB, topo topology) *stack {
	t.Helper()
	s := &stack{t: t, up: newUpstream(t, topo.period, topo.items)}
	replicas := "1"
	if topo.natsCluster {
		s.nats, s.natsURL = harness.StartNATSCluster(t, 3)
		replicas = "3"
	} else {
		s.nats = []*harness.NATSServer{harness.StartNATSServer(t)}
		s.natsURL = s.nats[0].URL
	}
	if topo.sentinel {
		s.sentinel = harness.StartSentinelSet(t, 2)
		s.redisURL = s.sentinel.URL()
	} else {
		s.redis = harness.StartRedisServer(t, harness.RedisOptions{AppendOnly: true})
		s.redisURL = s.redis.URL()
	}
	for i := range topo.connectors {
		s.names = append(s.names, fmt.Sprintf("c%02d", i))
	}
	s.config = filepath.Join(t.TempDir(), "connectors.json")
	s.extra = topo.entries
	s.writeConfig()
	s.env = map[string]string{
		"NATS_URL": s.natsURL, "REDIS_URL": s.redisURL, "CONNECTORS_FILE": s.config, "LOG_LEVEL": "warn",
		"NATS_STREAM_REPLICAS": replicas, "UPSTREAM_ALLOW": "127.0.0.2/32", "CHAOS_TOKEN": token,
		"SCHEDULER_LEADER_TTL": "3s",
	}
	for k, v := range topo.env {
		s.env[k] = v
	}
	s.start("aggregator", "a1")
	for i := 1; i <= 2; i++ {
		s.start("scheduler", fmt.Sprintf("s%d", i))
	}
	for i := 1; i <= 3; i++ {
		s.start("worker", fmt.Sprintf("w%d", i))
	}
	return s
}

func (s *stack) start(kind, id string) *svc {
	sv := s.newSvc(kind, id, "", nil)
	sv.start()
	s.add(sv)
	return sv
}

// newSvc is a service of kind on this stack, its binary built with tags,
// extra on top of the stack's environment; not started.
func (s *stack) newSvc(kind, id, tags string, extra map[string]string) *svc {
	env := map[string]string{"HTTP_ADDR": harness.FreeAddr(s.t), "WORKER_ID": id, "SCHEDULER_ID": id}
	for k, v := range s.env {
		env[k] = v
	}
	for k, v := range extra {
		env[k] = v
	}
	return &svc{kind: kind, id: id, tags: tags, env: env, http: "http://" + env["HTTP_ADDR"], t: s.t}
}

func (s *stack) add(sv *svc) {
	s.mu.Lock()
	s.services = append(s.services, sv)
	s.mu.Unlock()
}

// running lists the services of kind whose process runs.
func (s *stack) running(kind string) []*svc {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*svc
	for _, sv := range s.services {
		if sv.kind == kind && !sv.p.Exited() {
			out = append(out, sv)
		}
	}
	return out
}

func (s *stack) connectorEntry(name string) string {
	return fmt.Sprintf(`{"name": %q, "type": "http-json", "interval": "1s", "timeout": "900ms", "retries": {"max": 0},
		"config": {"url": "%s/items/%s?since={{cursor}}", "initial_cursor": "0", "items": ".items[]", "id": ".id",
		"version": ".version | tostring", "time": ".updated", "cursor_kind": "number"}}`, name, s.up.URL, name)
}

func (s *stack) writeConfig() {
	var entries []string
	for _, n := range s.names {
		entries = append(entries, s.connectorEntry(n))
	}
	entries = append(entries, s.extra...)
	require.NoError(s.t, os.WriteFile(s.config, []byte(`{"connectors": [`+strings.Join(entries, ",\n")+`]}`), 0o600))
}

// reload sends SIGHUP to every running service and waits until each has
// counted the reload with result (ok or rejected).
func (s *stack) reload(result string) {
	s.t.Helper()
	s.mu.Lock()
	services := append([]*svc(nil), s.services...)
	s.mu.Unlock()
	series := fmt.Sprintf(`pollgrid_config_reloads_total{result=%q}`, result)
	for _, sv := range services {
		if sv.p.Exited() {
			continue
		}
		before, _ := strconv.Atoi(sv.metric(series))
		sv.signal(syscall.SIGHUP)
		require.Eventually(s.t, func() bool {
			n, _ := strconv.Atoi(sv.metric(series))
			return n > before
		}, 30*time.Second, 50*time.Millisecond, "%s-%s did not count a %s reload", sv.kind, sv.id, result)
	}
}

// redisClient is an administrative client of whichever Redis the stack
// runs (the current master of a Sentinel set).
func (s *stack) redisClient() redis.UniversalClient {
	if s.sentinel != nil {
		return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: s.sentinel.MasterName,
			SentinelAddrs: strings.Split(strings.SplitN(strings.TrimPrefix(s.redisURL, "redis-sentinel://"), "/", 2)[0], ","),
			DialTimeout:   time.Second, ReadTimeout: time.Second, MaxRetries: -1, ContextTimeoutEnabled: true})
	}
	return s.redis.Client()
}

// leader is the scheduler that leads now, if any.
func (s *stack) leader() *svc {
	for _, sv := range s.running("scheduler") {
		if sv.metric("pollgrid_scheduler_leader") == "1" {
			return sv
		}
	}
	return nil
}

// lastErrors reads each connector's last_error from its Redis state.
func (s *stack) lastError(name string) string {
	c := s.redisClient()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return c.HGet(ctx, "pollgrid:{"+name+"}:state", "last_error").Val()
}

// succeededSince reports whether the connector's last successful poll
// (last_success in its Redis state) is after at.
func (s *stack) succeededSince(name string, at time.Time) bool {
	c := s.redisClient()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ms, err := c.HGet(ctx, "pollgrid:{"+name+"}:state", "last_success").Int64()
	return err == nil && time.UnixMilli(ms).After(at)
}
