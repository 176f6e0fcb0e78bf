package poll

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/store"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// ErrSeenCap is the error of an item left unpublished because its
// connector remembers seen_cap items already, none of which could be
// forgotten (every one is in the same answer).
var ErrSeenCap = errors.New("not published: the connector already remembers seen_cap items, all in this answer")

// diff turns one answer into signals and the seen items to commit.
type diff struct {
	r        *Runner
	c        config.Connector
	prev     store.State
	out      *Outcome
	today    int64
	observed *timestamppb.Timestamp
	// all is every remembered item, read once when deletions or the
	// seen_cap need it.
	all       map[string]store.SeenEntry
	untracked []connector.ItemError
}

// items compares each item with its entry: a new version is a change with
// the next sequence; the same version is nothing to publish, and rewritten
// only when its entry's day is an earlier one.
func (d *diff) items(ctx context.Context, items []connector.Item, complete bool) error {
	if len(items) == 0 {
		return nil
	}
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.ID
	}
	seen, err := d.entries(ctx, ids)
	if err != nil {
		return fmt.Errorf("poll %s: read seen items: %w", d.c.Name, err)
	}
	room, err := d.room(ctx, ids, seen)
	if err != nil {
		return err
	}
	for i, it := range items {
		e := seen[i]
		if e.Version == it.Version {
			if e.Day < d.today {
				d.remember(it.ID, store.SeenEntry{Seq: e.Seq, Day: d.today, Version: it.Version}, d.keep(it, complete))
			}
			continue
		}
		if e.Seq == 0 {
			if room == 0 {
				d.untracked = append(d.untracked, connector.ItemError{ID: it.ID, Err: ErrSeenCap})
				continue
			}
			room--
		}
		change := bus.ChangeUpdated
		if !e.Known() {
			change = bus.ChangeCreated
		}
		data := d.r.Redactor.JSON(it.Data) // an upstream may echo a credential back
		next := store.SeenEntry{Seq: e.Seq + 1, Day: d.today, Version: it.Version}
		d.signal(it.ID, next, change, data)
		var kept []byte
		if complete {
			kept = data // for the deleted signal, should it go
		}
		d.remember(it.ID, next, kept)
	}
	return nil
}

// keep is the data an unchanged item keeps for its deleted signal.
func (d *diff) keep(it connector.Item, complete bool) []byte {
	if !complete {
		return nil
	}
	return d.r.Redactor.JSON(it.Data)
}

// room is how many items never seen the commit may remember. When the
// answer holds more than the connector's seen_cap allows, the items seen
// longest ago that the answer does not hold are forgotten, down to 95 % of
// the cap (so that this happens once in a while, not at every poll); what
// still does not fit is left unpublished.
func (d *diff) room(ctx context.Context, ids []string, seen []store.SeenEntry) (int, error) {
	fresh := 0
	for _, e := range seen {
		if e.Seq == 0 {
			fresh++
		}
	}
	count, capacity := d.prev.SeenCount, d.c.SeenCap
	if capacity <= 0 { // a Connector built in code rather than parsed
		capacity = config.DefaultSeenCap
	}
	if count+fresh <= capacity {
		d.out.Remembered = count + fresh
		return fresh, nil
	}
	all, err := d.seen(ctx)
	if err != nil {
		return 0, err
	}
	count = len(all)
	inAnswer := make(map[string]bool, len(ids))
	for _, id := range ids {
		inAnswer[id] = true
	}
	type candidate struct {
		id  string
		day int64
	}
	var old []candidate
	for id, e := range all {
		if !inAnswer[id] {
			old = append(old, candidate{id, e.Day})
		}
	}
	slices.SortFunc(old, func(a, b candidate) int { return cmp.Or(cmp.Compare(a.day, b.day), cmp.Compare(a.id, b.id)) })
	n := min(len(old), max(0, count+fresh-capacity+capacity/20))
	for _, o := range old[:n] {
		d.out.Commit.Forget = append(d.out.Commit.Forget, o.id)
		delete(all, o.id)
	}
	room := max(0, min(fresh, capacity-count+n))
	d.out.Forgotten, d.out.Remembered = n, count-n+room
	return room, nil
}

// deletions publishes a deleted signal for every item remembered with a
// version and absent from a complete listing, carrying its last known
// version and data, and leaves a tombstone (its sequence, no version), so
// that it is deleted once and created again, with a later sequence, should
// it come back. An item the listing returned but the poll could not use is
// still there; when such an item cannot be named as one seen before, it
// might be any of them, and nothing is deleted this time.
func (d *diff) deletions(ctx context.Context, res connector.Result) error {
	all, err := d.seen(ctx)
	if err != nil {
		return err
	}
	present := make(map[string]bool, len(res.Items)+len(d.out.Failed))
	for _, it := range res.Items {
		present[it.ID] = true
	}
	for _, f := range d.out.Failed {
		if _, known := all[f.ID]; !known {
			return nil
		}
		present[f.ID] = true
	}
	var gone []string
	for id, e := range all {
		if e.Known() && !present[id] {
			gone = append(gone, id)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	slices.Sort(gone)
	data, err := d.r.Seen.SeenData(ctx, d.c.Name, gone)
	if err != nil {
		return fmt.Errorf("poll %s: read the data of deleted items: %w", d.c.Name, err)
	}
	for i, id := range gone {
		e := all[id]
		d.signal(id, store.SeenEntry{Seq: e.Seq + 1, Version: e.Version}, bus.ChangeDeleted, data[i]) // data redacted when kept
		d.out.Commit.Forget = append(d.out.Commit.Forget, id)                                         // its data
		d.remember(id, store.SeenEntry{Seq: e.Seq + 1, Day: e.Day}, nil)
	}
	return nil
}

func (d *diff) signal(id string, e store.SeenEntry, change string, data []byte) {
	d.out.Signals = append(d.out.Signals, &pollgridv1.Signal{
		Connector:     d.c.Name,
		ConnectorType: d.c.Type,
		ItemId:        id,
		Version:       e.Version,
		Change:        change,
		ObservedAt:    d.observed,
		Data:          data,
		Generation:    d.prev.Generation,
		Sequence:      e.Seq,
	})
}

func (d *diff) remember(id string, e store.SeenEntry, data []byte) {
	d.out.Commit.Seen = append(d.out.Commit.Seen, store.SeenItem{ID: id, Entry: e, Data: data})
}

// entries are the entries remembered for ids: from the state when Acquire
// brought them along, else read from the store.
func (d *diff) entries(ctx context.Context, ids []string) ([]store.SeenEntry, error) {
	if d.prev.Seen == nil {
		return d.r.Seen.SeenEntries(ctx, d.c.Name, ids)
	}
	out := make([]store.SeenEntry, len(ids))
	for i, id := range ids {
		out[i] = d.prev.Seen[id]
	}
	return out, nil
}

// seen is every remembered item, read at most once per poll.
func (d *diff) seen(ctx context.Context) (map[string]store.SeenEntry, error) {
	if d.all != nil {
		return d.all, nil
	}
	if d.prev.Seen != nil {
		d.all = maps.Clone(d.prev.Seen)
		return d.all, nil
	}
	all, err := d.r.Seen.Seen(ctx, d.c.Name)
	if err != nil {
		return nil, fmt.Errorf("poll %s: read seen items: %w", d.c.Name, err)
	}
	d.all = all
	return all, nil
}
