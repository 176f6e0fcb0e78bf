package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/catalog"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connector"
	httpjson "github.com/pollgrid/pollgrid/pkg/connectors/http-json"
	"github.com/pollgrid/pollgrid/pkg/egress"
	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/pkg/store"
	"github.com/pollgrid/pollgrid/pkg/upstream"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// tickBench is a worker over a real redis-server and an embedded JetStream
// polling http-json connectors against an httptest upstream whose one item
// changes on every request: the e2e benchmark's poll (test/bench), in one
// process. trips counts the worker's Redis round trips.
type tickBench struct {
	w          *Worker
	rdb        *redis.Client
	wire       *wireBytes
	trips      *redistest.RoundTrips
	connectors []config.Connector
}

// newTickBench defines n http-json connectors, each its own URL of one
// upstream answering a ~2 KB body holding one item whose version is the
// request's number.
func newTickBench(tb testing.TB, n int) *tickBench {
	tb.Helper()
	var requests atomic.Int64
	// Written from parts made once: the upstream stands in for the
	// internet, and its own cost should stay small in cpu-ns/op.
	head, tail := []byte(`{"items":[{"id":"item","version":"`), []byte(`","pad":"`+strings.Repeat("x", 1900)+`"}]}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		body := append(strconv.AppendInt(append(make([]byte, 0, 2048), head...), requests.Add(1), 10), tail...)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	tb.Cleanup(srv.Close)

	srvRedis := redistest.Start(tb)
	wire := &wireBytes{}
	rdb := redis.NewClient(&redis.Options{Addr: srvRedis.Addr(), Dialer: wire.dial})
	tb.Cleanup(func() { _ = rdb.Close() })
	trips := &redistest.RoundTrips{}
	rdb.AddHook(trips)
	st := store.New(rdb, store.Options{})
	js := jetStream(tb)
	types := connector.NewRegistry()
	types.Register(httpjson.TypeName, httpjson.New)
	cat, err := catalog.Open(context.Background(), js, catalog.Options{})
	require.NoError(tb, err)
	connectors := make([]config.Connector, n)
	list := make([]any, n)
	for i := range connectors {
		cfg, err := json.Marshal(map[string]any{"url": fmt.Sprintf("%s/items/%d", srv.URL, i), "items": ".items[]",
			"id": ".id", "version": ".version", "data": "{id, version}"})
		require.NoError(tb, err)
		connectors[i] = config.Connector{Name: fmt.Sprintf("bench-%d", i), Type: httpjson.TypeName, Enabled: true,
			Interval: 10 * time.Second, Timeout: 5 * time.Second, Retries: config.Retries{Max: 0, Backoff: time.Second},
			LeaseTTL: 2 * time.Second, SeenCap: 1000, Config: cfg}
		list[i] = definition(connectors[i])
	}
	data, err := json.Marshal(map[string]any{"connectors": list})
	require.NoError(tb, err)
	defs, err := config.ParseDefinitions("connectors.json", data, types)
	require.NoError(tb, err)
	_, err = cat.Apply(context.Background(), defs, catalog.ApplyOptions{})
	require.NoError(tb, err)
	w, err := New(js, st, types, cat, Options{ID: "bench-worker",
		HTTP: upstream.NewClient(upstream.Options{Allow: egress.Loopback(), IdleConnsPerHost: 64})})
	require.NoError(tb, err)
	return &tickBench{w: w, rdb: rdb, wire: wire, trips: trips, connectors: connectors}
}

// tick runs one tick of connector i to the end, as a worker's poller
// does, and fails unless it published one signal.
func (tb *tickBench) tick(t testing.TB, i int) {
	ack := &answers{}
	tb.w.run(context.Background(), tickOf(tb.connectors[i]), ack)
	if got := ack.list(); len(got) != 1 || got[0] != "ack" {
		t.Fatalf("tick of %s answered %v", tb.connectors[i].Name, got)
	}
	tb.w.reports.mu.Lock()
	last := tb.w.reports.pending[len(tb.w.reports.pending)-1]
	tb.w.reports.pending = tb.w.reports.pending[:0]
	tb.w.reports.mu.Unlock()
	if last.GetOutcome() != pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS || last.GetItemsPublished() != 1 {
		t.Fatalf("poll of %s: %v, %d published (%s)", tb.connectors[i].Name, last.GetOutcome(), last.GetItemsPublished(), last.GetError())
	}
}

// BenchmarkTick measures a tick's whole route in one worker: admit, lease
// and state, an http-json poll of a local upstream (~2 KB, one item that
// changes on every request), one signal published to JetStream and
// acknowledged, the commit, the ack and the report, against a real
// redis-server and an embedded nats-server in the same process.
// cpu-ns/op is the process's CPU (user and system: the benchmark, the
// upstream and nats-server all count) per tick; redis-cpu-ns/op
// redis-server's (INFO cpu), redis-script-ns/op its time in the scripts
// alone (INFO commandstats); redis-rt/op the worker's Redis round trips
// per tick, and redis-bytes/op the bytes they sent and received. 16 connectors take their ticks in turn,
// every one on this worker, as a connector that stays on one worker does.
func BenchmarkTick(b *testing.B) {
	const connectors = 16
	tb := newTickBench(b, connectors)
	for i := range connectors { // warm: each connector read and built, its first poll done
		tb.tick(b, i)
	}
	redisCPU, scripts := redistest.CPU(b, tb.rdb), redistest.ScriptTime(b, tb.rdb)
	trips, wire := tb.trips.Count(), tb.wire.n.Load()
	cpu := processCPU()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		tb.tick(b, i%connectors)
	}
	b.StopTimer()
	b.ReportMetric(float64((processCPU()-cpu).Nanoseconds())/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(tb.trips.Count()-trips)/float64(b.N), "redis-rt/op")
	b.ReportMetric(float64(tb.wire.n.Load()-wire)/float64(b.N), "redis-bytes/op")
	b.ReportMetric(float64((redistest.CPU(b, tb.rdb)-redisCPU).Nanoseconds())/float64(b.N), "redis-cpu-ns/op")
	b.ReportMetric(float64((redistest.ScriptTime(b, tb.rdb)-scripts).Nanoseconds())/float64(b.N), "redis-script-ns/op")
}

// processCPU is the CPU this process used so far, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// wireBytes counts the bytes a Redis client's connections send and
// receive.
type wireBytes struct{ n atomic.Int64 }

func (w *wireBytes) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &countedConn{Conn: c, n: &w.n}, nil
}

type countedConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *countedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}
