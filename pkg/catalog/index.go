package catalog

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/pollgrid/pollgrid/pkg/config"
)

// Defined is a connector as the index holds it: checked as written, with
// what scheduling and listing need (its type config, labels and poll
// settings are a worker's to read), its budget linked.
type Defined struct {
	Name, Type string
	Enabled    bool
	Interval   time.Duration
	// Jitter is kept only to warn that it is ignored.
	Jitter   time.Duration
	Adaptive config.Adaptive
	// Budget is the budget it names, with its sharers counted; the zero
	// Budget when it has none.
	Budget config.Budget
	// Revision of its definition in the bucket.
	Revision uint64
}

// Connector is d as a config.Connector (the fields the index keeps).
func (d Defined) Connector() config.Connector {
	return config.Connector{Name: d.Name, Type: d.Type, Enabled: d.Enabled, Interval: d.Interval, Jitter: d.Jitter,
		Adaptive: d.Adaptive, Budget: d.Budget}
}

// held is what the index keeps of a connector: a third of a
// config.Connector, which at 100,000 connectors is the scheduler's memory.
type held struct {
	name, typ        string
	budget           string
	interval, jitter time.Duration
	adaptive         config.Adaptive
	revision         uint64
	enabled          bool
}

// Index follows the bucket (Catalog.Follow) and holds what scheduling and
// listing need of every connector: its name, type, interval, enabled,
// budget, revision. A definition that does not pass its check (written to
// the bucket around pollctl) is held apart, with why (Invalid).
type Index struct {
	types config.TypeChecker
	log   *slog.Logger

	mu         sync.RWMutex
	versions   map[Ref]Version
	connectors map[string]held
	invalid    map[string]string
	budgets    map[string]config.Budget
	// sharers are each budget's enabled connectors.
	sharers map[string]map[string]struct{}
	// last is the highest revision the index has taken.
	last uint64
	// dirty are the connectors whose scheduling changed since TakeDirty.
	dirty   map[string]struct{}
	changed chan struct{}
	synced  chan struct{}
	once    sync.Once
}

// NewIndex returns an empty index. It checks each definition's own fields
// and its type's name with types, and leaves the type's config to the
// worker that polls it, which checks it whole (apply checked it whole
// too): compiling every connector's jq and URL rules would make a scheduler
// of 100,000 connectors take minutes to read the catalog.
func NewIndex(types config.TypeChecker, log *slog.Logger) *Index {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Index{
		types: typesOnly{types}, log: log,
		versions: map[Ref]Version{}, connectors: map[string]held{}, invalid: map[string]string{},
		budgets: map[string]config.Budget{}, sharers: map[string]map[string]struct{}{},
		dirty: map[string]struct{}{}, changed: make(chan struct{}, 1), synced: make(chan struct{}),
	}
}

// Follow keeps x in line with the bucket until ctx ends: every key's latest
// revision, then each change as it is written. A watch that breaks is
// started again (its first pass then repeats, which the index takes as
// unchanged).
func (c *Catalog) Follow(ctx context.Context, x *Index) {
	for ctx.Err() == nil {
		err := c.follow(ctx, x)
		if ctx.Err() != nil {
			return
		}
		x.log.Warn("following the connector catalog failed; starting again", "bucket", Bucket, "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (c *Catalog) follow(ctx context.Context, x *Index) error {
	w, err := c.kv.WatchAll(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				return errors.New("the watch ended")
			case e == nil:
				x.SetSynced()
			default:
				if ref, ok := ParseKey(e.Key()); ok {
					x.Update(entryOf(ref, e))
				}
			}
		}
	}
}

// Synced is closed once the index holds every key the bucket held when
// Follow began.
func (x *Index) Synced() <-chan struct{} { return x.synced }

// SetSynced marks an index filled by hand (Update), not by Follow, synced.
func (x *Index) SetSynced() { x.once.Do(func() { close(x.synced) }) }

// typesOnly knows the types of its TypeChecker and takes every config.
type typesOnly struct{ config.TypeChecker }

func (typesOnly) Validate(string, json.RawMessage) error { return nil }

// Changed receives a value whenever a connector's scheduling changed
// (TakeDirty says which).
func (x *Index) Changed() <-chan struct{} { return x.changed }

// TakeDirty returns the connectors whose scheduling changed (defined,
// changed, deleted, or their budget's sharers changed) since the last call.
func (x *Index) TakeDirty() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := slices.Collect(maps.Keys(x.dirty))
	clear(x.dirty)
	return out
}

