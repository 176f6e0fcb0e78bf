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
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unique"

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

// slot is what the index keeps of a connector's key: its version and, when
// its definition passes its check, what scheduling needs of it. At 100,000
// connectors the slots are most of the scheduler's memory, so a slot is
// small: the type is a number, the budget's name is shared with the
// budget's, and the rare jitter and adaptive bounds live apart.
type slot struct {
	sum      Sum
	revision uint64
	interval time.Duration
	budget   string
	more     *extra
	typ      uint16
	deleted  bool
	valid    bool
	enabled  bool
}

// extra is what few connectors set.
type extra struct {
	jitter   time.Duration
	adaptive config.Adaptive
}

func (s slot) version() Version { return Version{Revision: s.revision, Deleted: s.deleted, Sum: s.sum} }

// Index follows the bucket (Catalog.Follow) and holds what scheduling and
// listing need of every connector: its name, type, interval, enabled,
// budget, revision. A definition that does not pass its check (written to
// the bucket around pollctl) is held apart, with why (Invalid).
type Index struct {
	types config.TypeChecker
	log   *slog.Logger

	mu sync.RWMutex
	// connectors holds every connector key the index has read, deleted
	// ones too (their revision is what a write conditions on).
	connectors map[string]slot
	// valid counts the slots whose definition passed its check.
	valid int
	// typeNames are the connector types by slot.typ; typeOf the reverse.
	typeNames []string
	typeOf    map[string]uint16
	invalid   map[string]string
	// budgetVersions are the budget keys' versions; budgets the valid ones.
	budgetVersions map[string]Version
	budgets        map[string]config.Budget
	// sharers are each budget's enabled connectors.
	sharers map[string]map[string]struct{}
	// last is the highest revision the index has taken.
	last uint64
	// expected are connectors checked whole by this process and being
	// written: the watch takes each without a second check when it brings
	// the value that was checked (Expect).
	expected map[string]expectation
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
		connectors: map[string]slot{}, typeOf: map[string]uint16{}, invalid: map[string]string{}, expected: map[string]expectation{},
		budgetVersions: map[string]Version{}, budgets: map[string]config.Budget{}, sharers: map[string]map[string]struct{}{},
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
	// The watch's first read, every key's latest revision until a nil
	// entry, is loaded as one batch (Load); then each change as it comes.
	var first []Entry
	read := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				return errors.New("the watch ended")
			case e == nil:
				if !read {
					x.Load(first)
					first, read = nil, true
				}
				x.SetSynced()
			default:
				ref, ok := ParseKey(e.Key())
				switch {
				case !ok:
				case read:
					x.Update(entryOf(ref, e))
				default:
					first = append(first, entryOf(ref, e))
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
	// A new map, not clear: a cleared map keeps the room of the 100,000
	// keys a first read marked.
	x.dirty = map[string]struct{}{}
	return out
}

// Update takes one revision of one key into the index.
func (x *Index) Update(e Entry) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.take(e, nil)
	x.signal()
}

// Load takes many keys' revisions at once, such as a watch's first read of
// the whole bucket: their definitions are checked on every core first, so
// that a scheduler restarting over 100,000 connectors is ready in about
// the time of its share of the checks. A definition the index expects
// (Expect) with this value, or holds at this revision already, is not
// checked.
func (x *Index) Load(es []Entry) {
	checked := make([]checkedDefinition, len(es))
	var next atomic.Int64
	var wg sync.WaitGroup
	x.mu.RLock()
	for range min(runtime.GOMAXPROCS(0), len(es)) {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < len(es); i = int(next.Add(1)) - 1 {
				if e := es[i]; e.Kind == KindConnector && !e.Deleted {
					checked[i] = x.precheck(e)
				}
			}
		})
	}
	wg.Wait()
	x.mu.RUnlock()
	x.mu.Lock()
	defer x.mu.Unlock()
	for i, e := range es {
		x.take(e, &checked[i])
	}
	x.signal()
}

