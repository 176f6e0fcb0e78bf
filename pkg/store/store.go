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

// Defaults of Options.
const (
	DefaultPrefix  = "pollgrid"
	DefaultSeenTTL = 30 * 24 * time.Hour
)

// Options tune a Store. Zero values take the defaults.
type Options struct {
	// Prefix starts every key, so that several deployments can share one
	// Redis. Default "pollgrid".
	Prefix string
	// SeenTTL forgets an item that no poll has returned for this long, in
	// whole days. Default 30 days. (How many items a connector remembers at
	// most is its own seen_cap: package poll keeps to it.)
	SeenTTL time.Duration
}

func (o Options) withDefaults() Options {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.SeenTTL <= 0 {
		o.SeenTTL = DefaultSeenTTL
	}
	return o
}

// Store is pollgrid's Redis layer. It is safe for concurrent use.
type Store struct {
	rdb  redis.UniversalClient
	opts Options

	acquire, renew, release, commit, leader, resign *redis.Script
	// The admin verbs' scripts (admin.go).
	pause, resume, reset *redis.Script
}

// New returns a Store over rdb, which may be a single node, a failover or a
// cluster client: every multi-key operation stays within one connector's slot.
func New(rdb redis.UniversalClient, opts Options) *Store {
	return &Store{
		rdb:     rdb,
		opts:    opts.withDefaults(),
		acquire: redis.NewScript(acquireLua),
		renew:   redis.NewScript(renewLua),
		release: redis.NewScript(releaseLua),
		commit:  redis.NewScript(commitLua),
		leader:  redis.NewScript(leaderLua),
		resign:  redis.NewScript(resignLua),
		pause:   redis.NewScript(pauseLua),
		resume:  redis.NewScript(resumeLua),
		reset:   redis.NewScript(resetLua),
	}
}

// Ping checks that Redis answers, for readiness probes.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping redis: %w", err)
	}
	return nil
}

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
	// Seen holds every remembered item, by id, when Acquire read them with
	// the state (a connector that remembers at most PrefetchSeen items);
	// nil otherwise: read them with SeenEntries. SeenCount is how many
	// items the connector remembers. Only Acquire fills them, and Commit
	// does not write them.
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
)

// fields lists every state field with its encoded value, "" for a zero value,
// so that a Commit writes the state whole.
func (st State) fields() []string {
	failures := ""
	if st.ConsecutiveFailures != 0 {
		failures = strconv.Itoa(st.ConsecutiveFailures)
	}
	return []string{
		fieldCursor, st.Cursor,
		fieldETag, st.ETag,
		fieldLastModified, st.LastModified,
		fieldLastPoll, formatTime(st.LastPoll),
		fieldLastSuccess, formatTime(st.LastSuccess),
		fieldConsecutiveFailures, failures,
		fieldLastError, st.LastError,
		fieldNotBefore, formatTime(st.NotBefore),
		fieldNotBeforeBy, st.NotBeforeBy,
		fieldAttempts, "", // a commit ends the attempts
	}
}

func parseState(h map[string]string) (State, error) {
	var st State
	var err error
	st.Cursor = h[fieldCursor]
	st.ETag = h[fieldETag]
	st.LastModified = h[fieldLastModified]
	st.LastError = h[fieldLastError]
	st.NotBeforeBy = h[fieldNotBeforeBy]
	if st.LastPoll, err = parseTime(h[fieldLastPoll]); err != nil {
		return State{}, fmt.Errorf("field %s: %w", fieldLastPoll, err)
	}
	if st.LastSuccess, err = parseTime(h[fieldLastSuccess]); err != nil {
		return State{}, fmt.Errorf("field %s: %w", fieldLastSuccess, err)
	}
	if st.NotBefore, err = parseTime(h[fieldNotBefore]); err != nil {
		return State{}, fmt.Errorf("field %s: %w", fieldNotBefore, err)
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

// State reads a connector's state without a lease, for the scheduler and
// admin. A connector never committed has the zero State.
func (s *Store) State(ctx context.Context, connector string) (State, error) {
	if err := checkName(connector); err != nil {
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
		if err := checkName(name); err != nil {
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
		if out[name], err = parseTime(v); err != nil {
			return nil, fmt.Errorf("read last poll %s: %w", name, err)
		}
	}
	return out, nil
}

// Per-connector key suffixes.
const (
	keyLease    = "lease"
	keyFence    = "fence"
	keyState    = "state"
	keySeen     = "seen"
	keySeenAt   = "seen_at"
	keySeenData = "seen_data"
	keyMetrics  = "metrics"
	keyLatency  = "latency"
	keyHistory  = "history"
)

// key names one of a connector's keys; the braces make the name the Redis
// Cluster hash tag, so all of a connector's keys live in one slot.
func (s *Store) key(connector, suffix string) string {
	return s.opts.Prefix + ":{" + connector + "}:" + suffix
}

func (s *Store) connectorsKey() string { return s.opts.Prefix + ":connectors" }

func (s *Store) leaderKey(role string) string { return s.opts.Prefix + ":leader:" + role }

// checkName rejects names that would break the hash tag (and so the
// one-slot guarantee the scripts rely on).
func checkName(name string) error {
	if name == "" {
		return errors.New("empty connector name")
	}
	if strings.ContainsAny(name, "{}") {
		return fmt.Errorf("connector name %q contains a brace: use letters, digits, - and _", name)
	}
	return nil
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}

func parseTime(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("not unix milliseconds: %q", v)
	}
	return time.UnixMilli(ms).UTC(), nil
}
