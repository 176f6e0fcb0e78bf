package scheduler

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pollgrid/pollgrid/pkg/telemetry"
)

type metrics struct {
	leader    prometheus.Gauge
	scheduled prometheus.Gauge
	// fullSyncs is how long each full sync took (sync.go).
	fullSyncs  prometheus.Histogram
	changes    *prometheus.CounterVec
	firstTicks prometheus.Counter
	// firstWaiting is the length of the first ticks' queue (first.go).
	firstWaiting prometheus.Gauge
	// adaptations and adapted: adapt.go. The effective interval of each
	// connector is the aggregator's gauge (from the workers), not this one.
	adaptations prometheus.Counter
	adapted     prometheus.Gauge
	errors      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pollgrid_scheduler_leader", Help: "1 when this replica holds the leader lease and keeps the schedules.",
		}),
		scheduled: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pollgrid_scheduled_connectors", Help: "Connectors with a message schedule, as of the leader's last sync (0 when not leader).",
		}),
		fullSyncs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pollgrid_scheduler_full_sync_seconds",
			Help: "How long the leader's full syncs took: each reads every installed schedule and compares it with the catalog.",
			// From 10 ms to 164 s: a full sync grows with the connectors.
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 8),
		}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollgrid_schedule_changes_total", Help: "Message schedules installed (new or changed) and removed.",
		}, []string{"op"}),
		firstTicks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pollgrid_first_ticks_total", Help: "Ticks the scheduler sent itself: a new or overdue connector's first poll.",
		}),
		firstWaiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pollgrid_first_ticks_waiting",
			Help: "New connectors waiting for their paced first tick; one whose schedule fires first leaves without (0 when not leader).",
		}),
		adaptations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pollgrid_scheduler_adaptations_total",
			Help: "Changes of an adaptive connector's effective interval the leader took from its workers and installed in its schedule.",
		}),
		adapted: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pollgrid_scheduler_adapted_connectors",
			Help: "Adaptive connectors whose schedule the leader keeps at an effective interval (0 when not leader).",
		}),
		errors: telemetry.NewDependencyErrors(),
	}
	m.changes.WithLabelValues("install")
	m.changes.WithLabelValues("remove")
	reg.MustRegister(m.leader, m.scheduled, m.fullSyncs, m.changes, m.firstTicks, m.firstWaiting, m.adaptations, m.adapted, m.errors)
	return m
}
