package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/services/aggregator/aggregatord"
	"github.com/pollgrid/pollgrid/services/scheduler/schedulerd"
	"github.com/pollgrid/pollgrid/services/worker/workerd"
	"github.com/pollgrid/pollgrid/test/harness"
)

// Guarantee 5: a connector slower than its interval is polled back to back,
// never in parallel, and the ticks that found it busy are counted.
func TestSlowConnectorIsNeverPolledInParallel(t *testing.T) {
	var inFlight, maxInFlight, requests atomic.Int64
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := maxInFlight.Load()
			if n <= m || maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		select { // hold the request past the client's timeout
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(slow.Close)

	ns := harness.NATS(t)
	redis := redistest.Start(t)
	// Each poll makes 3 attempts of 900ms: ~2.7s for a 1s interval.
	file := harness.WriteFile(t, "connectors.json", `{"connectors": [{"name": "slow", "type": "weather-noaa",
		"interval": "1s", "timeout": "900ms", "retries": {"max": 2, "backoff": "10ms"},
		"config": {"area": "AZ", "user_agent": "(pollgrid e2e)", "base_url": "`+slow.URL+`"}}]}`)
	env := func() map[string]string {
		return map[string]string{"NATS_URL": ns.ClientURL(), "REDIS_URL": redis.URL(), "CONNECTORS_FILE": file,
			"LOG_LEVEL": "error", "WORKER_ACK_WAIT": "3s"}
	}
	var workers []string
	for i := 0; i < 3; i++ {
		workers = append(workers, harness.Start(t, workerd.Service, env()).HTTP)
	}
	harness.Start(t, schedulerd.Service, env())

	// NATS fires a tick every second; a fire replaces the tick whose poll
	// still runs, and that tick finds the lease held: it is counted, and
	// retried once the lease is free, so the polls run back to back.
	require.Eventually(t, func() bool {
		return requests.Load() >= 6 &&
			metricSum(t, `pollgrid_lease_contention_total{type="weather-noaa"}`, workers...) >= 1 &&
			metricSum(t, `pollgrid_ticks_missed_total{type="weather-noaa"}`, workers...) >= 1
	}, 30*time.Second, 100*time.Millisecond, "no busy tick or missed interval counted")
	assert.EqualValues(t, 1, maxInFlight.Load(), "never two polls of one connector at once")
}

// Guarantee 4: a worker killed mid-poll delays its connector by about the
// tick's ack wait or the lease TTL (2s each by default), not by a whole
// interval. make bench measures the delay; this checks the mechanism with
// the default settings.
func TestKilledWorkerDelaysConnectorBySeconds(t *testing.T) {
	body, err := os.ReadFile(fixture)
	require.NoError(t, err)
	var requests atomic.Int64
	firstArrived := make(chan struct{})
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1) == 1 {
			close(firstArrived)
			select { // the first poll hangs until its worker is killed
			case <-hold:
			case <-r.Context().Done():
			}
			return
		}
		w.Header().Set("Content-Type", "application/geo+json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(upstream.Close)

	ns := harness.NATS(t)
	redis := redistest.Start(t)
	// A long interval: without redelivery the next poll would come in 10 minutes.
	file := harness.WriteFile(t, "connectors.json", `{"connectors": [{"name": "victim", "type": "weather-noaa",
		"interval": "10m", "timeout": "60s", "retries": {"max": 0},
		"config": {"area": "AZ", "user_agent": "(pollgrid e2e)", "base_url": "`+upstream.URL+`"}}]}`)
	env := func(id string) map[string]string {
		return map[string]string{"NATS_URL": ns.ClientURL(), "REDIS_URL": redis.URL(), "CONNECTORS_FILE": file,
			"LOG_LEVEL": "warn", "WORKER_ID": id, "HTTP_ADDR": harness.FreeAddr(t), "UPSTREAM_ALLOW": harness.LoopbackAllow}
	}
	bin := harness.Build(t, "github.com/pollgrid/pollgrid/services/worker")
	doomed := harness.StartProcess(t, bin, env("doomed"))
	agg := harness.Start(t, aggregatord.Service, env("agg"))
	harness.Start(t, schedulerd.Service, env("sched"))

	select {
	case <-firstArrived:
	case <-time.After(30 * time.Second):
		t.Fatal("the first poll never reached the upstream")
	}
	require.NoError(t, doomed.Cmd.Process.Signal(syscall.SIGKILL))
	require.Eventually(t, doomed.Exited, 10*time.Second, 10*time.Millisecond, "the killed worker exited")
	killedAt := time.Now()
	harness.Start(t, workerd.Service, env("survivor"))

	s := &stack{aggregator: agg}
	m := successesAtLeast(t, s, "victim", 1)
	delay := time.Since(killedAt)
	assert.GreaterOrEqual(t, requests.Load(), int64(2))
	assert.Less(t, delay, 3*time.Minute, "well under the 10m interval")
	t.Logf("connector polled again %s after its worker was killed (default ack wait and lease TTL, 2s each); %+v", delay.Round(time.Millisecond), m)
}

// Guarantee 1 on NATS-fired ticks: a worker frozen mid-poll past its lease
// loses the connector to another worker; when it wakes up, its commit is
// fenced (the state stays the newer worker's), and the signals it publishes
// again are dropped as duplicates.
func TestFrozenWorkerIsFenced(t *testing.T) {
	body, err := os.ReadFile(fixture)
	require.NoError(t, err)
	var requests atomic.Int64
	firstArrived, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1) == 1 {
			close(firstArrived)
			select { // answered only once the worker that asked is frozen
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/geo+json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(upstream.Close)

	ns := harness.NATS(t)
	redis := redistest.Start(t)
	file := harness.WriteFile(t, "connectors.json", `{"connectors": [{"name": "contested", "type": "weather-noaa",
		"interval": "10m", "timeout": "60s", "retries": {"max": 0},
		"config": {"area": "AZ", "user_agent": "(pollgrid e2e)", "base_url": "`+upstream.URL+`"}}]}`)
	env := func(id string) map[string]string {
		return map[string]string{"NATS_URL": ns.ClientURL(), "REDIS_URL": redis.URL(), "CONNECTORS_FILE": file,
			"LOG_LEVEL": "warn", "WORKER_ID": id, "HTTP_ADDR": harness.FreeAddr(t), "UPSTREAM_ALLOW": harness.LoopbackAllow}
	}
	frozenEnv := env("frozen")
	frozen := harness.StartProcess(t, harness.Build(t, "github.com/pollgrid/pollgrid/services/worker"), frozenEnv)
	frozenHTTP := "http://" + frozenEnv["HTTP_ADDR"]
	frozen.WaitHTTP(t, frozenHTTP+"/readyz", 30*time.Second)
	agg := harness.Start(t, aggregatord.Service, env("agg"))
	harness.Start(t, schedulerd.Service, env("sched"))

	select {
	case <-firstArrived:
	case <-time.After(30 * time.Second):
		t.Fatal("the first poll never reached the upstream")
	}
	require.NoError(t, frozen.Cmd.Process.Signal(syscall.SIGSTOP))
	releaseOnce.Do(func() { close(release) }) // its answer waits in the socket
	harness.Start(t, workerd.Service, env("taker"))
	successesAtLeast(t, &stack{aggregator: agg}, "contested", 1) // the taker polled and committed
	rdb := redis.Client(t)
	stateKey := "pollgrid:{contested}:state"
	takerState, err := rdb.HGetAll(context.Background(), stateKey).Result()
	require.NoError(t, err)
	require.NotEmpty(t, takerState["last_success"])

	require.NoError(t, frozen.Cmd.Process.Signal(syscall.SIGCONT))
	require.Eventually(t, func() bool {
		return metricSum(t, `pollgrid_state_writes_fenced_total{type="weather-noaa"}`, frozenHTTP) == 1
	}, 30*time.Second, 50*time.Millisecond, "the woken worker's commit was not fenced")
	after, err := rdb.HGetAll(context.Background(), stateKey).Result()
	require.NoError(t, err)
	assert.Equal(t, takerState, after, "the state is still the taker's")

	_, js := harness.Connect(t, ns.ClientURL())
	st, err := js.Stream(context.Background(), bus.SignalsStream)
	require.NoError(t, err)
	info, err := st.Info(context.Background())
	require.NoError(t, err)
	assert.EqualValues(t, 2, info.State.Msgs, "the fixture's two alerts, once each")
}

// Redis restarted with no data: one service notices (its epoch changed) and
// says so once; every connector lost its seen versions, so it publishes its
// current items again as created, and JetStream drops them as duplicates:
// consumers of SIGNALS see nothing twice, and the workers count them.
func TestRedisDataLossIsNoticedAndAbsorbed(t *testing.T) {
	s := startStack(t)
	successesAtLeast(t, s, "noaa-az", 1)
	require.Eventually(t, func() bool { return signalsInStream(t, s) == 2 }, 30*time.Second, 50*time.Millisecond)
	services := []string{s.scheduler.HTTP, s.workers[0].HTTP, s.workers[1].HTTP, s.aggregator.HTTP}
	workers := []string{s.workers[0].HTTP, s.workers[1].HTTP}
	require.Zero(t, metricSum(t, "pollgrid_redis_data_loss_total", services...))

	require.NoError(t, s.redis.Client(t).FlushAll(context.Background()).Err())
	require.Eventually(t, func() bool {
		return metricSum(t, "pollgrid_redis_data_loss_total", services...) == 1 &&
			metricSum(t, `pollgrid_signals_duplicate_total{type="weather-noaa"}`, workers...) >= 2
	}, 45*time.Second, 100*time.Millisecond, "the loss was not reported, or the items did not come again")
	assert.EqualValues(t, 2, signalsInStream(t, s), "the re-published signals were dropped as duplicates")
	successesAtLeast(t, s, "noaa-az", 2)
	assert.Equal(t, 1.0, metricSum(t, "pollgrid_redis_data_loss_total", services...), "reported once")
}

// A connector whose polls keep killing their worker (here: five polls that
// began and never committed, as Redis records them) is not polled again at
// once: the poll fails, says why and backs off, and the connector recovers
// on a later tick.
func TestCrashLoopingConnectorBacksOff(t *testing.T) {
	body, err := os.ReadFile(fixture)
	require.NoError(t, err)
	ns := harness.NATS(t)
	redis := redistest.Start(t)
	require.NoError(t, redis.Client(t).HSet(context.Background(), "pollgrid:{looping}:state", "attempts", 5).Err())
	upstream := harness.NewUpstream(t, body)
	file := harness.WriteFile(t, "connectors.json", connectorsJSON(upstream.URL, "looping"))
	env := func() map[string]string {
		return map[string]string{"NATS_URL": ns.ClientURL(), "REDIS_URL": redis.URL(), "CONNECTORS_FILE": file, "LOG_LEVEL": "error"}
	}
	s := &stack{aggregator: harness.Start(t, aggregatord.Service, env())}
	w := harness.Start(t, workerd.Service, env())
	harness.Start(t, schedulerd.Service, env())

	m := successesAtLeast(t, s, "looping", 1)
	assert.GreaterOrEqual(t, m.Failures, int64(1))
	assert.EqualValues(t, 1, metricSum(t, `pollgrid_crash_loops_total{type="weather-noaa"}`, w.HTTP))
	assert.Contains(t, m.LastError, "its last 5 polls began and never finished")
}
