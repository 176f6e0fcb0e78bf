package connectortest

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/egress"
	"github.com/pollgrid/pollgrid/pkg/poll"
	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/pkg/store"
	"github.com/pollgrid/pollgrid/pkg/upstream"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// Changes a signal can carry.
const (
	Created = bus.ChangeCreated
	Updated = bus.ChangeUpdated
)

// owner is the lease owner the harness polls as.
const owner = "connectortest"

// Harness runs one connector through the real universal poll (poll.Runner),
// with its state and seen versions in a real redis-server, as a worker does:
// Acquire the lease, Run, Commit. Signals go to a recording publisher.
type Harness struct {
	// Connector is the universal config every Poll runs with: name
	// "test-<type>", timeout 10s, lease TTL 30s and no retries, so that one
	// Poll calls the connector once. Change it before polling to test
	// timeouts or retries.
	Connector config.Connector
	// Store holds the connector's state and seen versions.
	Store *store.Store

	t         testing.TB
	conn      connector.Connector
	runner    *poll.Runner
	published *recorder
}

// New builds the connector with factory from configJSON, as a worker does
// (with the shared upstream client and a logger writing to the test log),
// and starts a redis-server for its state. A rejected config fails the test.
func New(t testing.TB, factory connector.Factory, typeName, configJSON string) *Harness {
	t.Helper()
	// The upstreams of a connector's tests are httptest servers on loopback,
	// which the outbound guard refuses unless told.
	client := upstream.NewClient(upstream.Options{Allow: egress.Loopback()})
	t.Cleanup(client.CloseIdleConnections)
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	conn, err := factory(json.RawMessage(configJSON), connector.Deps{HTTP: client, Logger: logger})
	if err != nil {
		t.Fatalf("connectortest: the %s factory rejected the config: %v\nconfig: %s", typeName, err, configJSON)
	}
	if conn == nil {
		t.Fatalf("connectortest: the %s factory returned neither a connector nor an error", typeName)
	}
	st := store.New(redistest.Start(t).Client(t), store.Options{})
	rec := &recorder{}
	return &Harness{
		Connector: config.Connector{
			Name:     "test-" + typeName,
			Type:     typeName,
			Enabled:  true,
			Interval: time.Minute,
			Timeout:  10 * time.Second,
			Retries:  config.Retries{Max: 0, Backoff: time.Second},
			LeaseTTL: 30 * time.Second,
			Config:   json.RawMessage(configJSON),
		},
		Store:     st,
		t:         t,
		conn:      conn,
		runner:    &poll.Runner{Publisher: rec, Seen: st},
		published: rec,
	}
}

// Poll is what one poll did, after its commit.
type Poll struct {
	// Signals published, in item order.
	Signals []Signal
	// Failed lists items the connector (or the universal poll) could not use.
	Failed []connector.ItemError
	// Err is the poll's error; nil when it succeeded.
	Err error
	// State is the connector's state as committed to Redis.
	State store.State
	// NotModified is true when the connector reported a 304.
	NotModified bool
}

// Signal is one published signal.
type Signal struct {
	ID, Version, Change string
	Data                json.RawMessage
}

// Poll polls once and commits like a worker: a failed poll records the
// failure and moves no cursor. It may be called from any goroutine; a
// harness problem (Redis) or a connector panic is reported with t.Error and
// as Poll.Err. Unlike a worker it polls even before State.NotBefore.
func (h *Harness) Poll(ctx context.Context) Poll {
	h.t.Helper()
	name := h.Connector.Name
	lease, prev, err := h.Store.Acquire(ctx, name, owner, h.Connector.LeaseTTL, store.ClaimTrigger)
	if err != nil {
		if ctx.Err() == nil {
			h.t.Errorf("connectortest: %v", err)
		}
		return Poll{Err: fmt.Errorf("connectortest: %w", err)}
	}
	// Commit even when ctx was cancelled, as the worker does.
	commitCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()

	before := h.published.count()
	out := h.runner.Run(ctx, h.Connector, h.conn, prev, nil)
	var panicked *poll.PanicError
	if errors.As(out.Err, &panicked) {
		// The worker survives a panic; a connector must not panic at all.
		h.t.Errorf("connectortest: %s panicked in Poll: %v\n%s", h.Connector.Type, panicked.Value, panicked.Stack)
		_ = h.Store.Release(commitCtx, lease)
		return Poll{Err: panicked, State: prev}
	}
	if err := h.Store.Commit(commitCtx, lease, out.Commit); err != nil {
		h.t.Errorf("connectortest: %v", err)
	}
	state, err := h.Store.State(commitCtx, name)
	if err != nil {
		h.t.Errorf("connectortest: %v", err)
	}
	p := Poll{Failed: out.Failed, Err: out.Err, State: state, NotModified: out.NotModified}
	for _, s := range h.published.since(before) {
		p.Signals = append(p.Signals, Signal{ID: s.GetItemId(), Version: s.GetVersion(), Change: s.GetChange(), Data: s.GetData()})
	}
	return p
}

