package scheduler

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pollgrid/pollgrid/pkg/telemetry"
)

type metrics struct {
	published *prometheus.CounterVec
	coalesced *prometheus.CounterVec
	leader    prometheus.Gauge
	scheduled prometheus.Gauge
	errors    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollgrid_ticks_published_total", Help: "Ticks accepted by the TICKS stream.",
		}, []string{"type"}),
		coalesced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollgrid_ticks_coalesced_total", Help: "Ticks refused because the connector's previous tick is still pending or running.",
		}, []string{"type"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pollgrid_scheduler_leader", Help: "1 when this replica holds the leader lease and publishes ticks.",
		}),
		scheduled: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pollgrid_scheduled_connectors", Help: "Connectors this replica schedules (0 when not leader).",
		}),
		errors: telemetry.NewDependencyErrors(),
	}
	reg.MustRegister(m.published, m.coalesced, m.leader, m.scheduled, m.errors)
	return m
}
