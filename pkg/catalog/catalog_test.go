package catalog_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/catalog"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connectors/builtin"
	"github.com/pollgrid/pollgrid/pkg/natstest"
)

// testCatalog opens the catalog on an embedded NATS server of its own.
func testCatalog(t *testing.T) (*catalog.Catalog, jetstream.JetStream) {
	t.Helper()
	_, js := natstest.JetStream(t)
	c, err := catalog.Open(context.Background(), js, catalog.Options{})
	require.NoError(t, err)
	return c, js
}

// file writes a connectors file of demo connectors named name-0 .. name-(n-1),
// each with interval, and the budgets given as JSON (or none).
func file(n int, interval, budgets string) []byte {
	var b strings.Builder
	b.WriteString(`{`)
	if budgets != "" {
		b.WriteString(`"budgets": ` + budgets + `, `)
	}
	b.WriteString(`"connectors": [`)
	for i := range n {
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, `{"name": "c-%d", "type": "demo", "interval": %q}`, i, interval)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

func definitions(t *testing.T, data []byte) *config.Definitions {
	t.Helper()
	defs, err := config.ParseDefinitions("connectors.json", data, builtin.Registry())
	require.NoError(t, err)
	return defs
}

func names(refs []catalog.Ref) []string {
	out := make([]string, len(refs))
	for i, r := range refs {
		out[i] = r.String()
	}
	return out
}

// Apply writes only the difference: everything new the first time,
// nothing the second, one definition when one changed, and with prune the
// ones the file no longer holds; a dry run writes nothing.
func TestApplyWritesTheDifference(t *testing.T) {
	c, js := testCatalog(t)
	ctx := context.Background()
	lastSeq := func() uint64 {
		s, err := js.Stream(ctx, "KV_"+catalog.Bucket)
		require.NoError(t, err)
		info, err := s.Info(ctx)
		require.NoError(t, err)
		return info.State.LastSeq
	}

	diff, err := c.Apply(ctx, definitions(t, file(3, "1m", `{"b": {"limit": 10, "per": "1m"}}`)), catalog.ApplyOptions{Prune: true})
	require.NoError(t, err)
	assert.Equal(t, []string{"budget b", "c-0", "c-1", "c-2"}, names(diff.Created))
	assert.Equal(t, 4, diff.Writes())
	assert.EqualValues(t, 4, lastSeq())

	diff, err = c.Apply(ctx, definitions(t, file(3, "1m", `{"b": {"limit": 10, "per": "1m"}}`)), catalog.ApplyOptions{Prune: true})
	require.NoError(t, err)
	assert.Equal(t, 0, diff.Writes())
	assert.Equal(t, 4, diff.Unchanged)
	assert.EqualValues(t, 4, lastSeq(), "an unchanged apply writes nothing")

	// c-2 leaves the file and the budget goes; a dry run says so and writes nothing.
	two := definitions(t, file(2, "1m", ""))
	diff, err = c.Apply(ctx, two, catalog.ApplyOptions{Prune: true, DryRun: true})
	require.NoError(t, err)
	assert.Equal(t, []string{"budget b", "c-2"}, names(diff.Deleted))
	assert.EqualValues(t, 4, lastSeq())

	// Without prune, what the file does not hold stays.
	diff, err = c.Apply(ctx, two, catalog.ApplyOptions{})
	require.NoError(t, err)
	assert.Empty(t, diff.Deleted)
	_, err = c.Get(ctx, catalog.Connector("c-2"))
	require.NoError(t, err)

	diff, err = c.Apply(ctx, two, catalog.ApplyOptions{Prune: true})
	require.NoError(t, err)
	assert.Equal(t, []string{"budget b", "c-2"}, names(diff.Deleted))
	_, err = c.Get(ctx, catalog.Connector("c-2"))
	assert.ErrorIs(t, err, catalog.ErrNotFound)

	// A changed interval is one write; a deleted connector comes back as created.
	diff, err = c.Apply(ctx, definitions(t, file(3, "2m", "")), catalog.ApplyOptions{Prune: true})
	require.NoError(t, err)
	assert.Equal(t, []string{"c-0", "c-1"}, names(diff.Changed))
	assert.Equal(t, []string{"c-2"}, names(diff.Created))
	e, err := c.Get(ctx, catalog.Connector("c-2"))
	require.NoError(t, err)
	assert.JSONEq(t, `{"name": "c-2", "type": "demo", "interval": "2m"}`, string(e.Value))

	// The history keeps every revision, the deletion included.
	hist, err := c.History(ctx, catalog.Connector("c-2"))
	require.NoError(t, err)
	require.Len(t, hist, 3)
	assert.False(t, hist[0].Deleted)
	assert.True(t, hist[1].Deleted)
	assert.Equal(t, e.Revision, hist[2].Revision)
	old, err := c.Revision(ctx, catalog.Connector("c-2"), hist[0].Revision)
	require.NoError(t, err)
	assert.Contains(t, string(old.Value), `"1m"`)
}

// Secrets are stored as written: the value of a ${VAR} never reaches the
// bucket, whatever the applying process's environment holds.
func TestApplyStoresSecretsAsWritten(t *testing.T) {
	c, _ := testCatalog(t)
	ctx := context.Background()
	t.Setenv("GH_TOKEN", "ghp_very_secret")
	data := []byte(`{"connectors": [{"name": "rel", "type": "github-releases", "config": {"owner": "nats-io", "repo": "nats-server", "token": "${GH_TOKEN}"}}]}`)
	_, err := c.Apply(ctx, definitions(t, data), catalog.ApplyOptions{})
	require.NoError(t, err)
	e, err := c.Get(ctx, catalog.Connector("rel"))
	require.NoError(t, err)
	assert.Contains(t, string(e.Value), `${GH_TOKEN}`)
	assert.NotContains(t, string(e.Value), "ghp_very_secret")
}

// Two operators applying at once never lose an update: a write planned
// against a revision someone else replaced meanwhile fails as a conflict,
// and applying again finishes it.
func TestConcurrentAppliesConflict(t *testing.T) {
	c, _ := testCatalog(t)
	ctx := context.Background()
	_, err := c.Apply(ctx, definitions(t, file(2, "1m", "")), catalog.ApplyOptions{})
	require.NoError(t, err)
	stale, err := c.Snapshot(ctx)
	require.NoError(t, err)

	// Someone else changes c-0 after our snapshot.
	_, err = c.Apply(ctx, definitions(t, file(1, "5m", "")), catalog.ApplyOptions{})
	require.NoError(t, err)

	_, err = c.Apply(ctx, definitions(t, file(2, "2m", "")), catalog.ApplyOptions{Versions: stale})
	var conflict *catalog.ConflictError
	require.ErrorAs(t, err, &conflict)
	assert.Equal(t, []string{"c-0"}, names(conflict.Refs))
	assert.ErrorIs(t, err, catalog.ErrConflict)
	assert.Contains(t, err.Error(), "apply again")
	e, err := c.Get(ctx, catalog.Connector("c-0"))
	require.NoError(t, err)
	assert.Contains(t, string(e.Value), `"5m"`, "the other operator's write stays")
	e, err = c.Get(ctx, catalog.Connector("c-1"))
	require.NoError(t, err)
	assert.Contains(t, string(e.Value), `"2m"`, "the rest of the apply was written")

	diff, err := c.Apply(ctx, definitions(t, file(2, "2m", "")), catalog.ApplyOptions{})
	require.NoError(t, err)
	assert.Equal(t, []string{"c-0"}, names(diff.Changed))

	// Put and Delete are conditional too.
	_, err = c.Put(ctx, catalog.Connector("c-0"), []byte(`{"name": "c-0", "type": "demo"}`), 1)
	assert.ErrorIs(t, err, catalog.ErrConflict)
	err = c.Delete(ctx, catalog.Connector("c-0"), 1)
	assert.ErrorIs(t, err, catalog.ErrConflict)
}

// Many processes started with one file apply it at once: they all end with
// the file in the bucket, each write made once.
func TestSimultaneousAppliesOfOneFile(t *testing.T) {
	c, _ := testCatalog(t)
	ctx := context.Background()
	defs := definitions(t, file(500, "1m", ""))
	var wg sync.WaitGroup
	var mu sync.Mutex
	writes := 0
	for range 4 {
		wg.Go(func() {
			for attempt := 0; ; attempt++ {
				diff, err := c.Apply(ctx, defs, catalog.ApplyOptions{Prune: true})
				if errors.Is(err, catalog.ErrConflict) && attempt < 5 {
					mu.Lock()
					writes += diff.Writes() - len(err.(*catalog.ConflictError).Refs)
					mu.Unlock()
					continue
				}
				assert.NoError(t, err)
				mu.Lock()
				writes += diff.Writes()
				mu.Unlock()
				return
			}
		})
	}
	wg.Wait()
	snap, err := c.Snapshot(ctx)
	require.NoError(t, err)
	assert.Len(t, snap, 500)
	for ref, v := range snap {
		assert.False(t, v.Deleted, ref.String())
	}
	assert.Equal(t, 500, writes, "each definition written once, whoever wrote it")
}

// The index follows the bucket: every key at start, then each change, and
// says which connectors' scheduling changed, a budget's sharers included.
func TestIndexFollowsTheBucket(t *testing.T) {
	c, js := testCatalog(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := c.Apply(ctx, definitions(t, file(3, "1m", "")), catalog.ApplyOptions{})
	require.NoError(t, err)

	x := catalog.NewIndex(builtin.Registry(), nil)
	go c.Follow(ctx, x)
	select {
	case <-x.Synced():
	case <-time.After(5 * time.Second):
		t.Fatal("the index never synced")
	}
	assert.Equal(t, 3, x.Len())
	assert.ElementsMatch(t, []string{"c-0", "c-1", "c-2"}, x.TakeDirty())

	withBudget := []byte(`{"budgets": {"gh": {"limit": 60, "per": "1m", "burst": 5}}, "connectors": [
		{"name": "c-0", "type": "demo", "interval": "1m", "budget": "gh"},
		{"name": "c-1", "type": "demo", "interval": "1m", "budget": "gh"},
		{"name": "c-2", "type": "demo", "interval": "30s"}]}`)
	_, err = c.Apply(ctx, definitions(t, withBudget), catalog.ApplyOptions{Prune: true})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		d, ok := x.Connector("c-2")
		return ok && d.Interval == 30*time.Second
	}, 5*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		d, _ := x.Connector("c-1")
		return d.Budget.Connectors == 2 && d.Budget.Limit == 60
	}, 5*time.Second, 10*time.Millisecond)
	assert.ElementsMatch(t, []string{"c-0", "c-1", "c-2"}, x.TakeDirty())

	// A definition written around pollctl that fails its check is held
	// apart with why, and not listed.
	_, err = js.Publish(ctx, "$KV."+catalog.Bucket+".connectors.bad", []byte(`{"name": "bad", "type": "nope"}`))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return x.Invalid()["bad"] != "" }, 5*time.Second, 10*time.Millisecond)
	assert.Contains(t, x.Invalid()["bad"], "nope")
	_, ok := x.Connector("bad")
	assert.False(t, ok)

	// Deleted: gone from the index, its budget's sharer count drops.
	require.NoError(t, c.Delete(ctx, catalog.Connector("c-0"), 0))
	require.Eventually(t, func() bool {
		d, _ := x.Connector("c-1")
		return d.Budget.Connectors == 1
	}, 5*time.Second, 10*time.Millisecond)
	_, ok = x.Connector("c-0")
	assert.False(t, ok)
	assert.Contains(t, x.TakeDirty(), "c-0")
	assert.Equal(t, 2, x.Len())
}

