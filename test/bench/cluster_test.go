//go:build bench

package bench

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/catalog"
	"github.com/pollgrid/pollgrid/test/harness"
)

// Scenario 9 (asked only): what leaving one box costs. The same load, one
// the workers keep up with, on two systems side by side: the suite's
// single stack (one nats-server, one redis-server) and a 3-node JetStream
// cluster with every stream R3 (NATS_STREAM_REPLICAS=3) plus a Redis
// Cluster of 3 masters, the cluster stacks the fault suites start. CPU and
// RSS of every process per poll, per kind of process, and from those a
// linear cost per 1,000 connectors polled every minute.

// clusterConnectors at clusterInterval is meant to be a load the cluster
// keeps up with on the 2-core machine: in development runs a poll cost it
// 1.5 to 2.2 times the CPU of the single stack's (up to a millisecond and
// a half in all), so 2,000 polls/s would take the whole box.
const (
	clusterConnectors  = 1_000
	clusterInterval    = time.Second
	clusterWorkers     = 2
	clusterConcurrency = 32
	// clusterBodyBytes pads the upstream's answers as e2e does; its item
	// changes on every request, so every poll stores one signal.
	clusterBodyBytes = 2048
	clusterNodes     = 3
)

// clusterKinds are the kinds of process pollgrid is made of, in the order
// the results show them.
var clusterKinds = []string{"nats-server", "redis-server", "worker", "scheduler", "aggregator"}

// clusterSystem is one of the two systems: a stack whose NATS and Redis
// are a single server each or a cluster each, and how services reach them.
type clusterSystem struct {
	*stack
	// Name is "single" or "cluster".
	Name     string
	natsURL  string // every node, comma-separated
	redisURL string
	replicas int
	// monitors are the nodes' monitoring base URLs.
	monitors []string
}

// clusterRun is one measured run of one system.
type clusterRun struct {
	System string
	Quiet  Quiet
	Window Window
	// Signals is how far SIGNALS' last sequence moved over the window: one
	// per successful poll.
	Signals uint64
	// Requests the upstream received over the window.
	Requests int64
	// Pending is the ticks stored in TICKS at the window's end besides the
	// connectors' schedule definitions: fired and not yet acked.
	Pending int64
	// Leaders names the node leading each stream and consumer ("TICKS",
	// "TICKS/<consumer>"); empty for the single system.
	Leaders map[string]string
	// Stored is JetStream's file storage in use at the window's end, Grown
	// how much it grew over the window, every node summed (/jsz storage).
	// SIGNALS keeps every signal (TICKS and REPORTS are work queues), so
	// Grown is what the window's signals take on disk, every copy.
	Stored, Grown int64
}

// Rate is successful polls per second.
func (r clusterRun) Rate() float64 { return float64(r.Signals) / r.Window.Wall.Seconds() }

// PerPoll is µs of CPU per successful poll.
func (r clusterRun) PerPoll(cpu time.Duration) float64 {
	if r.Signals == 0 {
		return math.NaN()
	}
	return float64(cpu.Microseconds()) / float64(r.Signals)
}

// PerSignalStored is the bytes JetStream's storage grew by per signal
// stored over the window, every copy.
func (r clusterRun) PerSignalStored() float64 {
	if r.Signals == 0 {
		return math.NaN()
	}
	return float64(r.Grown) / float64(r.Signals)
}

// Kind sums the CPU and the max RSS of the processes of one kind.
func (r clusterRun) Kind(kind string) (cpu time.Duration, rss int64) {
	for _, u := range r.Window.Procs {
		if !u.Apart && procKind(u.Name) == kind {
			cpu += u.CPU
			rss += u.MaxRSS
		}
	}
	return cpu, rss
}

// RSS is the max RSS of every measured process, summed (each process's
// own maximum: an upper bound of what they held at once).
func (r clusterRun) RSS() int64 {
	var sum int64
	for _, u := range r.Window.Procs {
		if !u.Apart {
			sum += u.MaxRSS
		}
	}
	return sum
}

