package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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
// A lease that expired without anyone else acquiring it still commits: the
// fence still equals its token, which proves that no newer writer exists,
// so accepting the write cannot overwrite anything newer.
func (s *Store) Commit(ctx context.Context, l *Lease, c Commit) error {
	if l == nil {
		return errors.New("commit state: nil lease")
	}
	now := c.Now
	if now.IsZero() {
		now = time.Now()
	}
	today := Day(now)
	forgetBefore := int64(0) // no day is below 0: sweep nothing
	if c.Fetched {
		forgetBefore = today - int64(s.opts.SeenTTL/(24*time.Hour))
	}
	fields := c.State.fields()
	data := 0
	for _, it := range c.Seen {
		if it.Data != nil {
			data++
		}
	}
	args := make([]any, 0, 9+len(fields)+2*len(c.Seen)+2*data+len(c.Forget))
	args = append(args,
		strconv.FormatUint(l.Token, 10),
		l.value(),
		today,
		forgetBefore,
		SweepStep,
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
	keys := []string{
		s.key(l.Connector, keyLease),
		s.key(l.Connector, keyFence),
		s.key(l.Connector, keyState),
		s.key(l.Connector, keySeen),
		s.key(l.Connector, keySeenData),
		s.key(l.Connector, keySeenAt),
	}
	n, err := s.commit.Run(ctx, s.rdb, keys, args...).Int()
	if err != nil {
		return fmt.Errorf("commit state %s: %w", l.Connector, err)
	}
	if n == 0 {
		return fmt.Errorf("commit state %s token %d: %w", l.Connector, l.Token, ErrFenced)
	}
	return nil
}

// SweepStep is how many seen entries one fetched commit looks at for
// entries to forget by age. A sweep starts at most once a day per
// connector, and goes on a step per commit until it has seen every entry.
const SweepStep = 1000
