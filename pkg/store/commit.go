package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// Commit is what one poll writes back.
type Commit struct {
	// State is written whole: fields with zero values are deleted.
	State State
	// Seen lists the items to remember: those a poll published a change
	// of (a deleted one as a tombstone), and those it returned unchanged on
	// a later day than their entry's, which moves the entry's day.
	Seen []SeenItem
	// Forget lists the items to forget whole, entry and data: those the
	// connector's seen_cap makes room for. An id in both lists is forgotten
	// first, then written (a deleted item's tombstone drops its data).
	Forget []string
	// Now dates the commit; the zero time means time.Now().
	Now time.Time
	// Fetched is true when the poll read the upstream's answer (a 200):
	// only then does the commit forget, a step at a time, the entries no
	// poll has returned for SeenTTL. A failed poll or a 304 saw no items,
	// which says nothing about their absence.
	Fetched bool
}

// Commit writes a poll's state and seen items and releases the lease, in
// one round trip, fenced: when a newer lease was acquired since l the
// result wraps ErrFenced and nothing is written. A fetched commit also
// sweeps a step of the seen items (SweepStep entries, a whole pass a day)
// and forgets those whose day is more than SeenTTL ago.
//
// Of a lease Acquire took, the first commit sends only the state fields
// that differ from those Acquire read: while the fence equals the lease's
// token no one else wrote them (every writer of those fields takes a
// lease, and so moves the fence), so the state written is still whole.
// After it succeeds, l.Carry holds the state as written, for the next
// AcquireCarried. A second commit under the same lease sends every field.
//
// A lease that expired without anyone else acquiring it still commits: the
// fence still equals its token, which proves that no newer writer exists,
// so accepting the write cannot overwrite anything newer.
func (s *Store) Commit(ctx context.Context, l *Lease, c Commit) error {
	if l == nil {
		return errors.New("commit state: nil lease")
	}
	l.carry, l.committed = nil, nil
	// Only a lease's first commit knows what Redis holds: a commit sent
	// before (whatever its answer) may have written the state already.
	first := l.keys != nil && !l.sent
	l.sent = true
	now := c.Now
	if now.IsZero() {
		now = time.Now()
	}
	today := Day(now)
	forgetBefore := int64(0) // no day is below 0: sweep nothing
	if c.Fetched {
		forgetBefore = today - int64(s.opts.SeenTTL/(24*time.Hour))
	}
	buf := fieldBuffers.Get().(*fieldBuffer)
	defer fieldBuffers.Put(buf)
	fields := c.State.appendFields(buf.next[:0])
	buf.next = fields
	if first { // l.read is what Redis holds: send what changed
		buf.prev = l.read.appendFields(buf.prev[:0])
		fields = changedFields(fields, buf.prev)
	}
	data := 0
	for _, it := range c.Seen {
		if it.Data != nil {
			data++
		}
	}
	args := make([]any, 0, 8+len(fields)+2*len(c.Seen)+2*data+len(c.Forget))
	args = append(args,
		strconv.FormatUint(l.Token, 10),
		today,
		forgetBefore,
		sweepStepArg,
		len(fields)/2,
		len(c.Seen),
		data,
		len(c.Forget),
	)
	for _, f := range fields {
		args = append(args, f)
	}
	for _, it := range c.Seen {
		if it.ID == "" {
			return fmt.Errorf("commit state %s: seen item with an empty id", l.Connector)
		}
		args = append(args, it.ID, it.Entry.encode())
	}
	for _, it := range c.Seen {
		if it.Data != nil {
			args = append(args, it.ID, it.Data)
		}
	}
	for _, id := range c.Forget {
		args = append(args, id)
	}
	res, err := s.commit.Run(ctx, s.rdb, s.leaseKeys(l).names[:], args...).Slice()
	if err != nil {
		return fmt.Errorf("commit state %s: %w", l.Connector, err)
	}
	if ok, _ := res[0].(int64); ok == 0 {
		return fmt.Errorf("commit state %s token %d: %w", l.Connector, l.Token, ErrFenced)
	}
	if first && len(res) == 2 {
		count, _ := res[1].(int64)
		l.committed = &committed{c: c, count: int(count)}
	}
	return nil
}

// changedFields keeps, of next (field, value pairs), those whose value
// differs from prev's (the same fields in the same order), and attempts,
// which Acquire wrote since it read prev.
func changedFields(next, prev []string) []string {
	kept := next[:0]
	for i := 0; i+1 < len(next); i += 2 {
		if next[i] == fieldAttempts || next[i+1] != prev[i+1] {
			kept = append(kept, next[i], next[i+1])
		}
	}
	return kept
}

// fieldBuffer holds a commit's encoded state fields, reused by the next.
type fieldBuffer struct{ next, prev []string }

var fieldBuffers = sync.Pool{New: func() any { return &fieldBuffer{} }}

// committed is what a Commit wrote (c) and what its script answered: how
// many items are remembered (count).
type committed struct {
	c     Commit
	count int
}

// carry is the state the commit left, as Acquire would read it back: times
// in whole milliseconds, the seen items as they are now (count of them);
// the operator's fields are left out (the carried acquire reads them).
// nil when the seen items cannot be told: Acquire read none (more than
// PrefetchSeen) and now there are few enough to prefetch, or the sweep
// forgot some.
func (done *committed) carry(l *Lease) *Carried {
	c, count := done.c, done.count
	st := State{
		Cursor: c.State.Cursor, ETag: c.State.ETag, LastModified: c.State.LastModified,
		LastPoll: wholeMillis(c.State.LastPoll), LastSuccess: wholeMillis(c.State.LastSuccess),
		ConsecutiveFailures: c.State.ConsecutiveFailures, LastError: c.State.LastError,
		NotBefore: wholeMillis(c.State.NotBefore), NotBeforeBy: c.State.NotBeforeBy,
		AdaptRequestedAt: wholeMillis(c.State.AdaptRequestedAt), SeenCount: count,
	}
	if c.State.EffectiveInterval > 0 {
		st.EffectiveInterval = time.Duration(c.State.EffectiveInterval.Milliseconds()) * time.Millisecond
	}
	switch {
	case count > PrefetchSeen:
		st.Seen = nil
	case l.read.Seen == nil && count > 0:
		return nil
	case len(c.Seen) == 0 && len(c.Forget) == 0 && l.read.Seen != nil:
		st.Seen = l.read.Seen // unchanged, and never changed in place
	default:
		seen := make(map[string]SeenEntry, len(l.read.Seen)+len(c.Seen))
		for id, e := range l.read.Seen {
			seen[id] = e
		}
		for _, id := range c.Forget {
			delete(seen, id)
		}
		for _, it := range c.Seen {
			seen[it.ID] = it.Entry
		}
		st.Seen = seen
	}
	if st.Seen != nil && len(st.Seen) != count {
		return nil // the sweep forgot some
	}
	return &Carried{token: l.Token, keys: l.keys, state: st}
}

// wholeMillis is t as a state field stores it.
func wholeMillis(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return time.UnixMilli(t.UnixMilli()).UTC()
}

// SweepStep is how many seen entries one fetched commit looks at for
// entries to forget by age. A sweep starts at most once a day per
// connector, and goes on a step per commit until it has seen every entry.
const SweepStep = 1000

// sweepStepArg is SweepStep as a script argument, boxed once rather than
// per commit.
var sweepStepArg any = SweepStep