// Ranked is the usage of the processes of kind, busiest first: the nodes
// of a cluster play different parts (a stream's leader, a follower), and
// which node plays which differs between runs.
func (r clusterRun) Ranked(kind string) []Usage {
	var out []Usage
	for _, u := range r.Window.Procs {
		if procKind(u.Name) == kind {
			out = append(out, u)
		}
	}
	slices.SortStableFunc(out, func(a, b Usage) int { return cmp.Compare(b.CPU, a.CPU) })
	return out
}

var numbered = regexp.MustCompile(`-[0-9]+$`)

// procKind is a process's name without its number: worker-2 → worker.
func procKind(name string) string { return numbered.ReplaceAllString(name, "") }

func benchCluster(t *testing.T, s *suite) string {
	n := s.scaled(clusterConnectors)
	warm := pick(s, 15*time.Second, 10*time.Second)
	window := pick(s, 60*time.Second, 15*time.Second)
	var single, cluster []clusterRun
	// Interleaved, so that a machine getting busier or quieter over the
	// session weighs on both alike.
	for rep := 1; rep <= s.reps; rep++ {
		t.Run(fmt.Sprintf("single-%d", rep), func(t *testing.T) {
			single = append(single, runClusterSystem(t, s, newSingleSystem(t, s), n, warm, window))
		})
		t.Run(fmt.Sprintf("cluster-%d", rep), func(t *testing.T) {
			cluster = append(cluster, runClusterSystem(t, s, newClusterSystem(t, s), n, warm, window))
		})
	}
	if len(single) == 0 && len(cluster) == 0 {
		return "" // every run failed: keep the results written before
	}
	return clusterReport(n, warm, window, single, cluster)
}

// newSingleSystem is the suite's stack, as e2e runs on it.
func newSingleSystem(t *testing.T, s *suite) *clusterSystem {
	st := newStack(t, s)
	return &clusterSystem{stack: st, Name: "single", natsURL: st.NATS.URL, redisURL: st.Redis.URL(), replicas: 1,
		monitors: []string{st.NATS.Monitor}}
}

// newClusterSystem starts a 3-node JetStream cluster and a Redis Cluster of
// 3 masters; the stack's client talks to every NATS node.
func newClusterSystem(t *testing.T, s *suite) *clusterSystem {
	st := &stack{t: t, profile: s.profile, pprof: map[string]string{}}
	var profAddrs []string
	if st.profile != "" {
		for i := range clusterNodes {
			profAddrs = append(profAddrs, harness.FreeAddr(t))
			st.pprof[fmt.Sprintf("nats-server-%d", i+1)] = "http://" + profAddrs[i]
		}
	}
	nodes, urls := startNATSCluster(t, clusterNodes, s.natsMemLimit, profAddrs)
	redis := harness.StartRedisCluster(t, clusterNodes)
	st.NATS = nodes[0]
	st.NC, st.JS = harness.Connect(t, urls)
	for i, n := range nodes {
		st.Procs = append(st.Procs, Proc{Name: fmt.Sprintf("nats-server-%d", i+1), PID: n.Cmd.Process.Pid})
	}
	for i, r := range redis.Nodes {
		st.Procs = append(st.Procs, Proc{Name: fmt.Sprintf("redis-server-%d", i+1), PID: r.Cmd.Process.Pid})
	}
	cs := &clusterSystem{stack: st, Name: "cluster", natsURL: urls, redisURL: redis.URL(), replicas: clusterNodes}
	for _, n := range nodes {
		cs.monitors = append(cs.monitors, n.Monitor)
	}
	return cs
}

