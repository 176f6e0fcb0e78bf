package history

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pollgrid/pollgrid/pkg/store"
)

// Resolution is the width of a rollup's buckets.
type Resolution int

const (
	// PerMinute buckets are kept for an hour.
	PerMinute Resolution = iota + 1
	// PerHour buckets are kept for 24 hours: each sums four quarter-hours.
	PerHour
	// PerQuarterHour buckets are kept for 24 hours.
	PerQuarterHour
	// PerDay buckets (UTC days) are kept for 30 days.
	PerDay
)

// resolutionSpec says how a resolution is read: from ring, group of its
// buckets at a time, kept retention at least.
type resolutionSpec struct {
	ring      ring
	group     int64
	retention time.Duration
}

func (r Resolution) spec() (resolutionSpec, bool) {
	switch r {
	case PerMinute:
		return resolutionSpec{ring: ringMinutes, group: 1, retention: time.Hour}, true
	case PerQuarterHour:
		return resolutionSpec{ring: ringQuarters, group: 1, retention: 24 * time.Hour}, true
	case PerHour:
		return resolutionSpec{ring: ringQuarters, group: 4, retention: 24 * time.Hour}, true
	case PerDay:
		return resolutionSpec{ring: ringDays, group: 1, retention: 30 * 24 * time.Hour}, true
	}
	return resolutionSpec{}, false
}

// Width is how long one bucket is.
func (r Resolution) Width() time.Duration {
	spec, _ := r.spec()
	return time.Duration(spec.group) * ringWidths[spec.ring]
}

// Retention is how long a bucket is kept at least after it ends: its ring
// holds a few buckets more, until later ones take their slots.
func (r Resolution) Retention() time.Duration {
	spec, _ := r.spec()
	return spec.retention
}

func (r Resolution) String() string {
	switch r {
	case PerMinute:
		return "per minute"
	case PerQuarterHour:
		return "per quarter-hour"
	case PerHour:
		return "per hour"
	case PerDay:
		return "per day"
	}
	return "Resolution(" + strconv.Itoa(int(r)) + ")"
}

// Rollup sums a connector's reports whose started_at falls in
// [Start, Start+Width).
type Rollup struct {
	Start time.Time
	Width time.Duration
	// Polls = Successes + Failures + Skipped.
	Polls, Successes, Failures, Skipped       int64
	ItemsFetched, ItemsPublished, ItemsFailed int64
	// LatencySum and LatencyMax cover the polls that ran (successes and
	// failures), to the microsecond.
	LatencySum, LatencyMax time.Duration
}

// LatencyAvg is the mean duration of the polls that ran, 0 when none did.
func (r Rollup) LatencyAvg() time.Duration {
	if ran := r.Successes + r.Failures; ran > 0 {
		return r.LatencySum / time.Duration(ran)
	}
	return 0
}

// Rollups reads a connector's buckets of one resolution that overlap
// [since, until), oldest first. Buckets without reports are left out, as are
// those whose ring slots later buckets took (past the retention).
func (s *Store) Rollups(ctx context.Context, name string, res Resolution, since, until time.Time) ([]Rollup, error) {
	if err := store.CheckName(name); err != nil {
		return nil, fmt.Errorf("read rollups: %w", err)
	}
	spec, ok := res.spec()
	if !ok {
		return nil, fmt.Errorf("read rollups %s: unknown resolution %d (use history.PerMinute, PerQuarterHour, PerHour or PerDay)", name, res)
	}
	if !until.After(since) {
		return nil, nil
	}
	rg := spec.ring
	var head, slots *redis.StringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		head = p.GetRange(ctx, s.key(name, keyHistory), 0, int64(latencyOffset)-1)
		slots = p.Get(ctx, s.key(name, ringKeys[rg]))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read rollups %s: %w", name, err)
	}
	view := newRingView(rg, []byte(head.Val()), []byte(slots.Val()))
	// Buckets of group ring periods each, the first at a multiple of group.
	first := period(rg, since)
	first -= floorMod(first, spec.group)
	last := period(rg, until.Add(-time.Millisecond))
	var starts []int64
	for _, p := range view.periods(first, last) {
		starts = append(starts, p-floorMod(p, spec.group))
	}
	starts = slices.Compact(starts)
	var out []Rollup
	for _, start := range starts {
		var (
			sum  Rollup
			held bool
		)
		for p := start; p < start+spec.group; p++ {
			r, state := view.read(p)
			if state == slotLost {
				held = false
				break
			}
			if state == slotHeld {
				sum.Add(r)
				held = true
			}
		}
		if !held {
			continue
		}
		sum.Start = time.UnixMilli(start * ringWidths[rg].Milliseconds()).UTC()
		sum.Width = time.Duration(spec.group) * ringWidths[rg]
		out = append(out, sum)
	}
	return out, nil
}

func floorMod(a, b int64) int64 { return ((a % b) + b) % b }

// Add sums o into r: counts add up, LatencyMax is the larger.
func (r *Rollup) Add(o Rollup) {
	r.Polls += o.Polls
	r.Successes += o.Successes
	r.Failures += o.Failures
	r.Skipped += o.Skipped
	r.ItemsFetched += o.ItemsFetched
	r.ItemsPublished += o.ItemsPublished
	r.ItemsFailed += o.ItemsFailed
	r.LatencySum += o.LatencySum
	r.LatencyMax = max(r.LatencyMax, o.LatencyMax)
}
