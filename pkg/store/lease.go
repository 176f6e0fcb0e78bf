package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

var (
	// ErrLeaseHeld means another owner holds the connector's lease. It comes
	// wrapped in a *LeaseHeldError that tells how long the lease has left.
	ErrLeaseHeld = errors.New("lease held by another poll")
	// ErrLeaseLost means the lease expired, or expired and was taken over,
	// since it was acquired or last renewed: stop polling.
	ErrLeaseLost = errors.New("lease lost")
	// ErrFenced means a newer lease was acquired since this one: its Commit
	// was rejected and nothing was written.
	ErrFenced = errors.New("fenced: a newer lease exists, nothing written")
	// ErrPaused means Acquire took no lease for a tick: an operator paused
	// the connector (State.PausedAt says since when, PausedBy by whom).
	ErrPaused = errors.New("connector paused")
	// ErrWaiting means Acquire took no lease for a tick: the connector waits
	// until State.NotBefore, for the reason State.NotBeforeBy says.
	ErrWaiting = errors.New("connector waiting")
)

// Claim says what a lease is taken for.
type Claim int

const (
	// ClaimTick is a scheduled poll. It takes no lease while the connector
	// is paused (ErrPaused) or waiting (ErrWaiting), and a poll it begins
	// counts in State.Attempts.
	ClaimTick Claim = iota
	// ClaimTrigger is a poll an operator asked for: it runs whatever the
	// pause or wait, and counts in State.Attempts.
	ClaimTrigger
	// ClaimAdmin is an operator's write (reset): no poll, so not counted.
	ClaimAdmin
)

// LeaseHeldError is returned by Acquire while the lease is held.
// errors.Is(err, ErrLeaseHeld) is true.
type LeaseHeldError struct {
	Connector string
	// Remaining is the holder's lease time left; 0 when Redis reported none.
	Remaining time.Duration
}

func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("acquire lease %s: %v for %s more", e.Connector, ErrLeaseHeld, e.Remaining)
}

func (e *LeaseHeldError) Unwrap() error { return ErrLeaseHeld }

// Lease is one owner's right to poll one connector, until TTL passes without
// a Renew. Token is the fencing token that Commit checks.
type Lease struct {
	Connector string
	Owner     string
	Token     uint64
	TTL       time.Duration
}

func (l *Lease) value() string { return l.Owner + ":" + strconv.FormatUint(l.Token, 10) }

// Acquire takes the connector's lease for ttl and returns its state, in one
// round trip. Every successful Acquire takes a new, greater fencing token.
// While the lease is held, by anyone (owner included: two ticks of one
// connector may reach one worker), the error is a *LeaseHeldError. A tick
// (ClaimTick) of a paused or waiting connector takes no lease: the error is
// ErrPaused or ErrWaiting, and the state, returned with it, says why.
// Whether a connector waits is judged on Redis's clock, the one clock every
// worker shares.
func (s *Store) Acquire(ctx context.Context, connector, owner string, ttl time.Duration, claim Claim) (*Lease, State, error) {
	if err := checkName(connector); err != nil {
		return nil, State{}, fmt.Errorf("acquire lease: %w", err)
	}
	if owner == "" {
		return nil, State{}, fmt.Errorf("acquire lease %s: empty owner", connector)
	}
	if ttl < time.Millisecond {
		return nil, State{}, fmt.Errorf("acquire lease %s: ttl %s is under 1ms", connector, ttl)
	}
	gate, count := 0, 1
	switch claim {
	case ClaimTick:
		gate = 1
	case ClaimAdmin:
		count = 0
	}
	keys := []string{s.key(connector, keyLease), s.key(connector, keyFence), s.key(connector, keyState), s.key(connector, keySeen)}
	res, err := s.acquire.Run(ctx, s.rdb, keys, owner, ttl.Milliseconds(), PrefetchSeen, gate, count).Slice()
	if err != nil {
		return nil, State{}, fmt.Errorf("acquire lease %s: %w", connector, err)
	}
	if len(res) < 2 {
		return nil, State{}, fmt.Errorf("acquire lease %s: unexpected script reply %v", connector, res)
	}
	switch code, _ := res[0].(int64); code {
	case 0:
		pttl, _ := res[1].(int64)
		return nil, State{}, &LeaseHeldError{Connector: connector, Remaining: max(0, time.Duration(pttl)*time.Millisecond)}
	case 2:
		if len(res) < 3 {
			return nil, State{}, fmt.Errorf("acquire lease %s: unexpected script reply %v", connector, res)
		}
		flat, _ := res[2].([]any)
		st, err := parseState(pairs(flat))
		if err != nil {
			return nil, State{}, fmt.Errorf("acquire lease %s: read state: %w", connector, err)
		}
		if why, _ := res[1].(string); why == "paused" {
			return nil, st, ErrPaused
		}
		return nil, st, ErrWaiting
	}
	if len(res) < 6 {
		return nil, State{}, fmt.Errorf("acquire lease %s: unexpected script reply %v", connector, res)
	}
	text, _ := res[1].(string)
	token, err := strconv.ParseUint(text, 10, 64)
	if err != nil {
		return nil, State{}, fmt.Errorf("acquire lease %s: fencing token %q: %w", connector, text, err)
	}
	flat, _ := res[2].([]any)
	st, err := parseState(pairs(flat))
	if err != nil {
		return nil, State{}, fmt.Errorf("acquire lease %s: read state: %w", connector, err)
	}
	if prefetched, _ := res[3].(int64); prefetched == 1 {
		flat, _ := res[4].([]any)
		st.Seen = parseSeen(flat)
	}
	count64, _ := res[5].(int64)
	st.SeenCount = int(count64)
	return &Lease{Connector: connector, Owner: owner, Token: token, TTL: ttl}, st, nil
}

// PrefetchSeen is how many seen items a connector may remember for Acquire
// to return their versions with the state.
const PrefetchSeen = 256

// pairs turns a flat HGETALL reply into a map.
func pairs(flat []any) map[string]string {
	m := make(map[string]string, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		k, _ := flat[i].(string)
		v, _ := flat[i+1].(string)
		m[k] = v
	}
	return m
}

// Renew extends the lease by its TTL if it is still this one (same owner
// and token); otherwise it returns ErrLeaseLost.
func (s *Store) Renew(ctx context.Context, l *Lease) error {
	if l == nil {
		return errors.New("renew lease: nil lease")
	}
	n, err := s.renew.Run(ctx, s.rdb, []string{s.key(l.Connector, keyLease)}, l.value(), l.TTL.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("renew lease %s: %w", l.Connector, err)
	}
	if n == 0 {
		return fmt.Errorf("renew lease %s token %d: %w", l.Connector, l.Token, ErrLeaseLost)
	}
	return nil
}

// Release gives the lease up if it is still this one. A lease already
// expired or taken over is not an error: there is nothing left to give up.
func (s *Store) Release(ctx context.Context, l *Lease) error {
	if l == nil {
		return errors.New("release lease: nil lease")
	}
	if err := s.release.Run(ctx, s.rdb, []string{s.key(l.Connector, keyLease)}, l.value()).Err(); err != nil {
		return fmt.Errorf("release lease %s: %w", l.Connector, err)
	}
	return nil
}

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
