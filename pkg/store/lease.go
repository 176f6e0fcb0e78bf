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
// connector may reach one worker), the error is a *LeaseHeldError.
func (s *Store) Acquire(ctx context.Context, connector, owner string, ttl time.Duration) (*Lease, State, error) {
	if err := checkName(connector); err != nil {
		return nil, State{}, fmt.Errorf("acquire lease: %w", err)
	}
	if owner == "" {
		return nil, State{}, fmt.Errorf("acquire lease %s: empty owner", connector)
	}
	if ttl < time.Millisecond {
		return nil, State{}, fmt.Errorf("acquire lease %s: ttl %s is under 1ms", connector, ttl)
	}
	keys := []string{s.key(connector, keyLease), s.key(connector, keyFence), s.key(connector, keyState), s.key(connector, keySeen)}
	res, err := s.acquire.Run(ctx, s.rdb, keys, owner, ttl.Milliseconds(), PrefetchSeen).Slice()
	if err != nil {
		return nil, State{}, fmt.Errorf("acquire lease %s: %w", connector, err)
	}
	if len(res) < 2 {
		return nil, State{}, fmt.Errorf("acquire lease %s: unexpected script reply %v", connector, res)
	}
	if ok, _ := res[0].(int64); ok == 0 {
		pttl, _ := res[1].(int64)
		return nil, State{}, &LeaseHeldError{Connector: connector, Remaining: max(0, time.Duration(pttl)*time.Millisecond)}
	}
	if len(res) < 5 {
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
		st.Seen = pairs(flat)
	}
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

// SeenVersions returns the remembered version of each id, aligned with ids,
// "" for an id never seen (or forgotten).
func (s *Store) SeenVersions(ctx context.Context, connector string, ids []string) ([]string, error) {
	if err := checkName(connector); err != nil {
		return nil, fmt.Errorf("read seen versions: %w", err)
	}
	out := make([]string, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	vals, err := s.rdb.HMGet(ctx, s.key(connector, keySeen), ids...).Result()
	if err != nil {
		return nil, fmt.Errorf("read seen versions %s: %w", connector, err)
	}
	for i, v := range vals {
		out[i], _ = v.(string)
	}
	return out, nil
}

// Seen returns every remembered item's version, by id: what a poll that
// read the whole listing compares it with, to find the items gone.
func (s *Store) Seen(ctx context.Context, connector string) (map[string]string, error) {
	if err := checkName(connector); err != nil {
		return nil, fmt.Errorf("read seen versions: %w", err)
	}
	m, err := s.rdb.HGetAll(ctx, s.key(connector, keySeen)).Result()
	if err != nil {
		return nil, fmt.Errorf("read seen versions %s: %w", connector, err)
	}
	return m, nil
}

// SeenData returns the data kept for ids (a connector that publishes
// deletions), aligned with ids, nil where none is kept.
func (s *Store) SeenData(ctx context.Context, connector string, ids []string) ([][]byte, error) {
	if err := checkName(connector); err != nil {
		return nil, fmt.Errorf("read seen data: %w", err)
	}
	out := make([][]byte, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	vals, err := s.rdb.HMGet(ctx, s.key(connector, keySeenData), ids...).Result()
	if err != nil {
		return nil, fmt.Errorf("read seen data %s: %w", connector, err)
	}
	for i, v := range vals {
		if str, ok := v.(string); ok {
			out[i] = []byte(str)
		}
	}
	return out, nil
}

// SeenItem is one item version a poll returned.
type SeenItem struct {
	ID      string
	Version string
	// Data is kept (seen_data) for a connector that publishes deletions, so
	// that its deleted signal can carry the item's last known data; nil
	// keeps nothing.
	Data []byte
}

// Commit is what one poll writes back.
type Commit struct {
	// State is written whole: fields with zero values are deleted.
	State State
	// Seen lists every item the poll fetched, changed or not, so that items
	// still present upstream are never forgotten by the TTL.
	Seen []SeenItem
	// Now scores Seen and is the reference for forgetting after SeenTTL;
	// the zero time means time.Now().
	Now time.Time
	// Fetched is true when the poll read the upstream's answer (a 200), so
	// that items absent from Seen may age out. A failed poll or a 304 saw no
	// items, which says nothing about their absence: nothing is forgotten by
	// age then, however long the upstream keeps failing or answering 304.
	Fetched bool
	// Gone lists the items the poll published as deleted: they are
	// forgotten, so each is deleted once (and created again should it
	// come back).
	Gone []string
}

// Commit writes a poll's state and seen versions and releases the lease, in
// one round trip, fenced: when a newer lease was acquired since l the result
// wraps ErrFenced and nothing is written. Then, after recording Seen, items
// last seen before Now-SeenTTL are forgotten (only when c.Fetched), and beyond SeenCap the items
// seen longest ago are (ties broken by id).
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
	forgetBefore := int64(0) // no seen_at score is below 0: forget nothing
	if c.Fetched {
		forgetBefore = now.Add(-s.opts.SeenTTL).UnixMilli()
	}
	fields := c.State.fields()
	args := make([]any, 0, 8+len(fields)+3*len(c.Seen)+len(c.Gone))
	args = append(args,
		strconv.FormatUint(l.Token, 10),
		l.value(),
		now.UnixMilli(),
		forgetBefore,
		s.opts.SeenCap,
		len(fields)/2,
		len(c.Seen),
		len(c.Gone),
	)
	for _, f := range fields {
		args = append(args, f)
	}
	for _, it := range c.Seen {
		if it.ID == "" {
			return fmt.Errorf("commit state %s: seen item with an empty id", l.Connector)
		}
		args = append(args, it.ID, it.Version, it.Data)
	}
	for _, id := range c.Gone {
		args = append(args, id)
	}
	keys := []string{
		s.key(l.Connector, keyLease),
		s.key(l.Connector, keyFence),
		s.key(l.Connector, keyState),
		s.key(l.Connector, keySeen),
		s.key(l.Connector, keySeenAt),
		s.key(l.Connector, keySeenData),
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
