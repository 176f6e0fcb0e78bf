package history

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pollgrid/pollgrid/pkg/store"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

const (
	// RecentKept is how many of a connector's latest reports are kept, for
	// "what happened lately" views: fewer when their text passes
	// recentBytes (see doc.go).
	RecentKept = 100
	// HistoryTTL drops the history of a connector that stopped reporting
	// (its counters stay): the day ring's 30 days and one more.
	HistoryTTL = 31 * 24 * time.Hour
)

// ErrInvalidReport marks a poll report that can never be recorded: retrying
// it would not help, so drop it.
var ErrInvalidReport = errors.New("invalid poll report")

// RejectedError names the connectors whose reports Redis refused for good
// (a key of the wrong type, a stored value the script cannot read): the rest
// of the batch was written, and writing those again would fail again.
type RejectedError struct {
	// Connectors maps each refused connector to Redis's answer.
	Connectors map[string]error
}

func (e *RejectedError) Error() string {
	names := slices.Sorted(maps.Keys(e.Connectors))
	return fmt.Sprintf("redis refused the reports of %d connectors (%s): %v", len(names),
		strings.Join(names, ", "), e.Connectors[names[0]])
}

// refusedForGood tells a Redis error reply that will come again for the same
// write from one that passes (a server loading, busy, failing over or out of
// memory) and from a lost connection.
func refusedForGood(err error) bool {
	var reply redis.Error
	if !errors.As(err, &reply) {
		return false
	}
	for _, transient := range []string{"NOSCRIPT", "LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN",
		"READONLY", "MOVED", "ASK", "OOM", "NOREPLICAS", "NOAUTH", "NOPERM"} {
		if redis.HasErrorPrefix(err, transient) {
			return false
		}
	}
	return true
}

// ValidateReport checks what RecordReports needs of a report: a connector
// name that keeps its keys in one slot, an outcome of success, failure or
// skipped, and a started_at. The error wraps ErrInvalidReport.
func ValidateReport(r *pollgridv1.PollReport) error {
	name := r.GetConnector()
	if err := store.CheckName(name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidReport, err)
	}
	switch outcome := r.GetOutcome(); outcome {
	case pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS, pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE, pollgridv1.PollOutcome_POLL_OUTCOME_SKIPPED:
	default:
		return fmt.Errorf("%w: connector %s: outcome %s is not success, failure or skipped", ErrInvalidReport, name, outcome)
	}
	if r.GetStartedAt() == nil {
		return fmt.Errorf("%w: connector %s: no started_at", ErrInvalidReport, name)
	}
	return nil
}

