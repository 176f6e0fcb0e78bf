package store

import (
	"context"
	"fmt"
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

// Store keeps each connector's lease, fencing token, state and seen items,
// and the operator's writes on them (admin.go). It is safe for concurrent
// use.
type Store struct {
	rdb  redis.UniversalClient
	opts Options
	keys Keys

	acquire, renew, release, commit *redis.Script
	// The admin verbs' scripts (admin.go).
	pause, resume, reset *redis.Script
}

// New returns a Store over rdb, which may be a single node, a failover or a
// cluster client: every multi-key operation stays within one connector's slot.
func New(rdb redis.UniversalClient, opts Options) *Store {
	opts = opts.withDefaults()
	return &Store{
		rdb:     rdb,
		opts:    opts,
		keys:    NewKeys(opts.Prefix),
		acquire: redis.NewScript(acquireLua),
		renew:   redis.NewScript(renewLua),
		release: redis.NewScript(ReleaseLua),
		commit:  redis.NewScript(commitLua),
		pause:   redis.NewScript(pauseLua),
		resume:  redis.NewScript(resumeLua),
		reset:   redis.NewScript(resetLua),
	}
}

// Keys is the key layout of this Store, for the packages that keep other
// things beside it in the same Redis (history, leader).
func (s *Store) Keys() Keys { return s.keys }

// Ping checks that Redis answers, for readiness probes.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping redis: %w", err)
	}
	return nil
}

// Per-connector key suffixes (see Keys.Connector).
const (
	keyLease    = "lease"
	keyFence    = "fence"
	keyState    = "state"
	keySeen     = "seen"
	keySeenData = "seen_data"
	// keySeenAt is a sorted set of seen versions that earlier releases
	// wrote: the sweep and Reset delete it.
	keySeenAt = "seen_at"
)

// key names one of a connector's keys.
func (s *Store) key(connector, suffix string) string { return s.keys.Connector(connector, suffix) }

// connectorKeys are one connector's keys in the order the poll's scripts
// take them (lease fence state seen seen_data seen_at), built once per
// Acquire and kept with its lease and its carry: a poll builds no key
// name after that.
type connectorKeys struct {
	store *Store
	name  string
	names [6]string
}

func (s *Store) connectorKeys(connector string) *connectorKeys {
	k := &connectorKeys{store: s, name: connector}
	for i, suffix := range [...]string{keyLease, keyFence, keyState, keySeen, keySeenData, keySeenAt} {
		k.names[i] = s.key(connector, suffix)
	}
	return k
}

// leaseKeys are l's keys: those Acquire built, or, for a Lease made
// elsewhere (a test's), new ones.
func (s *Store) leaseKeys(l *Lease) *connectorKeys {
	if l.keys != nil && l.keys.store == s && l.keys.name == l.Connector {
		return l.keys
	}
	return s.connectorKeys(l.Connector)
}