// take takes one revision into the index, with its definition checked
// already when pre is not nil (x.mu held).
func (x *Index) take(e Entry, pre *checkedDefinition) {
	if old, ok := x.version(e.Ref); ok && old.Revision >= e.Revision {
		return // a watch started again repeats what it has seen
	}
	x.last = max(x.last, e.Revision)
	switch e.Kind {
	case KindConnector:
		x.updateConnector(e, pre)
	case KindBudget:
		x.updateBudget(e)
	}
}

func (x *Index) signal() {
	select {
	case x.changed <- struct{}{}:
	default:
	}
}

// checkedDefinition is a connector definition with its check's outcome.
type checkedDefinition struct {
	sum Sum
	c   config.Connector
	err error
	// unchecked: not checked, as the index held it already or expected it
	// when Load read it (updateConnector checks it if no longer expected).
	unchecked bool
}

// precheck is check, unless take will not need it: the index holds e's
// revision already, or expects its value (x.mu read-locked).
func (x *Index) precheck(e Entry) checkedDefinition {
	if old, ok := x.connectors[e.Name]; ok && old.revision >= e.Revision {
		return checkedDefinition{unchecked: true} // take skips it
	}
	sum := SumOf(e.Value)
	if exp, ok := x.expected[e.Name]; ok && exp.sum == sum {
		return checkedDefinition{sum: sum, unchecked: true}
	}
	return x.check(e, sum)
}

// check checks one connector definition as the index does (its own
// fields, its type's name), sum the digest of its value: it reads only
// x.types, so that many run at once.
func (x *Index) check(e Entry, sum Sum) checkedDefinition {
	source := fmt.Sprintf("definition of %s (revision %d)", e.Name, e.Revision)
	c, err := config.ParseConnector(source, e.Value, config.Unresolved, x.types, nil)
	if err == nil && c.Name != e.Name {
		err = fmt.Errorf("%s: its name is %q, not %q (its key); write it again with pollctl apply", source, c.Name, e.Name)
	}
	return checkedDefinition{sum: sum, c: c, err: err}
}

func (x *Index) version(r Ref) (Version, bool) {
	switch r.Kind {
	case KindConnector:
		s, ok := x.connectors[r.Name]
		return s.version(), ok
	case KindBudget:
		v, ok := x.budgetVersions[r.Name]
		return v, ok
	}
	return Version{}, false
}

func (x *Index) updateConnector(e Entry, pre *checkedDefinition) {
	name := e.Name
	x.dirty[name] = struct{}{}
	if old, ok := x.connectors[name]; ok && old.valid {
		x.unshare(name, old)
		x.valid--
	}
	delete(x.invalid, name)
	s := slot{revision: e.Revision, deleted: e.Deleted}
	defer func() { x.connectors[name] = s }()
	if e.Deleted {
		return
	}
	if pre != nil {
		s.sum = pre.sum
	} else {
		s.sum = SumOf(e.Value)
	}
	c, ok := x.expectedAs(name, s.sum)
	if !ok {
		if pre == nil || pre.unchecked {
			pre = new(x.check(e, s.sum))
		}
		if pre.err != nil {
			x.invalid[name] = pre.err.Error()
			x.log.Error("a connector definition in the catalog does not pass its check; it is not scheduled", "connector", name, "error", pre.err)
			return
		}
		c = pre.c
	}
	s.valid, s.enabled, s.interval, s.typ = true, c.Enabled, c.Interval, x.typeNumber(c.Type)
	if c.Budget.Name != "" {
		s.budget = unique.Make(c.Budget.Name).Value() // one copy of the name for all its sharers
	}
	if c.Jitter != 0 || c.Adaptive.On() {
		s.more = &extra{jitter: c.Jitter, adaptive: c.Adaptive}
	}
	x.valid++
	x.share(name, s)
}

// expectation is a connector as the apply verb checked it.
type expectation struct {
	sum Sum
	c   config.Connector
}

