package catalog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"iter"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pollgrid/pollgrid/pkg/config"
)

// Version is what apply needs to know of a key's latest revision.
type Version struct {
	Revision uint64
	// Deleted: the latest revision deleted the definition.
	Deleted bool
	// Sum is a digest of the value, to tell an unchanged definition.
	Sum Sum
}

// Sum is a digest of a definition's value.
type Sum [16]byte

// SumOf returns the digest of value.
func SumOf(value []byte) Sum {
	full := sha256.Sum256(value)
	return Sum(full[:16])
}

// String is the digest in hex, as the definitions verb lists it.
func (s Sum) String() string { return hex.EncodeToString(s[:]) }

// Versions says which revision of each key the bucket holds: a Snapshot,
// or an Index that follows the bucket.
type Versions interface {
	Version(Ref) (Version, bool)
	// All lists every key's version, deleted ones included.
	All() iter.Seq2[Ref, Version]
}

// Snapshot is every key's version read at one moment.
type Snapshot map[Ref]Version

// Version returns one key's version.
func (s Snapshot) Version(r Ref) (Version, bool) { v, ok := s[r]; return v, ok }

// All lists every key's version.
func (s Snapshot) All() iter.Seq2[Ref, Version] {
	return func(yield func(Ref, Version) bool) {
		for r, v := range s {
			if !yield(r, v) {
				return
			}
		}
	}
}

// Snapshot reads the latest revision of every key.
func (c *Catalog) Snapshot(ctx context.Context) (Snapshot, error) {
	snap := Snapshot{}
	err := c.each(ctx, func(e jetstream.KeyValueEntry) {
		ref, ok := ParseKey(e.Key())
		if !ok {
			return
		}
		v := Version{Revision: e.Revision(), Deleted: e.Operation() != jetstream.KeyValuePut}
		if !v.Deleted {
			v.Sum = SumOf(e.Value())
		}
		snap[ref] = v
	})
	return snap, err
}

// each hands fn the latest revision of every key, then returns.
func (c *Catalog) each(ctx context.Context, fn func(jetstream.KeyValueEntry)) error {
	w, err := c.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("read %s: %w", Bucket, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case e := <-w.Updates():
			if e == nil {
				return nil
			}
			fn(e)
		case <-ctx.Done():
			return fmt.Errorf("read %s: %w", Bucket, context.Cause(ctx))
		}
	}
}

// ApplyOptions tune Apply.
type ApplyOptions struct {
	// Prune deletes the definitions the set does not hold: the set is the
	// whole catalog (a GitOps file, or a process's CONNECTORS_FILE).
	Prune bool
	// DryRun computes the difference and writes nothing.
	DryRun bool
	// Versions is what the bucket holds; nil reads a Snapshot first.
	Versions Versions
}

// Diff is what an apply changed (or would change), each list sorted.
type Diff struct {
	Created   []Ref `json:"created,omitempty"`
	Changed   []Ref `json:"changed,omitempty"`
	Deleted   []Ref `json:"deleted,omitempty"`
	Unchanged int   `json:"unchanged"`
}

// Writes counts the definitions the diff writes.
func (d Diff) Writes() int { return len(d.Created) + len(d.Changed) + len(d.Deleted) }

// write is one conditional write of Apply.
type write struct {
	ref   Ref
	value []byte // nil deletes
	last  uint64
}

// Plan computes what applying defs writes, against vs.
func Plan(defs *config.Definitions, vs Versions, prune bool) (Diff, []write) {
	var diff Diff
	var writes []write
	want := make(map[Ref]bool, len(defs.Connectors)+len(defs.Budgets))
	// Budgets first, so that a connector never names a budget not yet written.
	for _, group := range []struct {
		kind Kind
		list []config.Definition
	}{{KindBudget, defs.Budgets}, {KindConnector, defs.Connectors}} {
		for _, d := range group.list {
			ref := Ref{Kind: group.kind, Name: d.Name}
			want[ref] = true
			have, ok := vs.Version(ref)
			switch {
			case !ok || have.Deleted:
				diff.Created = append(diff.Created, ref)
				writes = append(writes, write{ref: ref, value: d.Value, last: have.Revision})
			case have.Sum == SumOf(d.Value):
				diff.Unchanged++
			default:
				diff.Changed = append(diff.Changed, ref)
				writes = append(writes, write{ref: ref, value: d.Value, last: have.Revision})
			}
		}
	}
	if prune {
		var gone []write
		for ref, have := range vs.All() {
			if !have.Deleted && !want[ref] {
				diff.Deleted = append(diff.Deleted, ref)
				gone = append(gone, write{ref: ref, last: have.Revision})
			}
		}
		// Connectors before budgets, the reverse of creation.
		slices.SortFunc(gone, func(a, b write) int { return -compareRefs(a.ref, b.ref) })
		writes = append(writes, gone...)
	}
	for _, list := range [][]Ref{diff.Created, diff.Changed, diff.Deleted} {
		slices.SortFunc(list, compareRefs)
	}
	return diff, writes
}

