package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
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

	keys *connectorKeys
	// read is the state Acquire returned with the lease: what Commit
	// compares the new state with, to write only the fields that changed.
	read State
	// sent is true once a Commit was sent under the lease.
	sent bool
	// committed is what a successful Commit wrote and answered, from which
	// Carry makes the carried state when asked (most callers never ask).
	committed *committed
	carry     *Carried
}

func (l *Lease) value() string { return l.Owner + ":" + strconv.FormatUint(l.Token, 10) }

// Carried is a connector's state as a Commit left it, for the process that
// committed it to hand to its next AcquireCarried of the connector instead
// of reading the state back. It is only a proposal: the acquire script uses
// it only while the fence and the state's committed field both still hold
// this commit's token, that is while no one took the lease since (every
// acquire moves the fence) and no one wrote the state (a pause, a resume
// and a reset delete the field; a lost or restored Redis lost it or holds
// another). The operator's fields are not carried: that acquire reads them
// anew. It must not be changed; one Carried may be handed to any number
// of AcquireCarried calls.
type Carried struct {
	token uint64
	keys  *connectorKeys
	state State
}

// Carry is what this lease's successful Commit left for the next
// AcquireCarried of the connector, nil before it, after a failed one, and
// when that commit could not tell the seen items Acquire would return. It
// reads the commit's Seen and Forget: ask before changing them.
func (l *Lease) Carry() *Carried {
	if l.carry == nil && l.committed != nil {
		l.carry = l.committed.carry(l)
		l.committed = nil
	}
	return l.carry
}

// Acquire takes the connector's lease for ttl and returns its state, in one
// round trip. Every successful Acquire takes a new, greater fencing token.
// While the lease is held, by anyone (owner included: two ticks of one
// connector may reach one worker), the error is a *LeaseHeldError. A tick
// (ClaimTick) of a paused or waiting connector takes no lease: the error is
// ErrPaused or ErrWaiting, and the state, returned with it, says why.
// Whether a connector waits is judged on Redis's clock, the one clock every
// worker shares.
func (s *Store) Acquire(ctx context.Context, connector, owner string, ttl time.Duration, claim Claim) (*Lease, State, error) {
	return s.AcquireCarried(ctx, connector, owner, ttl, claim, nil)
}

// AcquireCarried is Acquire for a caller that carries the state its own
// last Commit of the connector left (Lease.Carry; nil for none). When no
// one took the lease or wrote the state since that commit, the script
// answers with the token and the attempts alone, and the state returned is
// the carried one (its Seen map shared, never to be changed): the same
// round trip, without the state and seen items on the wire. Otherwise it
// answers as Acquire does.
func (s *Store) AcquireCarried(ctx context.Context, connector, owner string, ttl time.Duration, claim Claim, carried *Carried) (*Lease, State, error) {
	var keys *connectorKeys
	if carried != nil && carried.keys.store == s && carried.keys.name == connector {
		keys = carried.keys
	} else {
		carried = nil
		if err := CheckName(connector); err != nil {
			return nil, State{}, fmt.Errorf("acquire lease: %w", err)
		}
		keys = s.connectorKeys(connector)
	}
	if owner == "" {
		return nil, State{}, fmt.Errorf("acquire lease %s: empty owner", connector)
	}
	if ttl < time.Millisecond {
		return nil, State{}, fmt.Errorf("acquire lease %s: ttl %s is under 1ms", connector, ttl)
	}
	gate, count := "0", "1"
	switch claim {
	case ClaimTick:
		gate = "1"
	case ClaimAdmin:
		count = "0"
	}
	known := ""
	if carried != nil {
		known = strconv.FormatUint(carried.token, 10)
	}
	res, err := s.acquire.Run(ctx, s.rdb, keys.names[:4], owner, ttl.Milliseconds(), prefetchSeenArg, gate, count, known).Slice()
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
	case 3:
		if carried == nil || len(res) < 4 {
			return nil, State{}, fmt.Errorf("acquire lease %s: unexpected script reply %v", connector, res)
		}
		token, err := parseToken(res[1])
		if err != nil {
			return nil, State{}, fmt.Errorf("acquire lease %s: %w", connector, err)
		}
		st := carried.state
		attempts, _ := res[2].(int64)
		st.Attempts = int(attempts)
		admin, _ := res[3].([]any)
		if err := parseAdminValues(admin, &st); err != nil {
			return nil, State{}, fmt.Errorf("acquire lease %s: read state: %w", connector, err)
		}
		return &Lease{Connector: connector, Owner: owner, Token: token, TTL: ttl, keys: keys, read: st}, st, nil
	}
	if len(res) < 6 {
		return nil, State{}, fmt.Errorf("acquire lease %s: unexpected script reply %v", connector, res)
	}
	token, err := parseToken(res[1])
	if err != nil {
		return nil, State{}, fmt.Errorf("acquire lease %s: %w", connector, err)
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
	return &Lease{Connector: connector, Owner: owner, Token: token, TTL: ttl, keys: keys, read: st}, st, nil
}

