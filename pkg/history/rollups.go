package history

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/pollgrid/pollgrid/pkg/store"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// Resolution is the width of a rollup's buckets.
type Resolution int

const (
	// PerMinute buckets are kept for 24 hours.
	PerMinute Resolution = iota + 1
	// PerHour buckets are kept for 30 days.
	PerHour
)

// resolutionSpec says how a resolution is stored: one hash per span, one
// field per bucket of width, the hash expiring retention after its span
// ends (so every bucket lives at least retention). A span holds at most 60
// buckets, so each hash stays a listpack (hash-max-listpack-entries 128).
type resolutionSpec struct {
	width, span, retention time.Duration
	suffix                 string
}

func (r Resolution) spec() resolutionSpec {
	switch r {
	case PerMinute:
		return resolutionSpec{width: time.Minute, span: time.Hour, retention: 24 * time.Hour, suffix: keyRollupMinute}
	case PerHour:
		return resolutionSpec{width: time.Hour, span: 24 * time.Hour, retention: 30 * 24 * time.Hour, suffix: keyRollupHour}
	}
	return resolutionSpec{}
}

// Width is how long one bucket is.
func (r Resolution) Width() time.Duration { return r.spec().width }

// Retention is how long a bucket is kept at least after it ends (at most one
// span longer: a whole hour of minute buckets, a whole day of hour buckets,
// expires at once).
func (r Resolution) Retention() time.Duration { return r.spec().retention }

func (r Resolution) String() string {
	switch r {
	case PerMinute:
		return "per minute"
	case PerHour:
		return "per hour"
	}
	return "Resolution(" + strconv.Itoa(int(r)) + ")"
}

