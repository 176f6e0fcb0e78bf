package aggregator

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pollgrid/pollgrid/pkg/admin"
)

// healthCollector exports how many configured connectors are in each health
// (pollgrid_connectors{health}), computed from Redis at scrape time like the
// per-connector gauges: alert on failing and stale (deploy/prometheus), then
// `pollctl list --health stale` names them.
type healthCollector struct {
	a    *Aggregator
	desc *prometheus.Desc
}

func newHealthCollector(a *Aggregator) *healthCollector {
	return &healthCollector{a: a, desc: prometheus.NewDesc("pollgrid_connectors",
		"Configured connectors by health: failing (last poll failed), stale (no poll for AGGREGATOR_STALE_AFTER intervals), "+
			"new (never polled), paused, ok, disabled.", []string{"health"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *healthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector: two Redis pipelines per scrape.
func (c *healthCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := c.a.view(ctx, time.Now())
	if err != nil {
		c.a.errors.WithLabelValues("redis", "connector_health").Inc()
		return
	}
	counts := map[string]int{}
	for _, r := range rows {
		counts[r.Health]++
	}
	for _, health := range admin.Healths() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[health]), health)
	}
}