// compareRefs orders budgets before connectors, then by name.
func compareRefs(a, b Ref) int {
	if a.Kind != b.Kind {
		if a.Kind == KindBudget {
			return -1
		}
		return 1
	}
	return bytes.Compare([]byte(a.Name), []byte(b.Name))
}

// Apply writes the difference between defs and the bucket: definitions new
// or changed, and with Prune those defs does not hold. Every write is
// conditional on the revision it replaces: a definition someone else
// changed meanwhile fails the apply with ErrConflict (what was written
// before stays; applying again finishes it). defs must have been checked
// (config.ParseDefinitions).
func (c *Catalog) Apply(ctx context.Context, defs *config.Definitions, opts ApplyOptions) (Diff, error) {
	vs := opts.Versions
	if vs == nil {
		snap, err := c.Snapshot(ctx)
		if err != nil {
			return Diff{}, err
		}
		vs = snap
	}
	diff, writes := Plan(defs, vs, opts.Prune)
	if opts.DryRun || len(writes) == 0 {
		return diff, nil
	}
	return diff, c.writeAll(ctx, writes)
}

// window is how many writes are in flight at once.
const window = 4096

// writeAll publishes the writes asynchronously, a window at a time (as
// kv.Put would one by one), and returns the first failure. Budgets are
// written before the connectors that may name them, deletions of
// connectors before those of budgets: writes keeps that order, and each
// window is acknowledged before the next is sent.
func (c *Catalog) writeAll(ctx context.Context, writes []write) error {
	var conflicts []Ref
	for len(writes) > 0 {
		n := min(window, len(writes))
		if i := slices.IndexFunc(writes[:n], func(w write) bool { return w.ref.Kind != writes[0].ref.Kind }); i > 0 {
			n = i // one kind per window: see above
		}
		batch := writes[:n]
		writes = writes[n:]
		futures := make([]jetstream.PubAckFuture, len(batch))
		for i, w := range batch {
			f, err := c.js.PublishMsgAsync(w.msg(), jetstream.WithExpectLastSequencePerSubject(w.last), jetstream.WithStallWait(10*time.Second))
			if err != nil {
				return writeError(w.ref, err)
			}
			futures[i] = f
		}
		var failed error
		for i, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				if isConflict(err) {
					conflicts = append(conflicts, batch[i].ref)
				} else if failed == nil {
					failed = writeError(batch[i].ref, err)
				}
			case <-ctx.Done():
				return fmt.Errorf("apply to %s: %w", Bucket, context.Cause(ctx))
			}
		}
		if failed != nil {
			return failed
		}
	}
	if len(conflicts) > 0 {
		slices.SortFunc(conflicts, compareRefs)
		return &ConflictError{Refs: conflicts}
	}
	return nil
}

// ConflictError lists the definitions someone else changed while they were
// applied; the rest of the apply was written.
type ConflictError struct{ Refs []Ref }

func (e *ConflictError) Error() string {
	names := make([]string, 0, min(len(e.Refs), 5))
	for _, r := range e.Refs[:min(len(e.Refs), 5)] {
		names = append(names, r.String())
	}
	more := ""
	if len(e.Refs) > 5 {
		more = fmt.Sprintf(" and %d more", len(e.Refs)-5)
	}
	return fmt.Sprintf("%d definitions changed while this apply wrote them (%s%s): someone else applied at the same time; apply again",
		len(e.Refs), joinComma(names), more)
}

func (e *ConflictError) Unwrap() error { return ErrConflict }

func joinComma(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(x)
	}
	return b.String()
}

func (w write) msg() *nats.Msg {
	m := nats.NewMsg("$KV." + Bucket + "." + w.ref.Key())
	if w.value == nil {
		m.Header.Set("KV-Operation", "DEL")
		return m
	}
	m.Data = w.value
	return m
}
