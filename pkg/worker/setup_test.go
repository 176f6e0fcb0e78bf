package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/catalog"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/natstest"
	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/pkg/store"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// fixture is a worker over a real redis-server and an embedded JetStream,
// whose catalog defines one connector, "feed" of type "fake", whose polls
// run the fixture's pollFunc.
type fixture struct {
	w     *Worker
	st    *store.Store
	rdb   *redis.Client
	redis *redistest.Server
	js    jetstream.JetStream
	cat   *catalog.Catalog
	types *connector.Registry

	mu    sync.Mutex
	poll  func(ctx context.Context, st connector.State) (connector.Result, error)
	polls int
	// built lists the configs connectors were built from, and polledWith
	// the config of the connector each poll ran, in order.
	built, polledWith []string
}

const (
	feedType = "fake"
	// unbuildableType passes its checks and fails to build: its checks
	// and its constructor disagree.
	unbuildableType = "unbuildable"
)

func feed() config.Connector {
	return config.Connector{Name: "feed", Type: feedType, Enabled: true, Interval: time.Minute, Timeout: 10 * time.Second,
		Retries: config.Retries{Max: 0, Backoff: time.Second}, LeaseTTL: 30 * time.Second, SeenCap: 1000, Config: json.RawMessage(`{}`)}
}

func newFixture(t testing.TB, opts Options, connectors ...config.Connector) *fixture {
	t.Helper()
	if connectors == nil {
		connectors = []config.Connector{feed()}
	}
	fx := &fixture{redis: redistest.Start(t)}
	fx.rdb = fx.redis.Client(t)
	fx.st = store.New(fx.rdb, store.Options{})
	fx.js = jetStream(t)
	fx.poll = func(context.Context, connector.State) (connector.Result, error) { return connector.Result{}, nil }
	fx.types = connector.NewRegistry()
	fx.types.Register(feedType, func(raw json.RawMessage, deps connector.Deps) (connector.Connector, error) {
		if deps.HTTP == nil { // checked, not built
			return pollFunc(fx.run), nil
		}
		fx.mu.Lock()
		fx.built = append(fx.built, string(raw))
		fx.mu.Unlock()
		return pollFunc(func(ctx context.Context, st connector.State) (connector.Result, error) {
			fx.mu.Lock()
			fx.polledWith = append(fx.polledWith, string(raw))
			fx.mu.Unlock()
			return fx.run(ctx, st)
		}), nil
	})
	fx.types.Register(unbuildableType, func(_ json.RawMessage, deps connector.Deps) (connector.Connector, error) {
		if deps.HTTP == nil {
			return pollFunc(fx.run), nil
		}
		return nil, errors.New("the constructor refuses what the checks passed")
	})
	var err error
	fx.cat, err = catalog.Open(context.Background(), fx.js, catalog.Options{})
	require.NoError(t, err)
	fx.define(t, connectors...)
	w, err := New(fx.js, fx.st, fx.types, fx.cat, opts)
	require.NoError(t, err)
	fx.w = w
	return fx
}

// define writes connectors, and the budgets they name, to the catalog as
// a connectors file defines them (pollctl apply), and returns their
// revisions by name.
func (fx *fixture) define(t testing.TB, connectors ...config.Connector) map[string]uint64 {
	t.Helper()
	file := map[string]any{}
	var list []any
	budgets := map[string]any{}
	for _, c := range connectors {
		list = append(list, definition(c))
		if b := c.Budget; b.Name != "" {
			budgets[b.Name] = map[string]any{"limit": b.Limit, "per": b.Per.String(), "burst": b.Burst}
		}
	}
	file["connectors"] = list
	if len(budgets) > 0 {
		file["budgets"] = budgets
	}
	data, err := json.Marshal(file)
	require.NoError(t, err)
	defs, err := config.ParseDefinitions("connectors.json", data, fx.types)
	require.NoError(t, err)
	ctx := context.Background()
	_, err = fx.cat.Apply(ctx, defs, catalog.ApplyOptions{})
	require.NoError(t, err)
	revisions := map[string]uint64{}
	for _, c := range connectors {
		e, err := fx.cat.Get(ctx, catalog.Connector(c.Name))
		require.NoError(t, err)
		revisions[c.Name] = e.Revision
	}
	return revisions
}