// A file the scheduler applied at start comes back in the index's first
// Load, which takes what it expects (Expect) without a second check; a
// value other than the expected one, and one not expected, are checked. A
// watch started again repeats its first read, which is checked no more.
func TestLoadTakesWhatWasExpectedWithoutCheckingAgain(t *testing.T) {
	data := []byte(`{"connectors": [{"name": "a", "type": "alpha", "interval": "10s"}, {"name": "b", "type": "alpha", "interval": "20s"}]}`)
	defs, err := config.ParseDefinitions("connectors.json", data, alphaTypes{})
	require.NoError(t, err)
	var known atomic.Int64
	x := catalog.NewIndex(countingTypes{known: &known}, nil)
	x.Expect(defs.Connectors, defs.Checked)
	entries := []catalog.Entry{
		{Ref: catalog.Connector("a"), Value: defs.Connectors[0].Value, Revision: 1},
		{Ref: catalog.Connector("b"), Value: []byte(`{"name": "b", "type": "alpha", "interval": "30s"}`), Revision: 2},
		{Ref: catalog.Connector("c"), Value: []byte(`{"name": "c", "type": "alpha", "interval": "40s"}`), Revision: 3},
	}
	var fresh atomic.Int64 // what checking b and c costs an index expecting nothing
	catalog.NewIndex(countingTypes{known: &fresh}, nil).Load(entries[1:])
	require.Positive(t, fresh.Load())

	x.Load(entries)
	assert.Equal(t, fresh.Load(), known.Load(), "b (changed since it was expected) and c (not expected) checked, a not")
	for name, want := range map[string]time.Duration{"a": 10 * time.Second, "b": 30 * time.Second, "c": 40 * time.Second} {
		d, ok := x.Connector(name)
		require.True(t, ok, name)
		assert.Equal(t, want, d.Interval, name)
	}

	known.Store(0)
	x.Load(entries)
	assert.Zero(t, known.Load(), "a repeated first read is not checked again")
	assert.Equal(t, 3, x.Len())
}

