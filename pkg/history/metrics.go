package history

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pollgrid/pollgrid/pkg/store"
)

// LatencyWindow is how many recent poll durations the latency average and
// p95 are computed over.
const LatencyWindow = 100

// Metrics hash fields.
const (
	metricType           = "type"
	metricPolls          = "polls"
	metricSuccesses      = "successes"
	metricFailures       = "failures"
	metricSkipped        = "skipped"
	metricItemsFetched   = "items_fetched"
	metricItemsPublished = "items_published"
	metricItemsFailed    = "items_failed"
	metricLastPoll       = "last_poll"
	metricLastSuccess    = "last_success"
	metricLastError      = "last_error"
	metricLastErrorAt    = "last_error_at"
)

// ConnectorMetrics is what the aggregator serves for one connector.
type ConnectorMetrics struct {
	Name      string `json:"name"`
	Type      string `json:"type"`
	Polls     int64  `json:"polls"`
	Successes int64  `json:"successes"`
	Failures  int64  `json:"failures"`
	Skipped   int64  `json:"skipped"`
	// SuccessRate is successes/(successes+failures), 0 when neither.
	SuccessRate    float64 `json:"success_rate"`
	ItemsFetched   int64   `json:"items_fetched"`
	ItemsPublished int64   `json:"items_published"`
	ItemsFailed    int64   `json:"items_failed"`
	// LatencyAvgSeconds and LatencyP95Seconds (nearest rank) cover the last
	// LatencyWindow polls that ran.
	LatencyAvgSeconds float64    `json:"latency_avg_seconds"`
	LatencyP95Seconds float64    `json:"latency_p95_seconds"`
	LastPoll          *time.Time `json:"last_poll,omitempty"`
	LastSuccess       *time.Time `json:"last_success,omitempty"`
	LastErrorAt       *time.Time `json:"last_error_at,omitempty"`
	LastError         string     `json:"last_error,omitempty"`
	// Healthy is true when a poll succeeded within the healthy window
	// before now.
	Healthy bool `json:"healthy"`
}

// Metrics reads one connector's metrics; found is false when no report of
// it was ever recorded.
func (s *Store) Metrics(ctx context.Context, name string, healthyWindow time.Duration, now time.Time) (ConnectorMetrics, bool, error) {
	if err := store.CheckName(name); err != nil {
		return ConnectorMetrics{}, false, fmt.Errorf("read metrics: %w", err)
	}
	var read metricsRead
	// Errors are read per command.
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		read = s.queueMetrics(ctx, p, name)
		return nil
	})
	return read.result(name, healthyWindow, now)
}

// AllMetrics reads the metrics of every connector the aggregator has seen,
// sorted by name, in two round trips.
func (s *Store) AllMetrics(ctx context.Context, healthyWindow time.Duration, now time.Time) ([]ConnectorMetrics, error) {
	names, err := s.rdb.SMembers(ctx, s.connectorsKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("read metrics: list connectors: %w", err)
	}
	slices.Sort(names)
	reads := make([]metricsRead, len(names))
	if len(names) > 0 {
		// Errors are read per command.
		_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, name := range names {
				reads[i] = s.queueMetrics(ctx, p, name)
			}
			return nil
		})
	}
	out := make([]ConnectorMetrics, 0, len(names))
	for i, name := range names {
		m, found, err := reads[i].result(name, healthyWindow, now)
		if err != nil {
			return nil, fmt.Errorf("read metrics: %w", err)
		}
		if found {
			out = append(out, m)
		}
	}
	return out, nil
}

type metricsRead struct {
	hash *redis.MapStringStringCmd
	// head is the history head: its header and latency window.
	head *redis.StringCmd
}

func (s *Store) queueMetrics(ctx context.Context, p redis.Pipeliner, name string) metricsRead {
	return metricsRead{
		hash: p.HGetAll(ctx, s.key(name, keyMetrics)),
		head: p.GetRange(ctx, s.key(name, keyHistory), 0, int64(headBytes)-1),
	}
}

