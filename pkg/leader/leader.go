package leader

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pollgrid/pollgrid/pkg/store"
)

// Elector holds the leader leases of replicated roles. It is safe for
// concurrent use.
type Elector struct {
	rdb    redis.UniversalClient
	keys   store.Keys
	leader *redis.Script
	resign *redis.Script
}

// New returns an Elector over rdb whose keys follow keys (a Store's Keys,
// so that the leases share its prefix).
func New(rdb redis.UniversalClient, keys store.Keys) *Elector {
	return &Elector{
		rdb:    rdb,
		keys:   keys,
		leader: redis.NewScript(leaderLua),
		resign: redis.NewScript(store.ReleaseLua), // deletes the lease while owner holds it
	}
}

// key is the leader lease of role: "<prefix>:leader:<role>".
func (e *Elector) key(role string) string { return e.keys.Global("leader:" + role) }

// Acquire takes or keeps the leader lease of a replicated role (the
// scheduler) and reports whether owner leads now. The leader calls it again
// well within ttl to stay leader; the others call it to take over once the
// leader stops renewing.
func (e *Elector) Acquire(ctx context.Context, role, owner string, ttl time.Duration) (bool, error) {
	if role == "" || owner == "" {
		return false, errors.New("acquire leader: empty role or owner")
	}
	if ttl < time.Millisecond {
		return false, fmt.Errorf("acquire leader %s: ttl %s is under 1ms", role, ttl)
	}
	n, err := e.leader.Run(ctx, e.rdb, []string{e.key(role)}, owner, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("acquire leader %s: %w", role, err)
	}
	return n == 1, nil
}

// Resign gives up the leader lease if owner holds it, so that another
// replica takes over without waiting for the TTL.
func (e *Elector) Resign(ctx context.Context, role, owner string) error {
	if err := e.resign.Run(ctx, e.rdb, []string{e.key(role)}, owner).Err(); err != nil {
		return fmt.Errorf("resign leader %s: %w", role, err)
	}
	return nil
}

// leaderLua takes or keeps a leader lease.
//
//	KEYS: leader
//	ARGV: owner ttl_ms
//	-> 1 owner is leader (newly, or renewed), 0 someone else is
const leaderLua = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`
