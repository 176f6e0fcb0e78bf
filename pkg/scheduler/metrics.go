package scheduler

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pollgrid/pollgrid/pkg/telemetry"
)

type metrics struct {
	leader     prometheus.Gauge
	scheduled  prometheus.Gauge
	changes    *prometheus.CounterVec
	firstTicks prometheus.Counter
	errors     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pollgrid_scheduler_leader", Help: "1 when this replica holds the leader lease and keeps the schedules.",
		}),
		scheduled: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pollgrid_scheduled_connectors", Help: "Connectors with a message schedule, as of the leader's last sync (0 when not leader).",
		}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollgrid_schedule_changes_total", Help: "Message schedules installed (new or changed) and removed.",
		}, []string{"op"}),
		firstTicks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pollgrid_first_ticks_total", Help: "Ticks the scheduler sent itself: a new or overdue connector's first poll.",
		}),
		errors: telemetry.NewDependencyErrors(),
	}
	m.changes.WithLabelValues("install")
	m.changes.WithLabelValues("remove")
	reg.MustRegister(m.leader, m.scheduled, m.changes, m.firstTicks, m.errors)
	return m
}
