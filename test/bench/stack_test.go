//go:build bench

package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/test/harness"
)

// stack is one run's servers, fresh: a nats-server and a redis-server
// process, and the processes started on them, all stopped when the run's
// test ends.
type stack struct {
	t     *testing.T
	NATS  *harness.NATSServer
	Redis *redistest.Server
	NC    *nats.Conn
	JS    jetstream.JetStream
	// Procs are the processes to measure, in start order.
	Procs []Proc
	// profile is BENCH_PROFILE; pprof maps a process to the base URL of
	// its profiler (nats-server's prof_port, a service's PPROF_ADDR).
	profile string
	pprof   map[string]string
}

func newStack(t *testing.T, s *suite) *stack {
	t.Helper()
	st := &stack{t: t, Redis: redistest.Start(t), profile: s.profile, pprof: map[string]string{}}
	var profPort int
	if st.profile != "" {
		addr := harness.FreeAddr(t)
		profPort = harness.Port(t, addr)
		st.pprof["nats-server"] = "http://" + addr
	}
	st.NATS = startNATS(t, s.natsMemLimit, profPort)
	st.NC, st.JS = harness.Connect(t, st.NATS.URL)

	var varz struct {
		Version string `json:"version"`
	}
	getJSON(t, st.NATS.Monitor+"/varz", &varz)
	info, err := st.Redis.Client(t).Info(context.Background(), "server").Result()
	require.NoError(t, err)
	redisPID, err := strconv.Atoi(infoField(info, "process_id"))
	require.NoError(t, err, "redis-server process_id")
	s.setVersions(varz.Version, infoField(info, "redis_version"))

	st.Procs = append(st.Procs,
		Proc{Name: "nats-server", PID: st.NATS.Cmd.Process.Pid},
		Proc{Name: "redis-server", PID: redisPID})
	return st
}

// startNATS runs nats-server -js as harness.StartNATSServer does, with
// GOMEMLIMIT=memLimit in its environment (none when "") as the shipped
// deployments set it, and its profiler on profPort when not 0.
func startNATS(t *testing.T, memLimit string, profPort int) *harness.NATSServer {
	t.Helper()
	port, monitor := harness.Port(t, harness.FreeAddr(t)), harness.Port(t, harness.FreeAddr(t))
	name := fmt.Sprintf("bench-%d", port)
	args := []string{"-js", "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-m", strconv.Itoa(monitor), "-sd", t.TempDir(), "--name", name}
	if profPort != 0 {
		args = append(args, "--profile", strconv.Itoa(profPort))
	}
	var env map[string]string
	if memLimit != "" {
		env = map[string]string{"GOMEMLIMIT": memLimit}
	}
	n := &harness.NATSServer{
		Process: harness.StartProcess(t, harness.Build(t, "github.com/nats-io/nats-server/v2"), env, args...),
		URL:     fmt.Sprintf("nats://127.0.0.1:%d", port), Monitor: fmt.Sprintf("http://127.0.0.1:%d", monitor), Name: name,
	}
	n.WaitHTTP(t, n.Monitor+"/healthz?js-enabled-only=true", time.Minute)
	return n
}

// downstreamDurable is the downstream process's consumer on SIGNALS.
const downstreamDurable = "downstream"

// startDownstream runs test/bench/downstream, the user's application reading
// every signal through its own durable consumer on SIGNALS and acking each;
// it is measured apart, as the upstream is. The stream need not exist yet.
func (st *stack) startDownstream() *harness.Process {
	t := st.t
	t.Helper()
	bin := harness.Build(t, "github.com/pollgrid/pollgrid/test/bench/downstream")
	p := harness.StartProcess(t, bin, nil, "-nats", st.NATS.URL, "-stream", bus.SignalsStream, "-durable", downstreamDurable)
	waitFor(t, 3*time.Minute, "the downstream consumer ready", func() bool {
		return strings.Contains(p.Stdout.String(), "downstream ready")
	})
	st.Procs = append(st.Procs, Proc{Name: "downstream", PID: p.Cmd.Process.Pid, Apart: true})
	return p
}

