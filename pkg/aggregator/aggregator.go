// Package aggregator turns poll reports into per-connector metrics kept in
// Redis, and serves them over HTTP (GET /metrics/connectors[/{name}]) and as
// Prometheus series. It gathers the reports of many messages in memory and
// writes them with one history.RecordReports per flush, acknowledging each
// message only once its reports are written.
package aggregator

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/pollgrid/pollgrid/pkg/budget"
	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/catalog"
	"github.com/pollgrid/pollgrid/pkg/history"
	"github.com/pollgrid/pollgrid/pkg/redact"
	"github.com/pollgrid/pollgrid/pkg/store"
	"github.com/pollgrid/pollgrid/pkg/telemetry"
)

// ConsumerName is the durable consumer the aggregator replicas share.
const ConsumerName = "aggregator"

// Defaults of Options.
const (
	DefaultFlushInterval = 2 * time.Second
	DefaultFlushReports  = 5000
	DefaultFlushMessages = 500
	// maxAckPending bounds the messages delivered and not yet acknowledged,
	// over all replicas: room for several replicas each holding a flush of
	// DefaultFlushMessages.
	maxAckPending = 10_000
	// ackWait is how long JetStream waits for an acknowledgement before it
	// delivers a message again (to any replica): a flush interval plus a
	// slow write must fit in it.
	ackWait = 30 * time.Second
	// writeTimeout bounds one flush's RecordReports, well inside ackWait.
	writeTimeout = 10 * time.Second
)

// Options configure an aggregator. Zero values take the defaults.
type Options struct {
	// Budgets reads the rate-limit budgets for the status views; nil shows
	// a connector's budget without what it has left.
	Budgets *budget.Limiter
	// HealthyWindow: a connector is healthy when it succeeded within this
	// window; default 5m, settable per request with ?healthy_window=.
	HealthyWindow time.Duration
	// ConnectorGaugesMax caps, as AGGREGATOR_CONNECTOR_GAUGES_MAX does, how
	// many connectors get per-connector Prometheus gauges (see
	// ConnectorCollector); 0 turns them off, with pollgrid_connectors.
	// Unlike the other fields' zero, its zero is no default: a cap of none
	// is what the variable's 0 says too. The services pass
	// DefaultConnectorGauges when the variable is unset.
	ConnectorGaugesMax int
	// FlushInterval is how long reports wait in memory before they are
	// written to Redis (AGGREGATOR_FLUSH); default 2s. It is the lag of
	// /metrics/connectors behind the reports, and what lets the reports of
	// one connector share a write. At most ackWait/2.
	FlushInterval time.Duration
	// FlushReports and FlushMessages start a flush early once that many
	// reports, or messages, wait; defaults 5000 and 500.
	FlushReports  int
	FlushMessages int

	// Connectors are the connectors defined, for list, status and the
	// status page (status.go): the catalog's index; nil serves none.
	Connectors Connectors
	// StaleAfter is how many missed intervals make a connector stale
	// (AGGREGATOR_STALE_AFTER); default 3.
	StaleAfter int
	// Redactor masks the config's secrets in what the status views show
	// (errors, cursors); nil masks none.
	Redactor *redact.Redactor

	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Tracer     trace.TracerProvider
	// Propagator reads each report's poll context (PollReport.traceparent)
	// for the flush span's links; default W3C trace context.
	Propagator propagation.TextMapPropagator
}

