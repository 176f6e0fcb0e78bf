package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Epoch names this Redis's data: a random id the first pollgrid process
// to ask writes, which goes only with the data itself. An epoch other than
// the one last seen is how pollgrid notices that Redis lost its data (a
// restart without persistence, a failover to an empty replica).
func (s *Store) Epoch(ctx context.Context) (string, error) {
	key := s.opts.Prefix + ":epoch"
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	set, err := s.rdb.SetNX(ctx, key, id, 0).Result()
	if err != nil {
		return "", fmt.Errorf("redis epoch: %w", err)
	}
	if set {
		return id, nil
	}
	id, err = s.rdb.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return s.Epoch(ctx) // deleted in between: write it again
	}
	if err != nil {
		return "", fmt.Errorf("redis epoch: %w", err)
	}
	return id, nil
}
