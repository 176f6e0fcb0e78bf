package store

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// The operator's fields of a connector's state hash. Only the admin verbs
// (pause, resume, reset) write them, and Commit never touches them: a poll
// that runs while its connector is paused cannot unpause it. They live in
// the state hash because Acquire reads that hash whole: a worker learns that
// a connector is paused in the round trip that takes its lease.
const (
	fieldPausedAt   = "paused_at"
	fieldPausedBy   = "paused_by"
	fieldResumedAt  = "resumed_at"
	fieldGeneration = "generation"
)

func parseAdminFields(h map[string]string, st *State) error {
	return parseAdminValues([]any{h[fieldPausedAt], h[fieldPausedBy], h[fieldResumedAt], h[fieldGeneration]}, st)
}

// parseAdminValues reads the operator's fields from a script's HMGET of
// paused_at paused_by resumed_at generation (nil for a missing one).
func parseAdminValues(values []any, st *State) error {
	value := func(i int) string {
		if i < len(values) {
			v, _ := values[i].(string)
			return v
		}
		return ""
	}
	var err error
	if st.PausedAt, err = ParseTime(value(0)); err != nil {
		return fmt.Errorf("field %s: %w", fieldPausedAt, err)
	}
	st.PausedBy = value(1)
	if st.ResumedAt, err = ParseTime(value(2)); err != nil {
		return fmt.Errorf("field %s: %w", fieldResumedAt, err)
	}
	if v := value(3); v != "" {
		if st.Generation, err = strconv.ParseUint(v, 10, 64); err != nil {
			return fmt.Errorf("field %s: %w", fieldGeneration, err)
		}
	}
	return nil
}

// pauseLua marks a connector paused unless it already is.
//
//	KEYS: state
//	ARGV: now_ms by
//	-> {1, now_ms} paused now, {0, paused_at} paused before
const pauseLua = `
if redis.call('HSETNX', KEYS[1], 'paused_at', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'paused_by', ARGV[2])
  redis.call('HDEL', KEYS[1], 'committed')
  return {1, ARGV[1]}
end
return {0, redis.call('HGET', KEYS[1], 'paused_at')}
`

// resumeLua clears the pause and records when.
//
//	KEYS: state
//	ARGV: now_ms
//	-> paused_at, or "" when the connector was not paused
const resumeLua = `
local pausedAt = redis.call('HGET', KEYS[1], 'paused_at')
if not pausedAt then
  return ''
end
redis.call('HDEL', KEYS[1], 'paused_at', 'paused_by', 'committed')
redis.call('HSET', KEYS[1], 'resumed_at', ARGV[1])
return pausedAt
`

// resetLua forgets a connector's cursor, validators and seen versions under
// its lease, fenced like commitLua, and counts the reset in its generation.
//
//	KEYS: lease fence state seen seen_data seen_at
//	ARGV: token "<owner>:<token>"
//	-> {0} fenced, {1, items forgotten, generation}
const resetLua = `
if tonumber(redis.call('GET', KEYS[2])) ~= tonumber(ARGV[1]) then
  return {0}
end
local forgotten = redis.call('HLEN', KEYS[4])
redis.call('HDEL', KEYS[3], 'cursor', 'etag', 'last_modified', 'seen_sweep', 'seen_swept', 'committed')
redis.call('DEL', KEYS[4], KEYS[5], KEYS[6])
local generation = redis.call('HINCRBY', KEYS[3], 'generation', 1)
if redis.call('GET', KEYS[1]) == ARGV[2] then
  redis.call('DEL', KEYS[1])
end
return {1, forgotten, generation}
`

// Pause marks a connector paused by who (an operator's name, for status).
// It returns since when it is paused; already is true when it was paused
// before (the first pause's time and author stay). Workers skip the ticks of
// a paused connector and the scheduler removes its schedule.
func (s *Store) Pause(ctx context.Context, name, by string, now time.Time) (since time.Time, already bool, err error) {
	if err := CheckName(name); err != nil {
		return time.Time{}, false, fmt.Errorf("pause: %w", err)
	}
	res, err := s.pause.Run(ctx, s.rdb, []string{s.key(name, keyState)}, now.UnixMilli(), by).Slice()
	if err != nil {
		return time.Time{}, false, fmt.Errorf("pause %s: %w", name, err)
	}
	if len(res) != 2 {
		return time.Time{}, false, fmt.Errorf("pause %s: unexpected script reply %v", name, res)
	}
	fresh, _ := res[0].(int64)
	v, _ := res[1].(string)
	if since, err = ParseTime(v); err != nil {
		return time.Time{}, false, fmt.Errorf("pause %s: field %s: %w", name, fieldPausedAt, err)
	}
	return since, fresh == 0, nil
}

// Resume clears a connector's pause. wasPaused is false when it was not
// paused (nothing changed); pausedAt is when the pause began.
func (s *Store) Resume(ctx context.Context, name string, now time.Time) (pausedAt time.Time, wasPaused bool, err error) {
	if err := CheckName(name); err != nil {
		return time.Time{}, false, fmt.Errorf("resume: %w", err)
	}
	v, err := s.resume.Run(ctx, s.rdb, []string{s.key(name, keyState)}, now.UnixMilli()).Text()
	if err != nil {
		return time.Time{}, false, fmt.Errorf("resume %s: %w", name, err)
	}
	if v == "" {
		return time.Time{}, false, nil
	}
	if pausedAt, err = ParseTime(v); err != nil {
		return time.Time{}, false, fmt.Errorf("resume %s: field %s: %w", name, fieldPausedAt, err)
	}
	return pausedAt, true, nil
}

// ResetResult is what Reset did.
type ResetResult struct {
	// Token is the fencing token the reset ran under: a poll that started
	// before it cannot commit afterwards.
	Token uint64
	// Forgotten counts the item versions forgotten.
	Forgotten int64
	// Generation is the connector's generation from now on (see
	// pollgridv1.Signal.generation).
	Generation uint64
}

// Reset forgets a connector's cursor, ETag, Last-Modified and seen versions,
// so that its next poll starts over and publishes every current item as
// created. It takes the connector's lease like a poll (a *LeaseHeldError
// while a poll runs) and writes fenced, so no poll overlaps it and none that
// began before can write its older state back. Its history, failures and
// back-off stay.
func (s *Store) Reset(ctx context.Context, name, owner string, ttl time.Duration) (ResetResult, error) {
	lease, _, err := s.Acquire(ctx, name, owner, ttl, ClaimAdmin)
	if err != nil {
		return ResetResult{}, fmt.Errorf("reset: %w", err)
	}
	keys := []string{s.key(name, keyLease), s.key(name, keyFence), s.key(name, keyState), s.key(name, keySeen), s.key(name, keySeenData), s.key(name, keySeenAt)}
	res, err := s.reset.Run(ctx, s.rdb, keys, strconv.FormatUint(lease.Token, 10), lease.value()).Slice()
	if err != nil {
		_ = s.Release(context.WithoutCancel(ctx), lease)
		return ResetResult{}, fmt.Errorf("reset %s: %w", name, err)
	}
	if ok, _ := res[0].(int64); ok == 0 || len(res) != 3 {
		return ResetResult{}, fmt.Errorf("reset %s token %d: %w", name, lease.Token, ErrFenced)
	}
	forgotten, _ := res[1].(int64)
	generation, _ := res[2].(int64)
	return ResetResult{Token: lease.Token, Forgotten: forgotten, Generation: uint64(generation)}, nil
}