// RecordReports adds a batch of poll reports to their connectors' metrics,
// latency windows, recent reports and rollups, in one round trip: one
// pipeline holding one script call per connector (its keys share a slot, so
// each connector's update is atomic, also on a cluster) and one SADD of the
// global connectors set. The reports of one connector are summed in Go
// first, so that a connector costs one script call per batch however many
// of its reports the batch holds. A batch is invalid as a whole when any
// report fails ValidateReport; nothing is written then.
//
// Every report counts in polls and in its outcome's counter. A skipped
// report did not poll, so it leaves last_poll and the latency window alone
// (a skip's near-zero duration would drag the average down). last_poll,
// last_success and last_error_at only move forward, so batches recorded out
// of order, or by several aggregators at once, leave the latest ones.
//
// A *RejectedError names connectors Redis refused for good; everything else
// was written. On any other error some connectors' updates may have been
// applied: the caller retries the whole batch (at least once), which may
// count those twice.
func (s *Store) RecordReports(ctx context.Context, reports []*pollgridv1.PollReport) error {
	if len(reports) == 0 {
		return nil
	}
	for i, r := range reports {
		if err := ValidateReport(r); err != nil {
			return fmt.Errorf("record reports: report %d: %w", i, err)
		}
	}
	groups := groupByConnector(reports)
	calls := make([]reportCall, len(groups))
	names := make([]any, len(groups))
	for i, g := range groups {
		c, err := s.reportCall(g)
		if err != nil {
			return fmt.Errorf("record reports of %s: %w", g[0].GetConnector(), err)
		}
		calls[i] = c
		names[i] = c.name
	}

	cmds := make([]*redis.Cmd, len(calls))
	var added *redis.IntCmd
	// Errors are read per command below.
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		added = p.SAdd(ctx, s.connectorsKey(), names...)
		for i, c := range calls {
			cmds[i] = recordScript.EvalSha(ctx, p, c.keys, c.args...)
		}
		return nil
	})
	if err := added.Err(); err != nil {
		return fmt.Errorf("record reports: add to connectors: %w", err)
	}
	rejected := &RejectedError{Connectors: map[string]error{}}
	// A Redis that restarted or flushed its scripts answers NOSCRIPT, and
	// such a call ran nothing: load the script and run just those again.
	var again []reportCall
	for i, cmd := range cmds {
		switch err := cmd.Err(); {
		case err == nil:
		case redis.HasErrorPrefix(err, "NOSCRIPT"):
			again = append(again, calls[i])
		case refusedForGood(err):
			rejected.Connectors[calls[i].name] = err
		default:
			return fmt.Errorf("record reports of %s: %w", calls[i].name, err)
		}
	}
	if len(again) > 0 {
		if err := recordScript.Load(ctx, s.rdb).Err(); err != nil {
			return fmt.Errorf("record reports: load script: %w", err)
		}
		cmds = cmds[:len(again)]
		_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, c := range again {
				cmds[i] = recordScript.EvalSha(ctx, p, c.keys, c.args...)
			}
			return nil
		})
		for i, cmd := range cmds {
			switch err := cmd.Err(); {
			case err == nil:
			case refusedForGood(err):
				rejected.Connectors[again[i].name] = err
			default:
				return fmt.Errorf("record reports of %s: %w", again[i].name, err)
			}
		}
	}
	if len(rejected.Connectors) > 0 {
		return rejected
	}
	return nil
}

// groupByConnector splits reports by connector, in the order each connector
// first appears, each group sorted by started_at (stable: reports that
// started at the same time keep their order).
func groupByConnector(reports []*pollgridv1.PollReport) [][]*pollgridv1.PollReport {
	index := map[string]int{}
	var groups [][]*pollgridv1.PollReport
	for _, r := range reports {
		i, ok := index[r.GetConnector()]
		if !ok {
			i = len(groups)
			index[r.GetConnector()] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], r)
	}
	for _, g := range groups {
		slices.SortStableFunc(g, func(a, b *pollgridv1.PollReport) int {
			return a.GetStartedAt().AsTime().Compare(b.GetStartedAt().AsTime())
		})
	}
	return groups
}

// reportCall is one connector's recordLua call.
type reportCall struct {
	name string
	keys []string
	args []any
}

// bucketSums is one rollup bucket's share of a batch.
type bucketSums struct {
	successes, failures, skipped              int64
	itemsFetched, itemsPublished, itemsFailed int64
	latencySumMicros, latencyMaxMicros        int64
}

// slotUpdate is one ring bucket a batch adds to: the latest of the batch's
// periods that falls in its slot.
type slotUpdate struct {
	ring   ring
	period int64
	sums   bucketSums
}

// slotKey names a ring slot.
type slotKey struct {
	ring ring
	slot int64
}