// Expect tells the index that defs, checked whole as checked says (aligned,
// config.Definitions), are being written (by the apply verb, or a
// process's connectors file at start), so that it takes them as they come
// without checking them again: the check of 100,000 connectors is then
// done once in the scheduler, not twice. Each expectation goes when its
// connector next comes, whatever its value; Unexpect forgets those not seen.
func (x *Index) Expect(defs []config.Definition, checked []config.Connector) {
	if len(defs) != len(checked) {
		return // not aligned: each is checked as it comes
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for i, d := range defs {
		c := checked[i]
		// Only what the slot keeps: not the type's config or labels.
		x.expected[d.Name] = expectation{sum: SumOf(d.Value), c: config.Connector{Name: c.Name, Type: c.Type, Enabled: c.Enabled,
			Interval: c.Interval, Jitter: c.Jitter, Adaptive: c.Adaptive, Budget: config.Budget{Name: c.Budget.Name}}}
	}
}

// Unexpect forgets the expectations of defs the watch has not brought (a
// write that failed or lost a conflict).
func (x *Index) Unexpect(defs []config.Definition) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, d := range defs {
		delete(x.expected, d.Name)
	}
	if len(x.expected) == 0 {
		x.expected = map[string]expectation{} // the room of a large apply goes
	}
}

// expectedAs takes the expectation of name when its value is the one with
// sum; any other value is checked.
func (x *Index) expectedAs(name string, sum Sum) (config.Connector, bool) {
	exp, ok := x.expected[name]
	if !ok {
		return config.Connector{}, false
	}
	delete(x.expected, name)
	return exp.c, exp.sum == sum
}

// typeNumber is typ's number in the slots, given it on first sight.
func (x *Index) typeNumber(typ string) uint16 {
	n, ok := x.typeOf[typ]
	if !ok {
		n = uint16(len(x.typeNames))
		x.typeNames = append(x.typeNames, typ)
		x.typeOf[typ] = n
	}
	return n
}

func (x *Index) share(name string, s slot) {
	if s.budget != "" && s.enabled {
		if x.sharers[s.budget] == nil {
			x.sharers[s.budget] = map[string]struct{}{}
		}
		x.sharers[s.budget][name] = struct{}{}
		x.touchBudget(s.budget)
	}
}

func (x *Index) unshare(name string, s slot) {
	if s.budget != "" && s.enabled {
		delete(x.sharers[s.budget], name)
		x.touchBudget(s.budget)
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
	v := Version{Revision: e.Revision, Deleted: e.Deleted}
	if !e.Deleted {
		v.Sum = SumOf(e.Value)
	}
	x.budgetVersions[e.Name] = v
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
	s, ok := x.connectors[name]
	if !ok || !s.valid {
		return Defined{}, false
	}
	return x.defined(name, s, x.linked(s.budget)), true
}

// Connectors returns every valid connector, sorted by name.
func (x *Index) Connectors() []Defined {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make([]Defined, 0, x.valid)
	budgets := map[string]config.Budget{}
	for name, s := range x.connectors {
		if !s.valid {
			continue
		}
		b, ok := budgets[s.budget]
		if !ok {
			b = x.linked(s.budget)
			budgets[s.budget] = b
		}
		out = append(out, x.defined(name, s, b))
	}
	slices.SortFunc(out, func(a, b Defined) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

func (x *Index) defined(name string, s slot, b config.Budget) Defined {
	d := Defined{Name: name, Type: x.typeNames[s.typ], Enabled: s.enabled, Interval: s.interval,
		Budget: b, Revision: s.revision}
	if s.more != nil {
		d.Jitter, d.Adaptive = s.more.jitter, s.more.adaptive
	}
	return d
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
	return x.valid
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
		if s, ok := x.connectors[c]; ok && s.valid && s.interval > 0 {
			b.Demand += float64(b.Per) / float64(s.interval)
		}
	}
	return b
}

// Version returns one key's version (Versions).
func (x *Index) Version(r Ref) (Version, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.version(r)
}

// All lists every key's version (Versions), from a copy taken at the call.
func (x *Index) All() iter.Seq2[Ref, Version] {
	x.mu.RLock()
	snap := make(Snapshot, len(x.connectors)+len(x.budgetVersions))
	for name, s := range x.connectors {
		snap[Connector(name)] = s.version()
	}
	for name, v := range x.budgetVersions {
		snap[Budget(name)] = v
	}
	x.mu.RUnlock()
	return snap.All()
}

var _ Versions = (*Index)(nil)