// parseToken reads the fencing token a script answered.
func parseToken(v any) (uint64, error) {
	text, _ := v.(string)
	token, err := strconv.ParseUint(text, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("fencing token %q: %w", text, err)
	}
	return token, nil
}

// PrefetchSeen is how many seen items a connector may remember for Acquire
// to return their versions with the state.
const PrefetchSeen = 256

// prefetchSeenArg is PrefetchSeen as a script argument, boxed once.
var prefetchSeenArg any = PrefetchSeen

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
	n, err := s.renew.Run(ctx, s.rdb, s.leaseKeys(l).names[:1], l.value(), l.TTL.Milliseconds()).Int()
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
	if err := s.release.Run(ctx, s.rdb, s.leaseKeys(l).names[:1], l.value()).Err(); err != nil {
		return fmt.Errorf("release lease %s: %w", l.Connector, err)
	}
	return nil
}

// LeaseInfo says who holds a connector's lease now.
type LeaseInfo struct {
	// Owner and Token of the lease held now; Owner is "" when it is free.
	Owner string
	Token uint64
	// Remaining is the lease's time left.
	Remaining time.Duration
	// Fence is the newest token ever taken (the next lease gets Fence+1).
	Fence uint64
}

// Lease reads who holds a connector's lease, for status.
func (s *Store) Lease(ctx context.Context, name string) (LeaseInfo, error) {
	if err := CheckName(name); err != nil {
		return LeaseInfo{}, fmt.Errorf("read lease: %w", err)
	}
	var value, fence *redis.StringCmd
	var pttl *redis.DurationCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		value = p.Get(ctx, s.key(name, keyLease))
		pttl = p.PTTL(ctx, s.key(name, keyLease))
		fence = p.Get(ctx, s.key(name, keyFence))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return LeaseInfo{}, fmt.Errorf("read lease %s: %w", name, err)
	}
	var info LeaseInfo
	if v := fence.Val(); v != "" {
		if info.Fence, err = strconv.ParseUint(v, 10, 64); err != nil {
			return LeaseInfo{}, fmt.Errorf("read lease %s: fence %q is not a number", name, v)
		}
	}
	if v := value.Val(); v != "" {
		i := strings.LastIndexByte(v, ':')
		if i < 0 {
			return LeaseInfo{}, fmt.Errorf("read lease %s: %q is not <owner>:<token>", name, v)
		}
		info.Owner = v[:i]
		if info.Token, err = strconv.ParseUint(v[i+1:], 10, 64); err != nil {
			return LeaseInfo{}, fmt.Errorf("read lease %s: %q is not <owner>:<token>", name, v)
		}
		info.Remaining = max(pttl.Val(), 0)
	}
	return info, nil
}