func (r metricsRead) result(name string, healthyWindow time.Duration, now time.Time) (ConnectorMetrics, bool, error) {
	h, err := r.hash.Result()
	if err != nil {
		return ConnectorMetrics{}, false, fmt.Errorf("read metrics %s: %w", name, err)
	}
	if len(h) == 0 {
		return ConnectorMetrics{}, false, nil
	}
	m := ConnectorMetrics{Name: name, Type: h[metricType], LastError: h[metricLastError]}
	for _, c := range []struct {
		field string
		dst   *int64
	}{
		{metricPolls, &m.Polls},
		{metricSuccesses, &m.Successes},
		{metricFailures, &m.Failures},
		{metricSkipped, &m.Skipped},
		{metricItemsFetched, &m.ItemsFetched},
		{metricItemsPublished, &m.ItemsPublished},
		{metricItemsFailed, &m.ItemsFailed},
	} {
		if v := h[c.field]; v != "" {
			if *c.dst, err = strconv.ParseInt(v, 10, 64); err != nil {
				return ConnectorMetrics{}, false, fmt.Errorf("read metrics %s: field %s: %w", name, c.field, err)
			}
		}
	}
	for _, c := range []struct {
		field string
		dst   **time.Time
	}{
		{metricLastPoll, &m.LastPoll},
		{metricLastSuccess, &m.LastSuccess},
		{metricLastErrorAt, &m.LastErrorAt},
	} {
		t, err := store.ParseTime(h[c.field])
		if err != nil {
			return ConnectorMetrics{}, false, fmt.Errorf("read metrics %s: field %s: %w", name, c.field, err)
		}
		if !t.IsZero() {
			*c.dst = &t
		}
	}
	if ran := m.Successes + m.Failures; ran > 0 {
		m.SuccessRate = float64(m.Successes) / float64(ran)
	}
	// A history Redis refuses (a key of the wrong type) has no window; the
	// counters are still served.
	head, err := r.head.Result()
	if err != nil && !refusedForGood(err) {
		return ConnectorMetrics{}, false, fmt.Errorf("read latency %s: %w", name, err)
	}
	m.LatencyAvgSeconds, m.LatencyP95Seconds, err = latencyStats(latencyWindow(head))
	if err != nil {
		return ConnectorMetrics{}, false, fmt.Errorf("read latency %s: %w", name, err)
	}
	m.Healthy = m.LastSuccess != nil && now.Sub(*m.LastSuccess) <= healthyWindow
	return m, true, nil
}

// latencyWindow is the window of a history head ("" when none, or when
// the head is not of layoutVersion).
func latencyWindow(head string) string {
	if len(head) < headerBytes || head[0] != layoutVersion {
		return ""
	}
	n := int(head[1]) * latencyBytes
	return head[latencyOffset:min(len(head), latencyOffset+n)]
}

// latencyStats returns the mean and the nearest-rank 95th percentile, in
// seconds, of a latency window (see packLatencies).
func latencyStats(window string) (avg, p95 float64, err error) {
	if len(window)%latencyBytes != 0 {
		return 0, 0, fmt.Errorf("latency window: %d bytes is not a whole number of durations", len(window))
	}
	n := min(len(window)/latencyBytes, LatencyWindow)
	if n == 0 {
		return 0, 0, nil
	}
	secs := make([]float64, n)
	var sum float64
	for i := range secs {
		secs[i] = float64(binary.BigEndian.Uint32([]byte(window[i*latencyBytes:]))) / 1e6
		sum += secs[i]
	}
	slices.Sort(secs)
	rank := int(math.Ceil(0.95 * float64(n)))
	return sum / float64(n), secs[rank-1], nil
}

// latencyBytes is the size of one duration in the latency window.
const latencyBytes = 4

// packLatencies encodes poll durations for the latency window, newest first:
// 4 bytes each, big-endian microseconds (sub-millisecond polls, such as a
// 304 from a nearby server, keep their precision), capped at about 71
// minutes. recordLua prepends them to the window in the history head and
// cuts it to LatencyWindow entries without parsing a number.
func packLatencies(oldestFirst []time.Duration) string {
	buf := make([]byte, len(oldestFirst)*latencyBytes)
	for i, d := range oldestFirst {
		us := min(max(d.Microseconds(), 0), math.MaxUint32)
		binary.BigEndian.PutUint32(buf[(len(oldestFirst)-1-i)*latencyBytes:], uint32(us))
	}
	return string(buf)
}