// Update takes one revision of one key into the index.
func (x *Index) Update(e Entry) {
	v := Version{Revision: e.Revision, Deleted: e.Deleted}
	if !e.Deleted {
		v.Sum = SumOf(e.Value)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if old, ok := x.versions[e.Ref]; ok && old.Revision >= e.Revision {
		return // a watch started again repeats what it has seen
	}
	x.versions[e.Ref] = v
	x.last = max(x.last, e.Revision)
	switch e.Kind {
	case KindConnector:
		x.updateConnector(e)
	case KindBudget:
		x.updateBudget(e)
	}
	select {
	case x.changed <- struct{}{}:
	default:
	}
}

func (x *Index) updateConnector(e Entry) {
	name := e.Name
	x.dirty[name] = struct{}{}
	if old, ok := x.connectors[name]; ok {
		x.unshare(old)
		delete(x.connectors, name)
	}
	delete(x.invalid, name)
	if e.Deleted {
		return
	}
	source := fmt.Sprintf("definition of %s (revision %d)", name, e.Revision)
	c, err := config.ParseConnector(source, e.Value, config.Unresolved, x.types, nil)
	if err == nil && c.Name != name {
		err = fmt.Errorf("%s: its name is %q, not %q (its key); write it again with pollctl apply", source, c.Name, name)
	}
	if err != nil {
		x.invalid[name] = err.Error()
		x.log.Error("a connector definition in the catalog does not pass its check; it is not scheduled", "connector", name, "error", err)
		return
	}
	h := held{name: c.Name, typ: c.Type, budget: c.Budget.Name, interval: c.Interval, jitter: c.Jitter,
		adaptive: c.Adaptive, revision: e.Revision, enabled: c.Enabled}
	x.connectors[name] = h
	x.share(h)
}

func (x *Index) share(h held) {
	if h.budget != "" && h.enabled {
		if x.sharers[h.budget] == nil {
			x.sharers[h.budget] = map[string]struct{}{}
		}
		x.sharers[h.budget][h.name] = struct{}{}
		x.touchBudget(h.budget)
	}
}

func (x *Index) unshare(h held) {
	if h.budget != "" && h.enabled {
		delete(x.sharers[h.budget], h.name)
		x.touchBudget(h.budget)
	}
}

// touchBudget marks every connector of a budget dirty: their share of it
// is in their ticks.
func (x *Index) touchBudget(b string) {
	for name := range x.sharers[b] {
		x.dirty[name] = struct{}{}
	}
}

func (x *Index) updateBudget(e Entry) {
	if e.Deleted {
		delete(x.budgets, e.Name)
	} else {
		b, err := config.ParseBudget(fmt.Sprintf("definition of budget %s (revision %d)", e.Name, e.Revision), e.Name, e.Value)
		if err != nil {
			x.log.Error("a budget definition in the catalog does not pass its check; its connectors draw from no budget", "budget", e.Name, "error", err)
			delete(x.budgets, e.Name)
		} else {
			x.budgets[e.Name] = b
		}
	}
	x.touchBudget(e.Name)
}

// Connector returns one connector, its budget linked.
func (x *Index) Connector(name string) (Defined, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	h, ok := x.connectors[name]
	if !ok {
		return Defined{}, false
	}
	return h.defined(x.linked(h.budget)), true
}

// Connectors returns every valid connector, sorted by name.
func (x *Index) Connectors() []Defined {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make([]Defined, 0, len(x.connectors))
	budgets := map[string]config.Budget{}
	for _, h := range x.connectors {
		b, ok := budgets[h.budget]
		if !ok {
			b = x.linked(h.budget)
			budgets[h.budget] = b
		}
		out = append(out, h.defined(b))
	}
	slices.SortFunc(out, func(a, b Defined) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

func (h held) defined(b config.Budget) Defined {
	return Defined{Name: h.name, Type: h.typ, Enabled: h.enabled, Interval: h.interval, Jitter: h.jitter,
		Adaptive: h.adaptive, Budget: b, Revision: h.revision}
}

// LastRevision is the highest revision of the bucket the index has taken:
// it changes whenever the index does.
func (x *Index) LastRevision() uint64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.last
}

// Len counts the valid connectors.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.connectors)
}

// Invalid returns the connectors whose definitions fail their check, with why.
func (x *Index) Invalid() map[string]string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return maps.Clone(x.invalid)
}

// Budgets returns every budget with its sharers counted.
func (x *Index) Budgets() map[string]config.Budget {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make(map[string]config.Budget, len(x.budgets))
	for name := range x.budgets {
		out[name] = x.linked(name)
	}
	return out
}

// linked is budget name with its sharers counted; the zero Budget keeps
// the name when the catalog does not define it (its connectors draw from
// no budget until it is).
func (x *Index) linked(name string) config.Budget {
	if name == "" {
		return config.Budget{}
	}
	b, ok := x.budgets[name]
	if !ok {
		return config.Budget{Name: name}
	}
	b.Connectors = len(x.sharers[name])
	for c := range x.sharers[name] {
		if h, ok := x.connectors[c]; ok && h.interval > 0 {
			b.Demand += float64(b.Per) / float64(h.interval)
		}
	}
	return b
}

// Version returns one key's version (Versions).
func (x *Index) Version(r Ref) (Version, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	v, ok := x.versions[r]
	return v, ok
}

// All lists every key's version (Versions), from a copy taken at the call.
func (x *Index) All() iter.Seq2[Ref, Version] {
	x.mu.RLock()
	snap := maps.Clone(x.versions)
	x.mu.RUnlock()
	return Snapshot(snap).All()
}

var _ Versions = (*Index)(nil)