// IDs lists the signals' item ids in publish order.
func (p Poll) IDs() []string {
	ids := make([]string, len(p.Signals))
	for i, s := range p.Signals {
		ids[i] = s.ID
	}
	return ids
}

// RequireOK stops the test unless the poll succeeded.
func (p Poll) RequireOK(t testing.TB) {
	t.Helper()
	if p.Err != nil {
		t.Fatalf("poll failed: %v%s", p.Err, describeFailed(p.Failed))
	}
}

// Want is an expected signal. An empty Version or Change is not checked.
type Want struct{ ID, Version, Change string }

// AssertSignals checks that the poll published exactly the wanted signals,
// in any order.
func (p Poll) AssertSignals(t testing.TB, want ...Want) bool {
	t.Helper()
	byID := make(map[string]Signal, len(p.Signals))
	unexpected := make([]Want, len(p.Signals))
	for i, s := range p.Signals {
		byID[s.ID] = s
		unexpected[i] = Want{ID: s.ID, Version: s.Version, Change: s.Change}
	}
	var missing []Want
	for _, w := range want {
		if s, ok := byID[w.ID]; ok {
			w.Version = cmp.Or(w.Version, s.Version)
			w.Change = cmp.Or(w.Change, s.Change)
		}
		if i := slices.Index(unexpected, w); i >= 0 {
			unexpected = slices.Delete(unexpected, i, i+1)
		} else {
			missing = append(missing, w)
		}
	}
	if len(missing) == 0 && len(unexpected) == 0 {
		return true
	}
	t.Errorf("signals differ (poll error: %v)\n  missing:    %s\n  unexpected: %s\n  published:  %s%s",
		p.Err, describeWants(missing), describeWants(unexpected), describeSignals(p.Signals), describeFailed(p.Failed))
	return false
}

func (w Want) String() string { return fmt.Sprintf("%s@%s (%s)", w.ID, w.Version, w.Change) }

func describeWants(ws []Want) string {
	if len(ws) == 0 {
		return "none"
	}
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = w.String()
	}
	return strings.Join(parts, ", ")
}

func describeSignals(signals []Signal) string {
	ws := make([]Want, len(signals))
	for i, s := range signals {
		ws[i] = Want{ID: s.ID, Version: s.Version, Change: s.Change}
	}
	return describeWants(ws)
}

// AssertNoSignals checks that the poll published nothing.
func (p Poll) AssertNoSignals(t testing.TB) bool {
	t.Helper()
	if len(p.Signals) == 0 {
		return true
	}
	t.Errorf("the poll published %d signal(s), want none: %s", len(p.Signals), describeSignals(p.Signals))
	return false
}

func describeFailed(failed []connector.ItemError) string {
	if len(failed) == 0 {
		return ""
	}
	lines := make([]string, len(failed))
	for i, f := range failed {
		lines[i] = fmt.Sprintf("\n  failed item %s: %v", f.ID, f.Err)
	}
	return strings.Join(lines, "")
}

// recorder is a publisher that acknowledges everything and keeps it.
type recorder struct {
	mu      sync.Mutex
	signals []*pollgridv1.Signal
}

func (r *recorder) PublishSignals(_ context.Context, signals []*pollgridv1.Signal) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.signals = append(r.signals, signals...)
	return 0, nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.signals)
}

func (r *recorder) since(n int) []*pollgridv1.Signal {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*pollgridv1.Signal(nil), r.signals[n:]...)
}