// downstreamState is how far the downstream consumer has got: the signals
// it acknowledged (its ack floor; acks arrive in order from one process,
// so the floor is what it acked) and those stored but not yet acked.
func (st *stack) downstreamState() (acked, behind uint64) {
	st.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := st.JS.Consumer(ctx, bus.SignalsStream, downstreamDurable)
	require.NoError(st.t, err)
	info, err := c.Info(ctx)
	require.NoError(st.t, err)
	return info.AckFloor.Consumer, info.NumPending + uint64(info.NumAckPending)
}

func infoField(info, name string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// redisCalls counts what redis-server ran (INFO commandstats): Scripts the
// EVALSHA and EVAL calls, Commands every other command, those a script
// runs included, the suite's own (INFO, CONFIG, CLIENT, HELLO, PING) left
// out.
type redisCalls struct{ Scripts, Commands uint64 }

func (st *stack) redisCalls(t *testing.T) redisCalls {
	t.Helper()
	info, err := st.Redis.Client(t).Info(context.Background(), "commandstats").Result()
	require.NoError(t, err)
	var c redisCalls
	for line := range strings.Lines(info) {
		name, rest, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "cmdstat_"), ":calls=")
		if !ok {
			continue
		}
		calls, err := strconv.ParseUint(rest[:strings.IndexByte(rest+",", ',')], 10, 64)
		require.NoError(t, err, "INFO commandstats: %s", line)
		switch strings.SplitN(name, "|", 2)[0] {
		case "evalsha", "eval":
			c.Scripts += calls
		case "info", "config", "client", "hello", "ping":
		default:
			c.Commands += calls
		}
	}
	return c
}

// service is one pollgrid service binary running.
type service struct {
	*harness.Process
	Name string
	// HTTP is the base URL of /healthz, /readyz, /metrics.
	HTTP string
	Env  map[string]string
}

// startService runs the binary of svc (scheduler, worker, aggregator) as
// name, pointed at this stack's servers, with LOG_LEVEL=warn, no trace
// exporter, loopback upstreams allowed (UPSTREAM_ALLOW: the bench's
// upstreams run on this machine) and env on top; it waits for /readyz
// unless wait is false.
func (st *stack) startService(name, svc string, env map[string]string, wait bool) *service {
	t := st.t
	t.Helper()
	addr := harness.FreeAddr(t)
	full := map[string]string{
		"NATS_URL": st.NATS.URL, "REDIS_URL": st.Redis.URL(), "HTTP_ADDR": addr, "LOG_LEVEL": "warn",
		"UPSTREAM_ALLOW": harness.LoopbackAllow,
	}
	for k, v := range env {
		full[k] = v
	}
	if st.profile != "" {
		full["PPROF_ADDR"] = harness.FreeAddr(t)
		st.pprof[name] = "http://" + full["PPROF_ADDR"]
	}
	bin := harness.Build(t, "github.com/pollgrid/pollgrid/services/"+svc)
	sp := &service{Process: harness.StartProcess(t, bin, full), Name: name, HTTP: "http://" + addr, Env: full}
	if wait {
		sp.WaitHTTP(t, sp.HTTP+"/readyz", 3*time.Minute)
	}
	st.Procs = append(st.Procs, Proc{Name: name, PID: sp.Cmd.Process.Pid})
	return sp
}

// profileCPU takes a CPU profile of every process with a profiler over the
// next d, into BENCH_PROFILE as <scenario>-<process>-<time>.pprof; the func
// it returns waits for them.
func (st *stack) profileCPU(scenario string, d time.Duration) (wait func()) {
	var wg sync.WaitGroup
	stamp := time.Now().UTC().Format("150405")
	for name, base := range st.pprof {
		wg.Go(func() {
			url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, int(d.Seconds()))
			resp, err := http.Get(url)
			if err != nil {
				st.t.Errorf("CPU profile of %s: %v", name, err)
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != http.StatusOK {
				st.t.Errorf("CPU profile of %s: %s: %v", name, resp.Status, err)
				return
			}
			path := filepath.Join(st.profile, fmt.Sprintf("%s-%s-%s.pprof", scenario, name, stamp))
			if err := os.WriteFile(path, body, 0o644); err != nil {
				st.t.Errorf("CPU profile of %s: %v", name, err)
				return
			}
			st.t.Logf("CPU profile of %s over the window: go tool pprof -top %s", name, path)
		})
	}
	return wg.Wait
}

