package aggregator

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pollgrid/pollgrid/pkg/history"
)

// DefaultConnectorGauges is how many connectors get per-connector gauges
// when AGGREGATOR_CONNECTOR_GAUGES_MAX is unset.
const DefaultConnectorGauges = 1000

// metricsReader is the part of the history the collector reads.
type metricsReader interface {
	AllMetrics(ctx context.Context, healthyWindow time.Duration, now time.Time) ([]history.ConnectorMetrics, error)
}

// ConnectorCollector exposes per-connector gauges, computed from Redis at
// scrape time (so every aggregator replica serves the same numbers and a
// restart loses nothing). The worker's series never carry a connector name;
// these are the only per-connector series, and at most max connectors get
// them: unhealthy connectors first, then by name, so that the cap never hides
// a failing connector behind healthy ones. pollgrid_connector_gauges_omitted
// says how many were left out.
type ConnectorCollector struct {
	metrics metricsReader
	max     int
	window  time.Duration
	errors  *prometheus.CounterVec
	now     func() time.Time
	// intervals reads the effective interval of the adaptive connectors
	// among names (the others are left out); nil serves none.
	intervals func(ctx context.Context, names []string) (map[string]time.Duration, error)

	healthy, successRate, lastSuccess, lastPoll, latencyP95, polls, itemsPublished *prometheus.Desc
	connectors, omitted, effectiveInterval                                         *prometheus.Desc
}

// NewConnectorCollector returns a collector of at most max connectors' gauges;
// a failed read from Redis counts in errors (system redis, op
// connector_gauges) and serves no per-connector series for that scrape.
func NewConnectorCollector(st metricsReader, max int, healthyWindow time.Duration, errors *prometheus.CounterVec) *ConnectorCollector {
	labels := []string{"connector", "type"}
	return &ConnectorCollector{
		metrics: st, max: max, window: healthyWindow, errors: errors, now: time.Now,
		healthy: prometheus.NewDesc("pollgrid_connector_healthy",
			"1 when the connector's last successful poll is within the healthy window (AGGREGATOR_HEALTHY_WINDOW), else 0.", labels, nil),
		successRate: prometheus.NewDesc("pollgrid_connector_success_rate",
			"Successful polls / polls that ran (skipped ones excluded), over the connector's whole history.", labels, nil),
		lastSuccess: prometheus.NewDesc("pollgrid_connector_last_success_timestamp_seconds",
			"Unix time of the connector's last successful poll (absent before the first).", labels, nil),
		lastPoll: prometheus.NewDesc("pollgrid_connector_last_poll_timestamp_seconds",
			"Unix time of the connector's last poll that ran, successful or not.", labels, nil),
		latencyP95: prometheus.NewDesc("pollgrid_connector_latency_p95_seconds",
			"95th percentile poll duration over the connector's last 100 polls.", labels, nil),
		polls: prometheus.NewDesc("pollgrid_connector_polls_total",
			"Polls of the connector by outcome (success, failure, skipped), as recorded in Redis.", append(labels, "outcome"), nil),
		itemsPublished: prometheus.NewDesc("pollgrid_connector_items_published_total",
			"Signals published by the connector, as recorded in Redis.", labels, nil),
		effectiveInterval: prometheus.NewDesc("pollgrid_connector_effective_interval_seconds",
			"The interval an adaptive connector's ticks fire at now, as its polls found the upstream changing (absent for a fixed interval).", labels, nil),
		connectors: prometheus.NewDesc("pollgrid_connectors_reporting",
			"Connectors with at least one poll report in Redis.", nil, nil),
		omitted: prometheus.NewDesc("pollgrid_connector_gauges_omitted",
			"Connectors left out of the per-connector series by AGGREGATOR_CONNECTOR_GAUGES_MAX.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *ConnectorCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.healthy, c.successRate, c.lastSuccess, c.lastPoll, c.latencyP95,
		c.polls, c.itemsPublished, c.connectors, c.omitted, c.effectiveInterval} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: one Redis read per scrape.
func (c *ConnectorCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	all, err := c.metrics.AllMetrics(ctx, c.window, c.now())
	if err != nil {
		c.errors.WithLabelValues("redis", "connector_gauges").Inc()
		return
	}
	slices.SortFunc(all, func(a, b history.ConnectorMetrics) int {
		if a.Healthy != b.Healthy {
			if !a.Healthy {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	ch <- prometheus.MustNewConstMetric(c.connectors, prometheus.GaugeValue, float64(len(all)))
	ch <- prometheus.MustNewConstMetric(c.omitted, prometheus.GaugeValue, float64(max(len(all)-c.max, 0)))
	shown := all[:min(len(all), c.max)]
	effective := c.effectiveIntervals(ctx, shown)
	for _, m := range shown {
		l := []string{m.Name, m.Type}
		if e, ok := effective[m.Name]; ok {
			ch <- prometheus.MustNewConstMetric(c.effectiveInterval, prometheus.GaugeValue, e.Seconds(), l...)
		}
		healthy := 0.0
		if m.Healthy {
			healthy = 1
		}
		ch <- prometheus.MustNewConstMetric(c.healthy, prometheus.GaugeValue, healthy, l...)
		ch <- prometheus.MustNewConstMetric(c.successRate, prometheus.GaugeValue, m.SuccessRate, l...)
		ch <- prometheus.MustNewConstMetric(c.latencyP95, prometheus.GaugeValue, m.LatencyP95Seconds, l...)
		if m.LastSuccess != nil {
			ch <- prometheus.MustNewConstMetric(c.lastSuccess, prometheus.GaugeValue, unixSeconds(*m.LastSuccess), l...)
		}
		if m.LastPoll != nil {
			ch <- prometheus.MustNewConstMetric(c.lastPoll, prometheus.GaugeValue, unixSeconds(*m.LastPoll), l...)
		}
		ch <- prometheus.MustNewConstMetric(c.polls, prometheus.CounterValue, float64(m.Successes), m.Name, m.Type, "success")
		ch <- prometheus.MustNewConstMetric(c.polls, prometheus.CounterValue, float64(m.Failures), m.Name, m.Type, "failure")
		ch <- prometheus.MustNewConstMetric(c.polls, prometheus.CounterValue, float64(m.Skipped), m.Name, m.Type, "skipped")
		ch <- prometheus.MustNewConstMetric(c.itemsPublished, prometheus.CounterValue, float64(m.ItemsPublished), l...)
	}
}

// effectiveIntervals reads the effective intervals of the adaptive
// connectors among shown; a failed read counts in errors (system redis, op
// effective_intervals) and serves none of them, the other gauges still.
func (c *ConnectorCollector) effectiveIntervals(ctx context.Context, shown []history.ConnectorMetrics) map[string]time.Duration {
	if c.intervals == nil || len(shown) == 0 {
		return nil
	}
	names := make([]string, len(shown))
	for i, m := range shown {
		names[i] = m.Name
	}
	effective, err := c.intervals(ctx, names)
	if err != nil {
		c.errors.WithLabelValues("redis", "effective_intervals").Inc()
		return nil
	}
	return effective
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
