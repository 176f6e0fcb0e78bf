package catalog_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/catalog"
	"github.com/pollgrid/pollgrid/pkg/natstest"
)

// alphaTypes knows one connector type, "alpha", whose config is anything.
type alphaTypes struct{}

func (alphaTypes) Known(typeName string) bool             { return typeName == "alpha" }
func (alphaTypes) Types() []string                        { return []string{"alpha"} }
func (alphaTypes) Validate(string, json.RawMessage) error { return nil }

// env is an embedded NATS with JetStream, the catalog on it, an index
// following it, and the catalog's verbs served.
type env struct {
	nc     *nats.Conn
	cat    *catalog.Catalog
	index  *catalog.Index
	client *admin.Client
}

func start(t *testing.T, serve bool) *env {
	t.Helper()
	nc, js := natstest.JetStream(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cat, err := catalog.Open(ctx, js, catalog.Options{})
	require.NoError(t, err)
	x := catalog.NewIndex(alphaTypes{}, nil)
	go cat.Follow(ctx, x)
	e := &env{nc: nc, cat: cat, index: x, client: admin.NewClient(nc, 10*time.Second)}
	if serve {
		e.serve(t, x)
	}
	return e
}

// serve serves the verbs planning from x.
func (e *env) serve(t *testing.T, x *catalog.Index) {
	t.Helper()
	srv, err := admin.NewServer(e.nc, admin.ServerConfig{Service: "scheduler", Instance: t.Name()})
	require.NoError(t, err)
	for verb, h := range catalog.Verbs(e.cat, x, alphaTypes{}) {
		require.NoError(t, srv.Handle(verb, h))
	}
	t.Cleanup(func() { _ = srv.Stop() })
}

// writes counts the messages of the catalog's stream: one per write.
func (e *env) writes(t *testing.T) uint64 {
	t.Helper()
	js, err := jetstream.New(e.nc)
	require.NoError(t, err)
	s, err := js.Stream(context.Background(), "KV_"+catalog.Bucket)
	require.NoError(t, err)
	return s.CachedInfo().State.LastSeq
}

func connector(name, interval string, extra ...string) json.RawMessage {
	more := ""
	for _, x := range extra {
		more += ", " + x
	}
	return json.RawMessage(fmt.Sprintf(`{"name": %q, "type": "alpha", "interval": %q, "config": {"token": "${TOKEN}"}%s}`, name, interval, more))
}

func budgets() map[string]json.RawMessage {
	return map[string]json.RawMessage{"gh": json.RawMessage(`{"limit": 60, "per": "1m"}`)}
}

func refs(kind string, names ...string) []admin.Ref {
	out := make([]admin.Ref, len(names))
	for i, n := range names {
		out[i] = admin.Ref{Kind: kind, Name: n}
	}
	return out
}

// apply creates, changes and leaves unchanged; applying the same again
// writes nothing; the value stays as written, its ${VAR} unresolved.
func TestApplyCreatesChangesAndLeavesUnchanged(t *testing.T) {
	e := start(t, true)
	ctx := context.Background()

	reply, err := e.client.Apply(ctx, admin.ApplyRequest{Budgets: budgets(), Connectors: []json.RawMessage{
		connector("a", "10s", `"budget": "gh"`), connector("b", "10s"),
	}})
	require.NoError(t, err)
	assert.Equal(t, append(refs(admin.KindBudget, "gh"), refs(admin.KindConnector, "a", "b")...), reply.Created)
	assert.Empty(t, reply.Changed)
	assert.Zero(t, reply.Unchanged)

	reply, err = e.client.Apply(ctx, admin.ApplyRequest{Budgets: budgets(), Connectors: []json.RawMessage{
		connector("a", "10s", `"budget": "gh"`), connector("b", "30s"), connector("c", "10s"),
	}})
	require.NoError(t, err)
	assert.Equal(t, refs(admin.KindConnector, "c"), reply.Created)
	assert.Equal(t, refs(admin.KindConnector, "b"), reply.Changed)
	assert.Equal(t, 2, reply.Unchanged, "gh and a")

	before := e.writes(t)
	reply, err = e.client.Apply(ctx, admin.ApplyRequest{Budgets: budgets(), Connectors: []json.RawMessage{
		connector("a", "10s", `"budget": "gh"`), connector("b", "30s"), connector("c", "10s"),
	}})
	require.NoError(t, err)
	assert.Equal(t, admin.ApplyReply{Unchanged: 4}, reply)
	assert.Equal(t, before, e.writes(t), "a re-apply writes nothing")

	reply, err = e.client.Apply(ctx, admin.ApplyRequest{DryRun: true, Connectors: []json.RawMessage{connector("d", "10s")}})
	require.NoError(t, err)
	assert.Equal(t, refs(admin.KindConnector, "d"), reply.Created)
	assert.True(t, reply.DryRun)
	assert.Equal(t, before, e.writes(t), "a dry run writes nothing")

	got, err := e.client.Get(ctx, "", "b")
	require.NoError(t, err)
	assert.JSONEq(t, string(connector("b", "30s")), got.Value)
	assert.Contains(t, got.Value, "${TOKEN}")
	assert.Equal(t, admin.OperationPut, got.Operation)

	defs, err := e.client.AllDefinitions(ctx)
	require.NoError(t, err)
	require.Len(t, defs, 4)
	assert.Equal(t, admin.Ref{Kind: admin.KindBudget, Name: "gh", Revision: 1, Sum: catalog.SumOf([]byte(`{"limit":60,"per":"1m"}`)).String()}, defs[0])
	assert.Equal(t, []string{"a", "b", "c"}, []string{defs[1].Name, defs[2].Name, defs[3].Name})

	// Asked by name: those held, with their digests; none missing.
	held, err := e.client.HeldOf(ctx, []admin.Ref{{Kind: admin.KindConnector, Name: "b"}, {Kind: admin.KindConnector, Name: "zz"}})
	require.NoError(t, err)
	require.Len(t, held, 1)
	assert.Equal(t, "b", held[0].Name)
	assert.Equal(t, catalog.SumOf([]byte(got.Value)).String(), held[0].Sum)
}

// A request with a bad definition is refused whole: 400, every problem
// with its path, and nothing written.
func TestApplyRefusesBadDefinitions(t *testing.T) {
	e := start(t, true)
	ctx := context.Background()
	before := e.writes(t)

	_, err := e.client.Apply(ctx, admin.ApplyRequest{Connectors: []json.RawMessage{
		connector("good", "10s"),
		json.RawMessage(`{"name": "bad", "type": "omega", "interval": "10s"}`),
		connector("needs-budget", "10s", `"budget": "nope"`),
	}})
	var ae *admin.Error
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, admin.CodeBadRequest, ae.Code)
	assert.Contains(t, ae.Message, "nothing was written")
	var paths []string
	for _, p := range ae.Problems {
		paths = append(paths, p.Path)
	}
	assert.Equal(t, []string{"connectors[1].type", "connectors[2].budget"}, paths)
	assert.Equal(t, before, e.writes(t))
	_, err = e.client.Get(ctx, "", "good")
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, admin.CodeNotFound, ae.Code)
}