// reportCall sums one connector's reports (sorted by started_at) into the
// keys and arguments of recordLua (see there for their layout).
func (s *Store) reportCall(reports []*pollgridv1.PollReport) (reportCall, error) {
	var (
		name                                = reports[0].GetConnector()
		connectorType                       string
		polls, successes, failures, skipped int64
		fetched, published, failedItems     int64
		lastPoll, lastSuccess, lastErrorAt  int64
		lastError                           string
		latencies                           []time.Duration
		// One update per ring slot: a later period in a slot replaces an
		// earlier one, as recordLua would.
		slots = map[slotKey]*slotUpdate{}
	)
	for _, r := range reports {
		started := r.GetStartedAt().AsTime()
		startedMs := started.UnixMilli()
		took := r.GetDuration().AsDuration()
		connectorType = r.GetConnectorType()
		polls++
		fetched += r.GetItemsFetched()
		published += r.GetItemsPublished()
		failedItems += r.GetItemsFailed()
		switch r.GetOutcome() {
		case pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS:
			successes++
			lastPoll, lastSuccess = startedMs, startedMs
		case pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE:
			failures++
			lastPoll, lastErrorAt, lastError = startedMs, startedMs, r.GetError()
		default:
			skipped++
		}
		if r.GetOutcome() != pollgridv1.PollOutcome_POLL_OUTCOME_SKIPPED {
			latencies = append(latencies, took)
		}
		for rg := range ringCount {
			p := period(rg, started)
			if p < 0 {
				continue
			}
			k := slotKey{ring: rg, slot: p % ringSlots[rg]}
			u := slots[k]
			switch {
			case u == nil || u.period < p:
				u = &slotUpdate{ring: rg, period: p}
				slots[k] = u
			case u.period > p:
				continue
			}
			u.sums.add(r, took)
		}
	}
	// Only the newest of each list survive its trim: do not ship the rest.
	latencies = latencies[max(0, len(latencies)-LatencyWindow):]
	// The newest entries that fit the ring, oldest first.
	kept := reports[max(0, len(reports)-RecentKept):]
	var recent []byte
	for _, r := range kept {
		recent = appendEntry(recent, r)
	}
	recent = recent[newestFitting(recent, recentBytes):]
	updates := slices.SortedFunc(maps.Values(slots), func(a, b *slotUpdate) int {
		return cmp.Or(cmp.Compare(a.ring, b.ring), cmp.Compare(a.period, b.period))
	})

	args := make([]any, 0, 16+3*len(updates))
	args = append(args, connectorType,
		polls, successes, failures, skipped, fetched, published, failedItems,
		unixMs(lastPoll), unixMs(lastSuccess), unixMs(lastErrorAt), shorten(lastError, lastErrorBytes),
		packLatencies(latencies), recent, HistoryTTL.Milliseconds(), len(updates))
	for _, u := range updates {
		args = append(args, int(u.ring), u.period, packSlot(u.period, u.sums))
	}
	keys := []string{s.key(name, keyMetrics), s.key(name, keyHistory)}
	return reportCall{name: name, keys: keys, args: args}, nil
}

// trimSlack lets the recent reports grow this much past RecentKept before
// recordLua trims them back, so that most writes skip walking the entries
// (readers only read the first RecentKept).
const trimSlack = 20

// add counts a report in the bucket. Negative counts and durations (a
// broken worker, a clock step) count as 0: a bucket holds unsigned decimals.
func (b *bucketSums) add(r *pollgridv1.PollReport, took time.Duration) {
	b.itemsFetched += max(r.GetItemsFetched(), 0)
	b.itemsPublished += max(r.GetItemsPublished(), 0)
	b.itemsFailed += max(r.GetItemsFailed(), 0)
	switch r.GetOutcome() {
	case pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS:
		b.successes++
	case pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE:
		b.failures++
	default:
		b.skipped++
		return
	}
	us := max(took.Microseconds(), 0)
	b.latencySumMicros += us
	b.latencyMaxMicros = max(b.latencyMaxMicros, us)
}

// fields are the bucket's sums in the order of a slot (fieldBytes).
func (b *bucketSums) fields() [8]int64 {
	return [8]int64{b.successes, b.failures, b.skipped, b.itemsFetched, b.itemsPublished, b.itemsFailed,
		b.latencySumMicros, b.latencyMaxMicros}
}

// unixMs is a time field's argument: unix ms, "" when none.
func unixMs(ms int64) string {
	if ms == 0 {
		return ""
	}
	return strconv.FormatInt(ms, 10)
}
