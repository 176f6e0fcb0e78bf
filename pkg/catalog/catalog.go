// Package catalog keeps the connector definitions in a replicated NATS KV
// bucket, one key per connector and per budget, each value the JSON its
// user wrote (${VAR} references unresolved: a worker resolves them from its
// own environment). The bucket keeps the last revisions of every key, so a
// change can be read back (History) and undone (Rollback).
//
// Apply writes a whole set of definitions as a difference, each write
// conditional on the revision it replaces, so that two operators applying at
// once never lose an update. Index follows the bucket with a watch: the
// scheduler installs schedules from it and the aggregator lists connectors
// from it; a worker reads one definition at a time (Get).
package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is the KV bucket of the definitions.
const Bucket = "pollgrid-connectors"

// history is how many revisions of each key the bucket keeps.
const history = 10

// Kind says what a key defines.
type Kind string

// The kinds of definition; each is a key prefix in the bucket.
const (
	KindConnector Kind = "connectors"
	KindBudget    Kind = "budgets"
)

// Ref names one definition.
type Ref struct {
	Kind Kind   `json:"kind"`
	Name string `json:"name"`
}

// Connector names a connector's definition.
func Connector(name string) Ref { return Ref{Kind: KindConnector, Name: name} }

// Budget names a budget's definition.
func Budget(name string) Ref { return Ref{Kind: KindBudget, Name: name} }

// Key is the ref's key in the bucket: "connectors.<name>" or "budgets.<name>".
func (r Ref) Key() string { return string(r.Kind) + "." + r.Name }

func (r Ref) String() string {
	if r.Kind == KindBudget {
		return "budget " + r.Name
	}
	return r.Name
}

// ParseKey reads a key of the bucket back into its ref.
func ParseKey(key string) (Ref, bool) {
	kind, name, ok := strings.Cut(key, ".")
	if !ok || name == "" || (Kind(kind) != KindConnector && Kind(kind) != KindBudget) {
		return Ref{}, false
	}
	return Ref{Kind: Kind(kind), Name: name}, true
}

// Entry is one revision of one definition.
type Entry struct {
	Ref
	// Value is the definition as written; nil for a deletion.
	Value    json.RawMessage
	Revision uint64
	Created  time.Time
	// Deleted marks the revision that deleted the definition.
	Deleted bool
}

// Errors a caller tells apart.
var (
	// ErrNotFound is a definition the bucket does not hold (or holds deleted).
	ErrNotFound = errors.New("no such definition")
	// ErrConflict is a write whose definition changed since it was read.
	ErrConflict = errors.New("changed meanwhile")
)

// Options configure the bucket.
type Options struct {
	// Replicas of the bucket's stream: NATS_STREAM_REPLICAS, as the
	// other streams; default 1.
	Replicas int
}

// Catalog is the bucket of definitions.
type Catalog struct {
	js jetstream.JetStream
	kv jetstream.KeyValue
}

// Open creates the bucket, or updates its settings, and returns it.
func Open(ctx context.Context, js jetstream.JetStream, opts Options) (*Catalog, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "pollgrid connector and budget definitions, as written (pollctl apply)",
		History:     history,
		Replicas:    max(1, opts.Replicas),
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", Bucket, err)
	}
	return &Catalog{js: js, kv: kv}, nil
}

// Get returns the latest revision of a definition; ErrNotFound when it
// is deleted or was never written.
func (c *Catalog) Get(ctx context.Context, ref Ref) (Entry, error) {
	e, err := c.kv.Get(ctx, ref.Key())
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return Entry{}, fmt.Errorf("%s: %w", ref, ErrNotFound)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("read %s from %s: %w", ref, Bucket, err)
	}
	return entryOf(ref, e), nil
}

// History returns the revisions the bucket keeps of a definition, oldest
// first, deletions included; ErrNotFound when it has none.
func (c *Catalog) History(ctx context.Context, ref Ref) ([]Entry, error) {
	list, err := c.kv.History(ctx, ref.Key())
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("%s: %w", ref, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read the history of %s from %s: %w", ref, Bucket, err)
	}
	out := make([]Entry, len(list))
	for i, e := range list {
		out[i] = entryOf(ref, e)
	}
	return out, nil
}

// Revision returns one revision of a definition; ErrNotFound when the
// bucket no longer keeps it or it is of another key.
func (c *Catalog) Revision(ctx context.Context, ref Ref, revision uint64) (Entry, error) {
	e, err := c.kv.GetRevision(ctx, ref.Key(), revision)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return Entry{}, fmt.Errorf("%s revision %d: %w (pollctl history %s lists the revisions kept)", ref, revision, ErrNotFound, ref.Name)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("read %s revision %d from %s: %w", ref, revision, Bucket, err)
	}
	return entryOf(ref, e), nil
}

// Put writes value as the definition's next revision, on condition that
// its latest revision is still last (0: the definition does not exist, or
// is deleted). It returns the new revision.
func (c *Catalog) Put(ctx context.Context, ref Ref, value []byte, last uint64) (uint64, error) {
	rev, err := c.kv.Update(ctx, ref.Key(), value, last)
	if err != nil {
		return 0, writeError(ref, err)
	}
	return rev, nil
}

// Delete deletes a definition, on condition that its latest revision is
// still last (0: whatever it is). Its history stays.
func (c *Catalog) Delete(ctx context.Context, ref Ref, last uint64) error {
	var opts []jetstream.KVDeleteOpt
	if last > 0 {
		opts = append(opts, jetstream.LastRevision(last))
	}
	if err := c.kv.Delete(ctx, ref.Key(), opts...); err != nil {
		return writeError(ref, err)
	}
	return nil
}

func writeError(ref Ref, err error) error {
	if isConflict(err) {
		return fmt.Errorf("%s %w (someone else wrote it since it was read): read it again and retry", ref, ErrConflict)
	}
	return fmt.Errorf("write %s to %s: %w", ref, Bucket, err)
}

// isConflict says a conditional write found another revision last.
func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) ||
		errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

func entryOf(ref Ref, e jetstream.KeyValueEntry) Entry {
	out := Entry{Ref: ref, Revision: e.Revision(), Created: e.Created()}
	if e.Operation() == jetstream.KeyValuePut {
		out.Value = e.Value()
	} else {
		out.Deleted = true
	}
	return out
}