// metrics scrapes the service's /metrics.
func (sp *service) metrics(t *testing.T) Metrics {
	t.Helper()
	resp, err := httpClient.Get(sp.HTTP + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	m, err := ParseMetrics(resp.Body)
	require.NoError(t, err)
	return m
}

// upstream is the bench upstream process.
type upstream struct {
	*harness.Process
	URL string
}

// startUpstream runs test/bench/upstream with args; it is measured apart.
func (st *stack) startUpstream(args ...string) *upstream {
	t := st.t
	t.Helper()
	addr := harness.FreeAddr(t)
	bin := harness.Build(t, "github.com/pollgrid/pollgrid/test/bench/upstream")
	u := &upstream{Process: harness.StartProcess(t, bin, nil, append([]string{"-addr", addr}, args...)...), URL: "http://" + addr}
	u.WaitHTTP(t, u.URL+"/stats", time.Minute)
	st.Procs = append(st.Procs, Proc{Name: "upstream", PID: u.Cmd.Process.Pid, Apart: true})
	return u
}

func (u *upstream) stats(t *testing.T) UpstreamStats {
	var s UpstreamStats
	getJSON(t, u.URL+"/stats", &s)
	return s
}

func (u *upstream) polls(t *testing.T, since time.Time) UpstreamPolls {
	var p UpstreamPolls
	getJSON(t, u.URL+"/polls?since="+strconv.FormatInt(since.UnixMilli(), 10), &p)
	return p
}

func (u *upstream) cuts(t *testing.T, since time.Time) []UpstreamCut {
	var c []UpstreamCut
	getJSON(t, u.URL+"/cuts?since="+strconv.FormatInt(since.UnixNano(), 10), &c)
	return c
}

func (u *upstream) versions(t *testing.T) UpstreamVersions {
	var v UpstreamVersions
	getJSON(t, u.URL+"/versions", &v)
	return v
}

var httpClient = &http.Client{Timeout: time.Minute}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := httpClient.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET %s", url)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(v), "GET %s", url)
}

// streamMsgs is the number of messages stored in a stream; 0 when the
// stream does not exist yet.
func (st *stack) streamMsgs(name string) uint64 { return st.streamState(name).Msgs }

// streamState is a stream's state; the zero state when the stream does not
// exist yet.
func (st *stack) streamState(name string) jetstream.StreamState {
	st.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := st.JS.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return jetstream.StreamState{}
	}
	require.NoError(st.t, err)
	info, err := s.Info(ctx)
	require.NoError(st.t, err)
	return info.State
}

// waitFor polls cond every 100 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); ; time.Sleep(100 * time.Millisecond) {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", d, what)
		}
	}
}

// waitStream waits until the stream exists (a service creates it).
func (st *stack) waitStream(name string, d time.Duration) jetstream.Stream {
	t := st.t
	t.Helper()
	var s jetstream.Stream
	waitFor(t, d, "stream "+name, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		s, err = st.JS.Stream(ctx, name)
		return err == nil
	})
	return s
}

// ensureStreams creates pollgrid's streams as the services would (for the
// raw loop, which publishes to the same SIGNALS stream).
func (st *stack) ensureStreams() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(st.t, bus.EnsureStreams(ctx, st.JS, bus.StreamOptions{}))
}

// connectorsFile writes n http-json connectors c0..c<n-1>, each polling
// <upstream>/items/<i> every interval, with extra fields (such as
// "timeout") added to each.
func connectorsFile(t *testing.T, n int, interval time.Duration, upstreamURL string, extra map[string]any) string {
	t.Helper()
	type entry map[string]any
	list := make([]entry, n)
	for i := range list {
		e := entry{
			"name": "c" + strconv.Itoa(i), "type": "http-json", "interval": Dur(interval),
			"config": map[string]string{
				"url": upstreamURL + "/items/" + strconv.Itoa(i), "items": ".items", "id": ".id", "version": ".version",
			},
		}
		for k, v := range extra {
			e[k] = v
		}
		list[i] = e
	}
	data, err := json.Marshal(map[string]any{"connectors": list})
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), fmt.Sprintf("connectors-%d.json", n))
	require.NoError(t, os.WriteFile(path, data, 0o600))
	return path
}

// connectorIndex is i of a connector named c<i>; -1 for another name.
func connectorIndex(name string) int {
	i, err := strconv.Atoi(strings.TrimPrefix(name, "c"))
	if err != nil || !strings.HasPrefix(name, "c") {
		return -1
	}
	return i
}
