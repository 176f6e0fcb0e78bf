package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Progress is where Redis's data stands, for noticing that it was lost or
// went back in time: pollgrid keeps the last Progress it saw outside Redis
// (NATS) and compares.
type Progress struct {
	// Epoch names this Redis's data: a random id the first pollgrid process
	// to ask writes, which goes only with the data itself. Another epoch
	// than the one last seen means Redis lost its data (a restart without
	// persistence, a failover to an empty replica).
	Epoch string
	// Counter only grows while the data lives: each call to Progress adds
	// one. A value not above the one last seen with the same epoch means
	// Redis went back in time (restored from an older snapshot, or a
	// failover to a replica that had not received the latest writes).
	Counter int64
}

// progressLua writes the epoch if there is none and counts one more step,
// in one script so that the epoch and the counter come from the same data.
//
// KEYS[1] <prefix>:epoch, KEYS[2] {<prefix>:epoch}:progress
// ARGV[1] a new epoch id, used only if KEYS[1] is missing
const progressLua = `
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  redis.call('SET', KEYS[1], ARGV[1])
  epoch = ARGV[1]
end
return {epoch, redis.call('INCR', KEYS[2])}
`

// Progress writes the epoch if Redis has none, moves the counter one step
// forward and returns both.
func (s *Store) Progress(ctx context.Context) (Progress, error) {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	// The counter's key carries the epoch key as its hash tag, so that both
	// live in one Redis Cluster slot, as a script's keys must. The epoch
	// key itself keeps the name it always had: a new name would read as a
	// data loss after an upgrade.
	epochKey := s.keys.Global("epoch")
	keys := []string{epochKey, "{" + epochKey + "}:progress"}
	// Built per call (a SHA-1 of a few lines, every few seconds) rather
	// than kept in Store, whose other scripts are a poll's and the admin verbs'.
	res, err := redis.NewScript(progressLua).Run(ctx, s.rdb, keys, hex.EncodeToString(b)).Slice()
	if err != nil {
		return Progress{}, fmt.Errorf("redis epoch: %w", err)
	}
	if len(res) != 2 {
		return Progress{}, fmt.Errorf("redis epoch: the script answered %d values, want 2", len(res))
	}
	epoch, ok1 := res[0].(string)
	counter, ok2 := res[1].(int64)
	if !ok1 || !ok2 {
		return Progress{}, errors.New("redis epoch: the script answered values of unexpected types (another program writes our epoch keys?)")
	}
	return Progress{Epoch: epoch, Counter: counter}, nil
}
