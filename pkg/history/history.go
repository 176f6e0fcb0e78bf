package history

import (
	"github.com/redis/go-redis/v9"

	"github.com/pollgrid/pollgrid/pkg/store"
)

// Store keeps the aggregator's view of the polls: each connector's metrics,
// latency window, rollups and recent reports. It is safe for concurrent use.
type Store struct {
	rdb  redis.UniversalClient
	keys store.Keys
}

// New returns a Store over rdb whose keys follow keys (the connector store's
// Keys, so that a connector's history shares the slot of its state), on a
// single node, a failover or a cluster client alike.
func New(rdb redis.UniversalClient, keys store.Keys) *Store {
	return &Store{rdb: rdb, keys: keys}
}

// Key suffixes of a connector's history (see store.Keys.Connector).
const (
	keyMetrics = "metrics"
	// keyHistory is the history's head: the latency window, the rings'
	// open buckets and where the rings are (layout.go); the rings and the
	// recent reports have keys of their own (ringKeys, recentKey).
	keyHistory = "history"
)

// key names one of a connector's keys.
func (s *Store) key(connector, suffix string) string { return s.keys.Connector(connector, suffix) }

// connectorsKey is the set of the connectors whose reports were recorded.
func (s *Store) connectorsKey() string { return s.keys.Global("connectors") }