// bucket says which hash (by the start of its span, unix ms) and field hold
// the bucket of t.
func (r Resolution) bucket(t time.Time) (spanMs, field int64) {
	spec := r.spec()
	ms := t.UnixMilli()
	spanMs = ms - ms%spec.span.Milliseconds()
	return spanMs, (ms - spanMs) / spec.width.Milliseconds()
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
// those past the resolution's retention.
func (s *Store) Rollups(ctx context.Context, name string, res Resolution, since, until time.Time) ([]Rollup, error) {
	if err := store.CheckName(name); err != nil {
		return nil, fmt.Errorf("read rollups: %w", err)
	}
	spec := res.spec()
	if spec.width == 0 {
		return nil, fmt.Errorf("read rollups %s: unknown resolution %d (use history.PerMinute or history.PerHour)", name, res)
	}
	if !until.After(since) {
		return nil, nil
	}
	// Hashes that old have expired: do not ask for them.
	if oldest := until.Add(-spec.retention - 2*spec.span); since.Before(oldest) {
		since = oldest
	}
	first, _ := res.bucket(since)
	last, _ := res.bucket(until.Add(-time.Millisecond))
	var starts []int64
	for start := first; start <= last; start += spec.span.Milliseconds() {
		starts = append(starts, start)
	}
	cmds := make([]*redis.MapStringStringCmd, len(starts))
	var open *redis.StringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		if res == PerHour {
			open = p.HGet(ctx, s.key(name, keyMetrics), metricRollupMinute)
		}
		for i, start := range starts {
			cmds[i] = p.HGetAll(ctx, s.key(name, spec.suffix+strconv.FormatInt(start/1000, 10)))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read rollups %s: %w", name, err)
	}
	from := since.UnixMilli() - since.UnixMilli()%spec.width.Milliseconds()
	var out []Rollup
	keep := func(startMs int64, sums map[string]string, hourTotal bool) error {
		for field, value := range sums {
			idx, err := strconv.ParseInt(field, 10, 64)
			if err != nil {
				return fmt.Errorf("bucket %q is not a number", field)
			}
			bucketMs := startMs + idx*spec.width.Milliseconds()
			if hourTotal {
				bucketMs = startMs
			}
			if bucketMs < from || bucketMs >= until.UnixMilli() {
				continue
			}
			r, err := parseRollup(value)
			if err != nil {
				return fmt.Errorf("bucket %s: %w", field, err)
			}
			r.Start, r.Width = time.UnixMilli(bucketMs).UTC(), spec.width
			if hourTotal && len(out) > 0 && out[len(out)-1].Start.Equal(r.Start) {
				out[len(out)-1].Add(r)
				continue
			}
			out = append(out, r)
		}
		return nil
	}
	for i, start := range starts {
		if err := keep(start, cmds[i].Val(), false); err != nil {
			return nil, fmt.Errorf("read rollups %s: %w", name, err)
		}
	}
	// The open hour has no hour bucket yet: sum its minute buckets.
	if open != nil && open.Val() != "" {
		latest, err := strconv.ParseInt(open.Val(), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("read rollups %s: field %s: %q is not unix seconds", name, metricRollupMinute, open.Val())
		}
		openS := latest - latest%3600
		if openMs := openS * 1000; openMs >= from && openMs < until.UnixMilli() {
			minutes, err := s.rdb.HGetAll(ctx, s.key(name, keyRollupMinute+strconv.FormatInt(openS, 10))).Result()
			if err != nil {
				return nil, fmt.Errorf("read rollups %s: open hour: %w", name, err)
			}
			if err := keep(openMs, minutes, true); err != nil {
				return nil, fmt.Errorf("read rollups %s: open hour: %w", name, err)
			}
		}
	}
	slices.SortFunc(out, func(a, b Rollup) int { return a.Start.Compare(b.Start) })
	return out, nil
}

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

// parseRollup reads a bucket as recordLua packs it: successes, failures,
// skipped, items fetched, published and failed, latency sum and max in
// microseconds, comma-separated decimals.
func parseRollup(v string) (Rollup, error) {
	parts := strings.Split(v, ",")
	if len(parts) != 8 {
		return Rollup{}, fmt.Errorf("want 8 numbers, got %q", v)
	}
	var n [8]int64
	for i, p := range parts {
		var err error
		if n[i], err = strconv.ParseInt(p, 10, 64); err != nil {
			return Rollup{}, fmt.Errorf("want 8 numbers, got %q", v)
		}
	}
	return Rollup{
		Polls: n[0] + n[1] + n[2], Successes: n[0], Failures: n[1], Skipped: n[2],
		ItemsFetched: n[3], ItemsPublished: n[4], ItemsFailed: n[5],
		LatencySum: time.Duration(n[6]) * time.Microsecond, LatencyMax: time.Duration(n[7]) * time.Microsecond,
	}, nil
}

// Recent reads a connector's latest reports (at most RecentKept), oldest
// first by started_at; at most limit of the newest when limit > 0.
func (s *Store) Recent(ctx context.Context, name string, limit int) ([]*pollgridv1.PollReport, error) {
	if err := store.CheckName(name); err != nil {
		return nil, fmt.Errorf("read recent reports: %w", err)
	}
	raw, err := s.rdb.LRange(ctx, s.key(name, keyRecent), 0, RecentKept-1).Result()
	if err != nil {
		return nil, fmt.Errorf("read recent reports %s: %w", name, err)
	}
	out := make([]*pollgridv1.PollReport, len(raw))
	for i, b := range raw {
		r := &pollgridv1.PollReport{}
		if err := proto.Unmarshal([]byte(b), r); err != nil {
			return nil, fmt.Errorf("read recent reports %s: decode report: %w", name, err)
		}
		out[i] = r
	}
	// Newest first in Redis, as they arrived; reports of one batch or of
	// several workers may arrive out of order.
	slices.Reverse(out)
	slices.SortStableFunc(out, func(a, b *pollgridv1.PollReport) int {
		return a.GetStartedAt().AsTime().Compare(b.GetStartedAt().AsTime())
	})
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}
