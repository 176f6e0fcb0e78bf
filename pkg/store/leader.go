package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// AcquireLeader takes or keeps the leader lease of a replicated role (the
// scheduler) and reports whether owner leads now. The leader calls it again
// well within ttl to stay leader; the others call it to take over once the
// leader stops renewing.
func (s *Store) AcquireLeader(ctx context.Context, role, owner string, ttl time.Duration) (bool, error) {
	if role == "" || owner == "" {
		return false, errors.New("acquire leader: empty role or owner")
	}
	if ttl < time.Millisecond {
		return false, fmt.Errorf("acquire leader %s: ttl %s is under 1ms", role, ttl)
	}
	n, err := s.leader.Run(ctx, s.rdb, []string{s.leaderKey(role)}, owner, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("acquire leader %s: %w", role, err)
	}
	return n == 1, nil
}

// ResignLeader gives up the leader lease if owner holds it, so that another
// replica takes over without waiting for the TTL.
func (s *Store) ResignLeader(ctx context.Context, role, owner string) error {
	if err := s.resign.Run(ctx, s.rdb, []string{s.leaderKey(role)}, owner).Err(); err != nil {
		return fmt.Errorf("resign leader %s: %w", role, err)
	}
	return nil
}
