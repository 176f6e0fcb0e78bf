package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// State is what the platform keeps between polls of one connector.
type State struct {
	// Cursor, ETag and LastModified are the connector's own: opaque here.
	Cursor       string
	ETag         string
	LastModified string
	// LastPoll and LastSuccess are zero when never.
	LastPoll    time.Time
	LastSuccess time.Time
	// ConsecutiveFailures counts failed polls since the last success.
	ConsecutiveFailures int
	LastError           string
	// NotBefore is when the connector may be polled again; zero when now.
	// NotBeforeBy says whose wait it is: WaitUpstream (Retry-After, a rate
	// limit's reset) or WaitBackoff (ours, after failed polls).
	NotBefore   time.Time
	NotBeforeBy string
	// Attempts counts the polls begun since the last commit, the current
	// one included (read by Acquire): more than one means earlier polls
	// ended without committing, their worker killed or frozen.
	Attempts int
	// EffectiveInterval is an adaptive connector's interval as its polls
	// found the upstream changing (the worker's rule, pkg/worker): zero
	// when the connector is not adaptive or never polled. AdaptRequestedAt
	// is when a worker last asked the scheduler to fire its ticks at it.
	// Commit writes both with the cursor; Acquire reads them.
	EffectiveInterval time.Duration
	AdaptRequestedAt  time.Time
	// Seen holds every remembered item, by id, when Acquire read them with
	// the state (a connector that remembers at most PrefetchSeen items);
	// nil otherwise: read them with SeenEntries. SeenCount is how many
	// items the connector remembers. Only Acquire fills them, and Commit
	// does not write them. The map may be the one a carried state shares
	// with the polls after (AcquireCarried): read it, never change it.
	Seen      map[string]SeenEntry
	SeenCount int

	// The operator's fields (see admin.go): only the admin verbs write
	// them; Commit leaves them alone. PausedAt is when the connector was
	// paused, zero when it is not; ResumedAt when it was last resumed;
	// Generation counts its resets.
	PausedAt   time.Time
	PausedBy   string
	ResumedAt  time.Time
	Generation uint64
}

// Whose wait State.NotBefore is.
const (
	WaitUpstream = "upstream"
	WaitBackoff  = "backoff"
)

// State hash fields.
const (
	fieldCursor              = "cursor"
	fieldETag                = "etag"
	fieldLastModified        = "last_modified"
	fieldLastPoll            = "last_poll"
	fieldLastSuccess         = "last_success"
	fieldConsecutiveFailures = "consecutive_failures"
	fieldLastError           = "last_error"
	fieldNotBefore           = "not_before"
	fieldNotBeforeBy         = "not_before_by"
	fieldAttempts            = "attempts"
	fieldEffectiveInterval   = "effective_interval_ms"
	fieldAdaptRequestedAt    = "adapt_requested_at"
	// fieldCommitted is the fencing token of the lease whose Commit wrote
	// the state last; every other write of the state deletes it (Carried).
	fieldCommitted = "committed"
)

// appendFields appends every state field with its encoded value, "" for a
// zero value, to dst, so that a Commit writes the state whole.
func (st State) appendFields(dst []string) []string {
	failures, effective := "", ""
	if st.ConsecutiveFailures != 0 {
		failures = strconv.Itoa(st.ConsecutiveFailures)
	}
	if st.EffectiveInterval > 0 {
		effective = strconv.FormatInt(st.EffectiveInterval.Milliseconds(), 10)
	}
	return append(dst,
		fieldCursor, st.Cursor,
		fieldETag, st.ETag,
		fieldLastModified, st.LastModified,
		fieldLastPoll, formatTime(st.LastPoll),
		fieldLastSuccess, formatTime(st.LastSuccess),
		fieldConsecutiveFailures, failures,
		fieldLastError, st.LastError,
		fieldNotBefore, formatTime(st.NotBefore),
		fieldNotBeforeBy, st.NotBeforeBy,
		fieldAttempts, "0", // a commit ends the attempts (0, not deleted: one call fewer)
		fieldEffectiveInterval, effective,
		fieldAdaptRequestedAt, formatTime(st.AdaptRequestedAt),
	)
}

func parseState(h map[string]string) (State, error) {
	var st State
	var err error
	st.Cursor = h[fieldCursor]
	st.ETag = h[fieldETag]
	st.LastModified = h[fieldLastModified]
	st.LastError = h[fieldLastError]
	st.NotBeforeBy = h[fieldNotBeforeBy]
	if st.LastPoll, err = ParseTime(h[fieldLastPoll]); err != nil {
		return State{}, fmt.Errorf("field %s: %w", fieldLastPoll, err)
	}
	if st.LastSuccess, err = ParseTime(h[fieldLastSuccess]); err != nil {
		return State{}, fmt.Errorf("field %s: %w", fieldLastSuccess, err)
	}
	if st.NotBefore, err = ParseTime(h[fieldNotBefore]); err != nil {
		return State{}, fmt.Errorf("field %s: %w", fieldNotBefore, err)
	}
	if st.AdaptRequestedAt, err = ParseTime(h[fieldAdaptRequestedAt]); err != nil {
		return State{}, fmt.Errorf("field %s: %w", fieldAdaptRequestedAt, err)
	}
	if st.EffectiveInterval, err = parseMillis(h[fieldEffectiveInterval]); err != nil {
		return State{}, fmt.Errorf("field %s: %w", fieldEffectiveInterval, err)
	}
	if v := h[fieldAttempts]; v != "" {
		if st.Attempts, err = strconv.Atoi(v); err != nil {
			return State{}, fmt.Errorf("field %s: %w", fieldAttempts, err)
		}
	}
	if v := h[fieldConsecutiveFailures]; v != "" {
		if st.ConsecutiveFailures, err = strconv.Atoi(v); err != nil {
			return State{}, fmt.Errorf("field %s: %w", fieldConsecutiveFailures, err)
		}
	}
	if err := parseAdminFields(h, &st); err != nil {
		return State{}, err
	}
	return st, nil
}