// Load (a watch's first read) holds what Update one entry at a time does:
// the valid, the invalid with why, the deleted, a key repeated by a watch
// started again, budgets and their sharers.
func TestLoadIsUpdateOneByOne(t *testing.T) {
	entries := []catalog.Entry{
		{Ref: catalog.Budget("gh"), Value: []byte(`{"limit": 60, "per": "1m"}`), Revision: 1},
		{Ref: catalog.Connector("a"), Value: []byte(`{"name": "a", "type": "alpha", "interval": "10s", "budget": "gh"}`), Revision: 2},
		{Ref: catalog.Connector("b"), Value: []byte(`{"name": "b", "type": "omega"}`), Revision: 3},
		{Ref: catalog.Connector("c"), Value: []byte(`{"name": "not-c", "type": "alpha"}`), Revision: 4},
		{Ref: catalog.Connector("d"), Deleted: true, Revision: 5},
		{Ref: catalog.Connector("e"), Value: []byte(`{"name": "e", "type": "alpha", "interval": "20s", "enabled": false}`), Revision: 6},
		{Ref: catalog.Connector("a"), Value: []byte(`{"name": "a", "type": "alpha", "interval": "10s", "budget": "gh"}`), Revision: 2},
	}
	one := catalog.NewIndex(alphaTypes{}, nil)
	for _, e := range entries {
		one.Update(e)
	}
	all := catalog.NewIndex(alphaTypes{}, nil)
	all.Load(entries)

	assert.Equal(t, one.Connectors(), all.Connectors())
	assert.Len(t, all.Connectors(), 2)
	assert.Equal(t, one.Invalid(), all.Invalid())
	assert.Len(t, all.Invalid(), 2, "b's type, c's name")
	assert.Equal(t, one.Budgets(), all.Budgets())
	assert.Equal(t, 1, all.Budgets()["gh"].Connectors)
	assert.Equal(t, one.LastRevision(), all.LastRevision())
	assert.ElementsMatch(t, one.TakeDirty(), all.TakeDirty())
	for _, r := range []catalog.Ref{catalog.Connector("a"), catalog.Connector("b"), catalog.Connector("d"), catalog.Budget("gh")} {
		v1, ok1 := one.Version(r)
		v2, ok2 := all.Version(r)
		assert.Equal(t, ok1, ok2, "%v", r)
		assert.Equal(t, v1, v2, "%v", r)
	}
}