// What the index holds as it is is not checked again: a request of
// unchanged connectors and one bad new one is refused for that one alone,
// named by its place in the request, and nothing is written.
func TestApplyChecksOnlyWhatChanged(t *testing.T) {
	e := start(t, true)
	ctx := context.Background()
	_, err := e.client.Apply(ctx, admin.ApplyRequest{Budgets: budgets(), Connectors: []json.RawMessage{
		connector("a", "10s", `"budget": "gh"`), connector("b", "10s"),
	}})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return e.index.Len() == 2 }, 5*time.Second, 5*time.Millisecond)
	before := e.writes(t)

	_, err = e.client.Apply(ctx, admin.ApplyRequest{Budgets: budgets(), Connectors: []json.RawMessage{
		connector("a", "10s", `"budget": "gh"`), connector("b", "10s"),
		json.RawMessage(`{"name": "c", "type": "omega"}`),
	}})
	var ae *admin.Error
	require.ErrorAs(t, err, &ae)
	require.Len(t, ae.Problems, 1)
	assert.Equal(t, "connectors[2].type", ae.Problems[0].Path)
	assert.Equal(t, before, e.writes(t))

	// Formatting aside, the same definition is unchanged.
	reply, err := e.client.Apply(ctx, admin.ApplyRequest{Budgets: budgets(), Connectors: []json.RawMessage{
		json.RawMessage(strings.ReplaceAll(string(connector("a", "10s", `"budget": "gh"`)), ", ", ",\n  ")), connector("b", "10s"),
	}})
	require.NoError(t, err)
	assert.Equal(t, admin.ApplyReply{Unchanged: 3}, reply)
	assert.Equal(t, before, e.writes(t))
}

