package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/catalog"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/leader"
	"github.com/pollgrid/pollgrid/pkg/natstest"
	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/pkg/store"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// inEffect bounds how soon a change of the catalog is in the schedules in
// these tests: loose, for a loaded machine; the goal (1 s) is measured by
// make bench (BENCH=catalog), not asserted here.
const inEffect = 10 * time.Second

// fakeTypes knows the connector types "fake" and "other", any config.
type fakeTypes struct{}

func (fakeTypes) Known(typeName string) bool             { return typeName == "fake" || typeName == "other" }
func (fakeTypes) Types() []string                        { return []string{"fake", "other"} }
func (fakeTypes) Validate(string, json.RawMessage) error { return nil }
func (fakeTypes) String() string                         { return "fake, other" }

var _ config.TypeChecker = fakeTypes{}

// fixture is a scheduler over an embedded JetStream and a real redis-server,
// following a catalog the test applies definitions to.
type fixture struct {
	nc    *nats.Conn
	js    *countingJS
	cat   *catalog.Catalog
	st    *store.Store
	index *catalog.Index
	s     *Scheduler
	reg   *prometheus.Registry
	ctx   context.Context
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	nc, js := natstest.JetStream(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	require.NoError(t, bus.EnsureStreams(ctx, js, bus.StreamOptions{Memory: true}))
	cat, err := catalog.Open(ctx, js, catalog.Options{})
	require.NoError(t, err)
	rdb := redistest.Start(t).Client(t)
	st := store.New(rdb, store.Options{})
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	fx := &fixture{nc: nc, js: &countingJS{JetStream: js}, cat: cat, st: st, index: catalog.NewIndex(fakeTypes{}, log),
		reg: prometheus.NewRegistry(), ctx: ctx}
	fx.s = New(fx.js, st, leader.New(rdb, st.Keys()), fx.index, Options{
		ID: "test", LeaderTTL: 3 * time.Second, Resync: time.Hour, Logger: log, Registerer: fx.reg,
	})
	return fx
}

// run starts the scheduler, and with follow the index following the
// catalog; it returns once the scheduler leads.
func (fx *fixture) run(t testing.TB, follow bool) {
	t.Helper()
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(fx.ctx)
	t.Cleanup(func() { cancel(); <-done })
	go func() { defer close(done); _ = fx.s.Run(ctx) }()
	if follow {
		fx.follow(t)
	}
	require.Eventually(t, fx.s.Leader, 5*time.Second, 10*time.Millisecond, "the scheduler never led")
}

func (fx *fixture) follow(t testing.TB) {
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(fx.ctx)
	t.Cleanup(func() { cancel(); <-done })
	go func() { defer close(done); fx.cat.Follow(ctx, fx.index) }()
}

// apply writes a whole connectors file to the catalog, as pollctl apply
// --prune does.
func (fx *fixture) apply(t testing.TB, file string) catalog.Diff {
	t.Helper()
	defs, err := config.ParseDefinitions("test.json", []byte(file), fakeTypes{})
	require.NoError(t, err)
	diff, err := fx.cat.Apply(fx.ctx, defs, catalog.ApplyOptions{Prune: true})
	require.NoError(t, err)
	return diff
}

// revision is a connector definition's latest revision in the catalog.
func (fx *fixture) revision(t *testing.T, name string) uint64 {
	t.Helper()
	e, err := fx.cat.Get(fx.ctx, catalog.Connector(name))
	require.NoError(t, err)
	return e.Revision
}

// installed is what TICKS holds on a subject: a schedule's definition (its
// spec and tick) or a pending tick; ok false when nothing.
type installed struct {
	spec string
	tick *pollgridv1.Tick
}

func (fx *fixture) get(t *testing.T, subject string) (installed, bool) {
	t.Helper()
	stream, err := fx.js.Stream(fx.ctx, bus.TicksStream)
	require.NoError(t, err)
	m, err := stream.GetLastMsgForSubject(fx.ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return installed{}, false
	}
	require.NoError(t, err)
	tick, err := bus.DecodeTick(m.Data)
	require.NoError(t, err)
	return installed{spec: m.Header.Get(jetstream.ScheduleHeader), tick: tick}, true
}

func (fx *fixture) schedule(t *testing.T, typeName, name string) (installed, bool) {
	t.Helper()
	return fx.get(t, bus.ScheduleSubject(typeName, name))
}

func (fx *fixture) pending(t *testing.T, typeName, name string) (installed, bool) {
	t.Helper()
	return fx.get(t, bus.TickSubject(typeName, name))
}

// subjects counts the subjects TICKS holds messages on under filter.
func (fx *fixture) subjects(t testing.TB, filter string) int {
	t.Helper()
	stream, err := fx.js.Stream(fx.ctx, bus.TicksStream)
	require.NoError(t, err)
	info, err := stream.Info(fx.ctx, jetstream.WithSubjectFilter(filter))
	require.NoError(t, err)
	return len(info.State.Subjects)
}

func (fx *fixture) counter(name string, labels ...string) float64 {
	switch name {
	case "install", "remove":
		return testutil.ToFloat64(fx.s.metrics.changes.WithLabelValues(name))
	case "first_ticks":
		return testutil.ToFloat64(fx.s.metrics.firstTicks)
	case "first_waiting":
		return testutil.ToFloat64(fx.s.metrics.firstWaiting)
	case "scheduled":
		return testutil.ToFloat64(fx.s.metrics.scheduled)
	}
	panic("no counter " + name + strings.Join(labels, ","))
}

// fullSyncs counts the full syncs done (pollgrid_scheduler_full_sync_seconds).
func (fx *fixture) fullSyncs(t *testing.T) uint64 {
	var m dto.Metric
	require.NoError(t, fx.s.metrics.fullSyncs.Write(&m))
	return m.GetHistogram().GetSampleCount()
}

// reads counts the scheduler's reads of TICKS by kind: "all" reads every
// schedule (a full sync), "some" reads those of the connectors named; kinds
// is their order.
type reads struct {
	all, some atomic.Int64
	mu        sync.Mutex
	kinds     []string
}

func (r *reads) add(kind string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.kinds = append(r.kinds, kind)
}

func (r *reads) order() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.kinds, " ")
}

func (fx *fixture) watchReads(t *testing.T) *reads {
	t.Helper()
	r := &reads{}
	sub, err := fx.nc.Subscribe("$JS.API.DIRECT.GET."+bus.TicksStream, func(m *nats.Msg) {
		switch {
		case strings.Contains(string(m.Data), `"multi_last"`):
			r.some.Add(1)
			r.add("some")
		case strings.Contains(string(m.Data), `"next_by_subj"`):
			r.all.Add(1)
			r.add("all")
		}
	})
	require.NoError(t, err)
	require.NoError(t, fx.nc.Flush())
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return r
}

// countingJS counts the scheduler's publishes.
type countingJS struct {
	jetstream.JetStream
	publishes atomic.Int64
}

func (c *countingJS) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	c.publishes.Add(1)
	return c.JetStream.PublishMsgAsync(m, opts...)
}