// parseMillis reads a duration stored in milliseconds; "" is zero.
func parseMillis(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms < 0 {
		return 0, fmt.Errorf("not milliseconds: %q", v)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// State reads a connector's state without a lease, for the scheduler and
// admin. A connector never committed has the zero State.
func (s *Store) State(ctx context.Context, connector string) (State, error) {
	if err := CheckName(connector); err != nil {
		return State{}, fmt.Errorf("read state: %w", err)
	}
	h, err := s.rdb.HGetAll(ctx, s.key(connector, keyState)).Result()
	if err != nil {
		return State{}, fmt.Errorf("read state %s: %w", connector, err)
	}
	st, err := parseState(h)
	if err != nil {
		return State{}, fmt.Errorf("read state %s: %w", connector, err)
	}
	return st, nil
}

// LastPolls reads the LastPoll of many connectors in one pipeline. Every
// name is in the result, with the zero time when it was never polled.
func (s *Store) LastPolls(ctx context.Context, names []string) (map[string]time.Time, error) {
	out := make(map[string]time.Time, len(names))
	if len(names) == 0 {
		return out, nil
	}
	for _, name := range names {
		if err := CheckName(name); err != nil {
			return nil, fmt.Errorf("read last polls: %w", err)
		}
	}
	cmds := make([]*redis.StringCmd, len(names))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, name := range names {
			cmds[i] = p.HGet(ctx, s.key(name, keyState), fieldLastPoll)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read last polls of %d connectors: %w", len(names), err)
	}
	for i, name := range names {
		v, err := cmds[i].Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("read last poll %s: %w", name, err)
		}
		if out[name], err = ParseTime(v); err != nil {
			return nil, fmt.Errorf("read last poll %s: %w", name, err)
		}
	}
	return out, nil
}

// batch is how many connectors one pipeline of the bulk reads holds.
const batch = 1000

// Paused returns the names among names that are paused, with since when,
// in pipelines of a thousand.
func (s *Store) Paused(ctx context.Context, names []string) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	err := s.stateField(ctx, names, fieldPausedAt, func(name, v string) error {
		t, err := ParseTime(v)
		if err != nil {
			return err
		}
		if !t.IsZero() {
			out[name] = t
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read paused connectors: %w", err)
	}
	return out, nil
}

// EffectiveIntervals reads the EffectiveInterval of many connectors in
// pipelines of a thousand; a connector without one (not adaptive, never
// polled) is not in the result.
func (s *Store) EffectiveIntervals(ctx context.Context, names []string) (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	err := s.stateField(ctx, names, fieldEffectiveInterval, func(name, v string) error {
		d, err := parseMillis(v)
		if d > 0 {
			out[name] = d
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read effective intervals: %w", err)
	}
	return out, nil
}

// stateField reads one field of many connectors' states, in pipelines of
// a thousand, and hands each value that is set to use; the error names the
// connector.
func (s *Store) stateField(ctx context.Context, names []string, field string, use func(name, v string) error) error {
	for start := 0; start < len(names); start += batch {
		chunk := names[start:min(start+batch, len(names))]
		cmds := make([]*redis.StringCmd, len(chunk))
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, name := range chunk {
				if err := CheckName(name); err != nil {
					return err
				}
				cmds[i] = p.HGet(ctx, s.key(name, keyState), field)
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		for i, name := range chunk {
			v, err := cmds[i].Result()
			if errors.Is(err, redis.Nil) {
				continue
			}
			if err == nil {
				err = use(name, v)
			}
			if err != nil {
				return fmt.Errorf("%s: field %s: %w", name, field, err)
			}
		}
	}
	return nil
}

// States reads the state of many connectors, aligned with names, in
// pipelines of a thousand. A connector never committed has the zero State.
func (s *Store) States(ctx context.Context, names []string) ([]State, error) {
	out := make([]State, len(names))
	for start := 0; start < len(names); start += batch {
		chunk := names[start:min(start+batch, len(names))]
		cmds := make([]*redis.MapStringStringCmd, len(chunk))
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, name := range chunk {
				if err := CheckName(name); err != nil {
					return err
				}
				cmds[i] = p.HGetAll(ctx, s.key(name, keyState))
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read states of %d connectors: %w", len(chunk), err)
		}
		for i, name := range chunk {
			st, err := parseState(cmds[i].Val())
			if err != nil {
				return nil, fmt.Errorf("read state %s: %w", name, err)
			}
			out[start+i] = st
		}
	}
	return out, nil
}