// A definition someone else wrote since the index read it: 409, and
// asking again once the index holds it writes.
func TestApplyConflict(t *testing.T) {
	e := start(t, false)
	ctx := context.Background()
	_, err := e.cat.Put(ctx, catalog.Connector("a"), connector("a", "10s"), 0)
	require.NoError(t, err)

	// An index that stopped following after reading revision 1, as one
	// that has not seen the next write yet.
	stale := catalog.NewIndex(alphaTypes{}, nil)
	followCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { e.cat.Follow(followCtx, stale); close(done) }()
	<-stale.Synced()
	stop()
	<-done
	e.serve(t, stale)
	_, err = e.cat.Put(ctx, catalog.Connector("a"), connector("a", "20s"), 1)
	require.NoError(t, err, "someone else's write")

	_, err = e.client.Apply(ctx, admin.ApplyRequest{Connectors: []json.RawMessage{connector("a", "30s"), connector("b", "30s")}})
	var ae *admin.Error
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, admin.CodeConflict, ae.Code)
	assert.Contains(t, ae.Message, "1 definitions changed while this apply wrote them (a)")
	got, err := e.cat.Get(ctx, catalog.Connector("a"))
	require.NoError(t, err)
	assert.JSONEq(t, string(connector("a", "20s")), string(got.Value), "the other write stays")
	_, err = e.cat.Get(ctx, catalog.Connector("b"))
	assert.NoError(t, err, "the rest of the request is written")

	// The index follows again, and catches up.
	followCtx, stop = context.WithCancel(ctx)
	defer stop()
	go e.cat.Follow(followCtx, stale)
	require.Eventually(t, func() bool {
		a, _ := stale.Version(catalog.Connector("a"))
		_, b := stale.Version(catalog.Connector("b"))
		return a.Revision == got.Revision && b
	}, 5*time.Second, time.Millisecond)
	reply, err := e.client.Apply(ctx, admin.ApplyRequest{Connectors: []json.RawMessage{connector("a", "30s"), connector("b", "30s")}})
	require.NoError(t, err)
	assert.Equal(t, refs(admin.KindConnector, "a"), reply.Changed)
	assert.Equal(t, 1, reply.Unchanged)
}

// history lists every revision kept, deletion included; rollback writes
// an older value as a new revision, after checking it again.
func TestHistoryAndRollback(t *testing.T) {
	e := start(t, true)
	ctx := context.Background()
	for _, interval := range []string{"10s", "20s", "30s"} {
		_, err := e.client.Apply(ctx, admin.ApplyRequest{Budgets: budgets(), Connectors: []json.RawMessage{connector("a", interval)}})
		require.NoError(t, err)
	}
	h, err := e.client.History(ctx, "", "a")
	require.NoError(t, err)
	require.Len(t, h.Revisions, 3)
	assert.JSONEq(t, string(connector("a", "10s")), h.Revisions[0].Value)
	assert.JSONEq(t, string(connector("a", "30s")), h.Revisions[2].Value)
	latest := h.Revisions[2].Revision

	r, err := e.client.Rollback(ctx, admin.RollbackRequest{Name: "a"})
	require.NoError(t, err)
	assert.Equal(t, h.Revisions[1].Revision, r.Restored, "0: the value before the latest")
	assert.Greater(t, r.Revision, latest)
	got, err := e.client.Get(ctx, "", "a")
	require.NoError(t, err)
	assert.JSONEq(t, string(connector("a", "20s")), got.Value)
	assert.Equal(t, r.Revision, got.Revision.Revision)

	r, err = e.client.Rollback(ctx, admin.RollbackRequest{Name: "a", Revision: h.Revisions[0].Revision})
	require.NoError(t, err)
	got, err = e.client.Get(ctx, "", "a")
	require.NoError(t, err)
	assert.JSONEq(t, string(connector("a", "10s")), got.Value)

	_, err = e.client.Rollback(ctx, admin.RollbackRequest{Name: "a", Revision: 999})
	var ae *admin.Error
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, admin.CodeNotFound, ae.Code)
	assert.Contains(t, ae.Message, "has no revision 999 kept")

	// A value that names a budget the catalog no longer defines is not
	// restored.
	_, err = e.client.Apply(ctx, admin.ApplyRequest{Budgets: budgets(), Connectors: []json.RawMessage{connector("b", "10s", `"budget": "gh"`)}})
	require.NoError(t, err)
	_, err = e.client.Apply(ctx, admin.ApplyRequest{Connectors: []json.RawMessage{connector("b", "10s")}})
	require.NoError(t, err)
	_, err = e.client.Delete(ctx, refs(admin.KindBudget, "gh"))
	require.NoError(t, err)
	before := e.writes(t)
	_, err = e.client.Rollback(ctx, admin.RollbackRequest{Name: "b"})
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, admin.CodeBadRequest, ae.Code)
	require.Len(t, ae.Problems, 1)
	assert.Equal(t, "budget", ae.Problems[0].Path)
	assert.Equal(t, before, e.writes(t))
}