func (o Options) withDefaults() Options {
	if o.HealthyWindow <= 0 {
		o.HealthyWindow = 5 * time.Minute
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	o.FlushInterval = min(o.FlushInterval, ackWait/2)
	if o.FlushReports <= 0 {
		o.FlushReports = DefaultFlushReports
	}
	if o.FlushMessages <= 0 {
		o.FlushMessages = DefaultFlushMessages
	}
	if o.Connectors == nil {
		none := catalog.NewIndex(nil, nil)
		none.SetSynced()
		o.Connectors = none
	}
	if o.StaleAfter <= 0 {
		o.StaleAfter = DefaultStaleAfter
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.Tracer == nil {
		o.Tracer = noop.NewTracerProvider()
	}
	if o.Propagator == nil {
		o.Propagator = propagation.TraceContext{}
	}
	return o
}

// Aggregator consumes poll reports.
type Aggregator struct {
	opts    Options
	js      jetstream.JetStream
	store   *store.Store
	history *history.Store
	tracer  trace.Tracer
	log     *slog.Logger
	reports *prometheus.CounterVec
	errors  *prometheus.CounterVec

	// flushing serialises flushes: the ticker's and the consumer's own when
	// enough is pending (which so holds the consumer back while Redis is slow).
	flushing sync.Mutex
	mu       sync.Mutex // guards pending and pendingReports
	pending  []pendingMsg
	// pendingReports counts the reports of pending.
	pendingReports int
	// started is when this replica started: a connector never polled is
	// "new" for StaleAfter intervals from then, stale after.
	started time.Time
}

// New returns an aggregator that writes reports to hist, and reads the
// connectors' state from st for its status views.
func New(js jetstream.JetStream, st *store.Store, hist *history.Store, opts Options) *Aggregator {
	opts = opts.withDefaults()
	a := &Aggregator{
		opts:    opts,
		js:      js,
		store:   st,
		history: hist,
		started: time.Now(),
		tracer:  opts.Tracer.Tracer("github.com/pollgrid/pollgrid/pkg/aggregator"),
		log:     opts.Logger,
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollgrid_reports_processed_total", Help: "Poll reports consumed, by result: ok (written to Redis and acknowledged), retried (the write failed; redelivered), rejected (invalid reports, and messages that do not decode).",
		}, []string{"result"}),
	}
	a.errors = telemetry.NewDependencyErrors()
	opts.Registerer.MustRegister(a.reports, a.errors)
	if opts.ConnectorGaugesMax > 0 {
		opts.Registerer.MustRegister(newHealthCollector(a))
		gauges := NewConnectorCollector(hist, opts.ConnectorGaugesMax, opts.HealthyWindow, a.errors)
		gauges.intervals = a.effectiveIntervals
		opts.Registerer.MustRegister(gauges)
	}
	return a
}

// Run consumes reports until ctx ends, then writes what it holds before it
// returns. Replicas share the durable consumer: each message goes to one of
// them, and one that is not acknowledged within ackWait (a replica died
// holding it) goes to another.
func (a *Aggregator) Run(ctx context.Context) error {
	cons, err := a.js.CreateOrUpdateConsumer(ctx, bus.ReportsStream, jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "pollgrid aggregator",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    -1,
		MaxAckPending: maxAckPending,
	})
	if err != nil {
		return fmt.Errorf("create consumer %s on %s: %w", ConsumerName, bus.ReportsStream, err)
	}
	// Flushes outlive ctx: the last one writes what was received before the
	// stop, and an aborted write would only make it come back.
	flushCtx := context.WithoutCancel(ctx)
	cc, err := cons.Consume(func(msg jetstream.Msg) { a.handle(flushCtx, msg) })
	if err != nil {
		return fmt.Errorf("consume %s: %w", bus.ReportsStream, err)
	}
	a.log.Info("aggregator started", "flush", a.opts.FlushInterval.String())
	tick := time.NewTicker(a.opts.FlushInterval)
	defer tick.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-tick.C:
			a.flush(flushCtx)
		}
	}
	cc.Drain()
	<-cc.Closed()
	a.flush(flushCtx)
	a.log.Info("aggregator stopped")
	return nil
}

// Handler serves GET /metrics/connectors and GET /metrics/connectors/{name},
// and the status page with its JSON (status_http.go).
func (a *Aggregator) Handler() http.Handler {
	mux := http.NewServeMux()
	a.statusRoutes(mux)
	mux.HandleFunc("GET /metrics/connectors", func(w http.ResponseWriter, r *http.Request) {
		window, ok := a.window(w, r)
		if !ok {
			return
		}
		all, err := a.history.AllMetrics(r.Context(), window, time.Now())
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "reading metrics from Redis failed: "+err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"connectors": all, "healthy_window": window.String()})
	})
	mux.HandleFunc("GET /metrics/connectors/{name}", func(w http.ResponseWriter, r *http.Request) {
		window, ok := a.window(w, r)
		if !ok {
			return
		}
		name := r.PathValue("name")
		m, found, err := a.history.Metrics(r.Context(), name, window, time.Now())
		switch {
		case err != nil:
			writeError(w, http.StatusServiceUnavailable, "reading metrics from Redis failed: "+err.Error())
		case !found:
			writeError(w, http.StatusNotFound, fmt.Sprintf("no poll reported yet for connector %q", name))
		default:
			writeJSON(w, http.StatusOK, m)
		}
	})
	return mux
}

func (a *Aggregator) window(w http.ResponseWriter, r *http.Request) (time.Duration, bool) {
	q := r.URL.Query().Get("healthy_window")
	if q == "" {
		return a.opts.HealthyWindow, true
	}
	d, err := time.ParseDuration(q)
	if err != nil || d <= 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("healthy_window=%q is not a positive duration (write e.g. 10m)", q))
		return 0, false
	}
	return d, true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