// startNATSCluster runs a JetStream cluster of size nodes, n1..n<size>, as
// harness.StartNATSCluster does, with GOMEMLIMIT=memLimit in each node's
// environment (none when ""): the single stack's nats-server runs with it,
// and a comparison of RSS needs both alike. Node i's profiler listens on
// profAddrs[i] when given. URLs lists every node.
func startNATSCluster(t *testing.T, size int, memLimit string, profAddrs []string) (nodes []*harness.NATSServer, urls string) {
	t.Helper()
	ports, routePorts := make([]int, size), make([]int, size)
	var routes []string
	for i := range size {
		ports[i], routePorts[i] = harness.Port(t, harness.FreeAddr(t)), harness.Port(t, harness.FreeAddr(t))
		routes = append(routes, strconv.Quote(fmt.Sprintf("nats-route://127.0.0.1:%d", routePorts[i])))
	}
	var env map[string]string
	if memLimit != "" {
		env = map[string]string{"GOMEMLIMIT": memLimit}
	}
	bin := harness.Build(t, "github.com/nats-io/nats-server/v2")
	var all []string
	for i := range size {
		name, monitor := fmt.Sprintf("n%d", i+1), harness.Port(t, harness.FreeAddr(t))
		conf := fmt.Sprintf("server_name: %q\nlisten: \"127.0.0.1:%d\"\nhttp: \"127.0.0.1:%d\"\njetstream { store_dir: %q }\n"+
			"cluster { name: pollgrid, listen: \"127.0.0.1:%d\", routes: [%s] }\n",
			name, ports[i], monitor, t.TempDir(), routePorts[i], strings.Join(routes, ", "))
		if i < len(profAddrs) {
			conf += fmt.Sprintf("prof_port: %d\n", harness.Port(t, profAddrs[i]))
		}
		path := filepath.Join(t.TempDir(), name+".conf")
		require.NoError(t, os.WriteFile(path, []byte(conf), 0o600))
		nodes = append(nodes, &harness.NATSServer{
			Process: harness.StartProcess(t, bin, env, "-c", path),
			URL:     fmt.Sprintf("nats://127.0.0.1:%d", ports[i]), Monitor: fmt.Sprintf("http://127.0.0.1:%d", monitor), Name: name,
		})
		all = append(all, nodes[i].URL)
	}
	// A node's JetStream is healthy only once the cluster has a meta
	// leader: every node is launched before any is waited for.
	for _, n := range nodes {
		n.WaitHTTP(t, n.Monitor+"/healthz?js-enabled-only=true", time.Minute)
	}
	return nodes, strings.Join(all, ",")
}

// startService runs the binary of svc as name on this system, with the
// environment stack.startService gives (LOG_LEVEL=warn, no trace exporter,
// loopback upstreams allowed, PPROF_ADDR under BENCH_PROFILE), NATS_URL,
// REDIS_URL and NATS_STREAM_REPLICAS for this system, and env on top; it
// waits for /readyz. (stack.startService points a service at the stack's
// one redis-server, which the cluster system has not.)
func (cs *clusterSystem) startService(name, svc string, env map[string]string) {
	t := cs.t
	t.Helper()
	addr := harness.FreeAddr(t)
	full := map[string]string{
		"NATS_URL": cs.natsURL, "REDIS_URL": cs.redisURL, "NATS_STREAM_REPLICAS": strconv.Itoa(cs.replicas),
		"HTTP_ADDR": addr, "LOG_LEVEL": "warn", "UPSTREAM_ALLOW": harness.LoopbackAllow,
	}
	for k, v := range env {
		full[k] = v
	}
	if cs.profile != "" {
		full["PPROF_ADDR"] = harness.FreeAddr(t)
		cs.pprof[name] = "http://" + full["PPROF_ADDR"]
	}
	p := harness.StartProcess(t, harness.Build(t, "github.com/pollgrid/pollgrid/services/"+svc), full)
	p.WaitHTTP(t, "http://"+addr+"/readyz", 3*time.Minute)
	cs.Procs = append(cs.Procs, Proc{Name: name, PID: p.Cmd.Process.Pid})
}