// delete is conditional on the revision given: a stale one is refused;
// a budget a connector names is not deleted.
func TestDelete(t *testing.T) {
	e := start(t, true)
	ctx := context.Background()
	_, err := e.client.Apply(ctx, admin.ApplyRequest{Budgets: budgets(), Connectors: []json.RawMessage{
		connector("a", "10s", `"budget": "gh"`), connector("b", "10s"),
	}})
	require.NoError(t, err)
	a, err := e.client.Get(ctx, "", "a")
	require.NoError(t, err)
	_, err = e.client.Apply(ctx, admin.ApplyRequest{Budgets: budgets(), Connectors: []json.RawMessage{connector("a", "20s", `"budget": "gh"`)}})
	require.NoError(t, err)

	_, err = e.client.Delete(ctx, []admin.Ref{{Kind: admin.KindConnector, Name: "a", Revision: a.Revision.Revision}})
	var ae *admin.Error
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, admin.CodeConflict, ae.Code)
	_, err = e.client.Get(ctx, "", "a")
	require.NoError(t, err, "a stale revision deletes nothing")

	_, err = e.client.Delete(ctx, refs(admin.KindBudget, "gh"))
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, admin.CodeBadRequest, ae.Code)
	assert.Contains(t, ae.Message, "budget gh is named by 1 connectors (a)")

	a, err = e.client.Get(ctx, "", "a")
	require.NoError(t, err)
	reply, err := e.client.Delete(ctx, []admin.Ref{
		{Kind: admin.KindBudget, Name: "gh"},
		{Kind: admin.KindConnector, Name: "a", Revision: a.Revision.Revision},
		{Kind: admin.KindConnector, Name: "never"},
	})
	require.NoError(t, err, "the connector goes first, then its budget")
	assert.Equal(t, append(refs(admin.KindConnector, "a"), refs(admin.KindBudget, "gh")...), reply.Deleted)
	assert.Equal(t, refs(admin.KindConnector, "never"), reply.Missing)

	_, err = e.client.Get(ctx, "", "a")
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, admin.CodeNotFound, ae.Code)
	assert.Contains(t, ae.Message, "was deleted")
	defs, err := e.client.AllDefinitions(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"b"}, []string{defs[0].Name})
	require.Len(t, defs, 1)
}

// countingTypes is alphaTypes counting the type lookups of a check.
type countingTypes struct {
	alphaTypes
	known *atomic.Int64
}

func (c countingTypes) Known(typeName string) bool {
	c.known.Add(1)
	return c.alphaTypes.Known(typeName)
}

// What the apply verb checked, its index takes without a second check; a
// value written around it is checked as it comes.
func TestIndexTakesWhatApplyCheckedWithoutCheckingAgain(t *testing.T) {
	e := start(t, false)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var known atomic.Int64
	x := catalog.NewIndex(countingTypes{known: &known}, nil)
	go e.cat.Follow(ctx, x)
	e.serve(t, x)

	_, err := e.client.Apply(ctx, admin.ApplyRequest{Connectors: []json.RawMessage{
		connector("a", "10s"), connector("b", "20s", `"enabled": false`),
	}})
	require.NoError(t, err)
	require.Equal(t, 2, x.Len(), "the apply's reply waits for its index")
	assert.Zero(t, known.Load(), "the index checked what the apply had checked")
	b, ok := x.Connector("b")
	require.True(t, ok)
	assert.Equal(t, catalog.Defined{Name: "b", Type: "alpha", Interval: 20 * time.Second, Revision: b.Revision}, b)

	_, err = e.cat.Put(ctx, catalog.Connector("c"), connector("c", "30s"), 0)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return x.Len() == 3 }, 5*time.Second, 5*time.Millisecond)
	assert.Positive(t, known.Load(), "a definition written around the apply verb was not checked")
	c, _ := x.Connector("c")
	assert.Equal(t, 30*time.Second, c.Interval)
}