// definition is c as its user writes it.
func definition(c config.Connector) map[string]any {
	d := map[string]any{
		"name": c.Name, "type": c.Type, "enabled": c.Enabled,
		"interval": c.Interval.String(), "timeout": c.Timeout.String(), "lease_ttl": c.LeaseTTL.String(),
		"retries":  map[string]any{"max": c.Retries.Max, "backoff": c.Retries.Backoff.String()},
		"seen_cap": c.SeenCap,
		"config":   c.Config,
	}
	if c.Budget.Name != "" {
		d["budget"] = c.Budget.Name
	}
	if c.Adaptive.On() {
		d["adaptive"] = map[string]any{"min": c.Adaptive.Min.String(), "max": c.Adaptive.Max.String()}
	}
	return d
}

// jetStream starts an embedded NATS server with JetStream on a random port
// and creates pollgrid's streams in memory.
func jetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	_, js := natstest.JetStream(t)
	require.NoError(t, bus.EnsureStreams(context.Background(), js, bus.StreamOptions{Memory: true}))
	return js
}

type pollFunc func(ctx context.Context, st connector.State) (connector.Result, error)

func (f pollFunc) Poll(ctx context.Context, st connector.State) (connector.Result, error) {
	return f(ctx, st)
}

func (fx *fixture) run(ctx context.Context, st connector.State) (connector.Result, error) {
	fx.mu.Lock()
	fx.polls++
	poll := fx.poll
	fx.mu.Unlock()
	return poll(ctx, st)
}

func (fx *fixture) onPoll(f func(ctx context.Context, st connector.State) (connector.Result, error)) {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	fx.poll = f
}

// connectorPolls counts the times the connector was asked to poll.
func (fx *fixture) connectorPolls() int {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	return fx.polls
}

// reports returns the reports queued for the aggregator.
func (fx *fixture) reports() []*pollgridv1.PollReport {
	fx.w.reports.mu.Lock()
	defer fx.w.reports.mu.Unlock()
	return append([]*pollgridv1.PollReport(nil), fx.w.reports.pending...)
}

// onlyReport returns the one report queued.
func (fx *fixture) onlyReport(t *testing.T) *pollgridv1.PollReport {
	t.Helper()
	reports := fx.reports()
	require.Len(t, reports, 1)
	return reports[0]
}

// state reads the connector's state as Redis holds it.
func (fx *fixture) state(t *testing.T, name string) store.State {
	t.Helper()
	st, err := fx.st.State(context.Background(), name)
	require.NoError(t, err)
	return st
}

// commitState writes a connector's state as an operator's write would,
// under a lease of its own.
func (fx *fixture) commitState(t *testing.T, name string, st store.State) {
	t.Helper()
	ctx := context.Background()
	lease, _, err := fx.st.Acquire(ctx, name, "test", time.Minute, store.ClaimAdmin)
	require.NoError(t, err)
	require.NoError(t, fx.st.Commit(ctx, lease, store.Commit{State: st}))
}

// answers is a tick's side of the route: it records how the worker
// answered JetStream, as jetstream.Msg would send it.
type answers struct {
	mu         sync.Mutex
	got        []string
	inProgress int
	ackErr     error
}

func (a *answers) record(s string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got = append(a.got, s)
}

func (a *answers) Ack() error                         { a.record("ack"); return a.ackErr }
func (a *answers) Nak() error                         { a.record("nak"); return nil }
func (a *answers) NakWithDelay(d time.Duration) error { a.record(fmt.Sprintf("nak %s", d)); return nil }
func (a *answers) Term() error                        { a.record("term"); return nil }
func (a *answers) InProgress() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.inProgress++
	return nil
}

func (a *answers) list() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.got...)
}

func (a *answers) progressed() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.inProgress
}

// tickOf is a first delivery of a tick for c, planned from no known
// revision.
func tickOf(c config.Connector) tick {
	return tick{Tick: &pollgridv1.Tick{Connector: c.Name, ConnectorType: c.Type}, deliveries: 1}
}

// builtWith returns the configs connectors were built from, and those
// each poll ran with.
func (fx *fixture) builtWith() (built, polled []string) {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	return append([]string(nil), fx.built...), append([]string(nil), fx.polledWith...)
}