func runClusterSystem(t *testing.T, s *suite, cs *clusterSystem, n int, warm, window time.Duration) clusterRun {
	r := clusterRun{System: cs.Name, Quiet: s.waitQuiet(t, "cluster")}
	up := cs.startUpstream("-connectors", strconv.Itoa(n), "-body-bytes", strconv.Itoa(clusterBodyBytes))
	env := map[string]string{"CONNECTORS_FILE": connectorsFile(t, n, clusterInterval, up.URL, nil)}
	cs.startService("aggregator", "aggregator", env)
	for i := 1; i <= clusterWorkers; i++ {
		cs.startService(fmt.Sprintf("worker-%d", i), "worker", with(env, "WORKER_CONCURRENCY", strconv.Itoa(clusterConcurrency)))
	}
	cs.startService("scheduler", "scheduler", env)

	waitFor(t, 3*time.Minute, "the first signal", func() bool { return cs.streamState(bus.SignalsStream).LastSeq > 0 })
	sleep(t, warm)
	sig0, up0, stored0 := cs.streamState(bus.SignalsStream).LastSeq, up.stats(t), cs.stored()
	m, err := StartMeter(cs.Procs)
	require.NoError(t, err)
	profiled := cs.profileCPU("cluster-"+cs.Name, window)
	sleep(t, window)
	r.Window = m.Stop()
	profiled()
	s.noteWindow(t, "cluster", r.Window)
	sig1, up1 := cs.streamState(bus.SignalsStream).LastSeq, up.stats(t)
	r.Signals, r.Requests = sig1-sig0, up1.Requests-up0.Requests
	r.Stored = cs.stored()
	r.Grown = r.Stored - stored0
	r.Pending = int64(cs.streamState(bus.TicksStream).Msgs) - int64(n)
	if cs.replicas > 1 {
		r.Leaders = cs.leaders()
	}

	for _, u := range r.Window.Procs {
		t.Logf("%s: %.2f cores, %.0f µs per poll, max RSS %s", u.Name, r.Window.Cores(u), r.PerPoll(u.CPU), MiB(float64(u.MaxRSS)))
	}
	t.Logf("%s: %.0f polls/s (due %.0f/s), %.0f upstream requests/s, %.0f µs CPU per poll (summed), %d ticks pending at the end, "+
		"JetStream storage %s (%.0f bytes per signal); leaders %v",
		cs.Name, r.Rate(), float64(n)/clusterInterval.Seconds(), float64(r.Requests)/r.Window.Wall.Seconds(),
		r.PerPoll(r.Window.Sum()), r.Pending, MiB(float64(r.Stored)), r.PerSignalStored(), r.Leaders)
	return r
}

// stored is JetStream's file storage in use, every node summed.
func (cs *clusterSystem) stored() int64 {
	var sum int64
	for _, mon := range cs.monitors {
		var jsz struct {
			Storage int64 `json:"storage"`
		}
		getJSON(cs.t, mon+"/jsz", &jsz)
		sum += jsz.Storage
	}
	return sum
}

// leaders names the node process leading each of pollgrid's streams and
// their consumers: the node that orders every write to it.
func (cs *clusterSystem) leaders() map[string]string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	proc := func(node string) string { return "nats-server-" + strings.TrimPrefix(node, "n") }
	out := map[string]string{}
	for _, name := range []string{bus.TicksStream, bus.SignalsStream, bus.ReportsStream, "KV_" + catalog.Bucket} {
		st, err := cs.JS.Stream(ctx, name)
		if err != nil {
			continue // not created in this configuration
		}
		info, err := st.Info(ctx)
		if err != nil || info.Cluster == nil {
			continue
		}
		out[name] = proc(info.Cluster.Leader)
		for c := range st.ListConsumers(ctx).Info() {
			// Durable ones only: the services' watchers of the KV bucket
			// are ephemeral, with names of their own on every run.
			if c.Cluster != nil && c.Config.Durable != "" {
				out[name+"/"+c.Name] = proc(c.Cluster.Leader)
			}
		}
	}
	return out
}
