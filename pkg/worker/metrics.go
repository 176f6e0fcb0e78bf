package worker

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/pollgrid/pollgrid/pkg/telemetry"
)

// metrics are labelled by connector type and outcome only, never by
// connector name: 10,000 connectors must not mean millions of series.
// Per-connector numbers come from the aggregator.
type metrics struct {
	polls          *prometheus.CounterVec
	pollDuration   *prometheus.HistogramVec
	signals        *prometheus.CounterVec
	itemsFailed    *prometheus.CounterVec
	contention     *prometheus.CounterVec
	missed         *prometheus.CounterVec
	duplicates     *prometheus.CounterVec
	panics         *prometheus.CounterVec
	crashLoops     *prometheus.CounterVec
	seenCap        *prometheus.CounterVec
	fenced         *prometheus.CounterVec
	rateLimited    *prometheus.CounterVec
	redelivered    prometheus.Counter
	reportsDropped prometheus.Counter
	lateness       prometheus.Histogram
	inFlight       prometheus.Gauge
	concurrency    prometheus.Gauge
	badTicks       prometheus.Counter
	errors         *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollgrid_polls_total", Help: "Polls by connector type and outcome (success, failure, skipped).",
		}, []string{"type", "outcome"}),
		pollDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pollgrid_poll_duration_seconds", Help: "Duration of a poll, from lease to commit.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"type"}),
		signals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollgrid_signals_published_total", Help: "Signals published and acknowledged by JetStream.",
		}, []string{"type", "change"}),
		itemsFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollgrid_items_failed_total", Help: "Upstream items that could not be used (the poll went on).",
		}, []string{"type"}),
		contention: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollgrid_lease_contention_total", Help: "Ticks that found the connector busy: its lease held by a poll still running " +
				"(a connector slower than its interval is polled back to back, never in parallel).",
		}, []string{"type"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollgrid_signals_duplicate_total", Help: "Signals JetStream dropped as re-publishes within the SIGNALS duplicate window " +
				"(a poll after a crash, or after Redis lost its data).",
		}, []string{"type"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollgrid_panics_total", Help: "Polls that failed because their connector panicked (the stack is logged).",
		}, []string{"type"}),
		crashLoops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollgrid_crash_loops_total", Help: "Ticks not polled because the connector's last polls never finished (their workers died): it backs off instead.",
		}, []string{"type"}),
		seenCap: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollgrid_seen_cap_items_total", Help: "Items a connector's seen_cap acted on: forgotten (seen longest ago, to make room) " +
				"or untracked (new items left unpublished: the answer alone holds more than seen_cap). Either says: raise seen_cap.",
		}, []string{"type", "action"}),
		missed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollgrid_ticks_missed_total", Help: "Whole intervals that passed with no poll of a connector that was not backing off " +
				"(its polls take longer than its interval, or the workers cannot keep up).",
		}, []string{"type"}),
		fenced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollgrid_state_writes_fenced_total", Help: "State commits rejected because a newer lease exists.",
		}, []string{"type"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollgrid_upstream_rate_limited_total", Help: "Polls that failed because the upstream answered 429 Too Many Requests.",
		}, []string{"type"}),
		reportsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pollgrid_reports_dropped_total", Help: "Poll reports dropped because NATS refused them for too long (metrics only; signals are never dropped).",
		}),
		redelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pollgrid_ticks_redelivered_total", Help: "Ticks received more than once (a worker died or was too slow to ack).",
		}),
		lateness: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pollgrid_tick_lateness_seconds", Help: "Time from a tick's intended time to a worker starting it.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pollgrid_polls_in_flight", Help: "Polls running now in this worker.",
		}),
		concurrency: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pollgrid_worker_concurrency", Help: "Polls this worker may run at once (WORKER_CONCURRENCY); saturation is polls_in_flight / this.",
		}),
		badTicks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pollgrid_ticks_rejected_total", Help: "Ticks that could not be decoded or named no configured connector.",
		}),
		errors: telemetry.NewDependencyErrors(),
	}
	reg.MustRegister(m.polls, m.pollDuration, m.signals, m.itemsFailed, m.contention, m.missed, m.duplicates, m.panics, m.crashLoops, m.seenCap, m.fenced,
		m.rateLimited, m.redelivered, m.reportsDropped, m.lateness, m.inFlight, m.concurrency, m.badTicks, m.errors)
	return m
}

// observeDuration records a poll's duration with the poll's trace id as
// the exemplar when the trace is sampled (an unsampled trace id leads
// nowhere), so a slow bucket in Grafana links to a trace in Jaeger.
func (m *metrics) observeDuration(ctx context.Context, connectorType string, d time.Duration) {
	obs := m.pollDuration.WithLabelValues(connectorType)
	sc := trace.SpanContextFromContext(ctx)
	if eo, ok := obs.(prometheus.ExemplarObserver); ok && sc.IsSampled() {
		eo.ObserveWithExemplar(d.Seconds(), prometheus.Labels{"trace_id": sc.TraceID().String()})
		return
	}
	obs.Observe(d.Seconds())
}

// initType creates the series of a connector type at zero, so that rate()
// and alerts see a counter start at 0 instead of appearing at its first
// increment (a series that is absent until something fails hides the first
// failure from increase()).
func (m *metrics) initType(connectorType string) {
	for _, outcome := range []string{"success", "failure", "skipped"} {
		m.polls.WithLabelValues(connectorType, outcome)
	}
	for _, change := range []string{"created", "updated", "deleted"} {
		m.signals.WithLabelValues(connectorType, change)
	}
	m.itemsFailed.WithLabelValues(connectorType)
	m.contention.WithLabelValues(connectorType)
	m.missed.WithLabelValues(connectorType)
	m.duplicates.WithLabelValues(connectorType)
	m.panics.WithLabelValues(connectorType)
	m.crashLoops.WithLabelValues(connectorType)
	m.seenCap.WithLabelValues(connectorType, "forgotten")
	m.seenCap.WithLabelValues(connectorType, "untracked")
	m.fenced.WithLabelValues(connectorType)
	m.rateLimited.WithLabelValues(connectorType)
}
