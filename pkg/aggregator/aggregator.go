// Package aggregator turns poll reports into per-connector metrics kept in
// Redis, and serves them over HTTP (GET /metrics/connectors[/{name}]) and as
// Prometheus series.
package aggregator

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/store"
	"github.com/pollgrid/pollgrid/pkg/telemetry"
)

// ConsumerName is the durable consumer the aggregator replicas share.
const ConsumerName = "aggregator"

// Options configure an aggregator. Zero values take the defaults.
type Options struct {
	// HealthyWindow: a connector is healthy when it succeeded within this
	// window; default 5m, settable per request with ?healthy_window=.
	HealthyWindow time.Duration
	// ConnectorGauges caps how many connectors get per-connector Prometheus
	// gauges (AGGREGATOR_CONNECTOR_GAUGES_MAX); 0 takes the default 1000, a
	// negative value turns them off. See ConnectorCollector.
	ConnectorGauges int
	Logger          *slog.Logger
	Registerer      prometheus.Registerer
	Tracer          trace.TracerProvider
	Propagator      propagation.TextMapPropagator
}

func (o Options) withDefaults() Options {
	if o.HealthyWindow <= 0 {
		o.HealthyWindow = 5 * time.Minute
	}
	if o.ConnectorGauges == 0 {
		o.ConnectorGauges = DefaultConnectorGauges
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
	tracer  trace.Tracer
	log     *slog.Logger
	reports *prometheus.CounterVec
	errors  *prometheus.CounterVec
}

// New returns an aggregator.
func New(js jetstream.JetStream, st *store.Store, opts Options) *Aggregator {
	opts = opts.withDefaults()
	a := &Aggregator{
		opts:   opts,
		js:     js,
		store:  st,
		tracer: opts.Tracer.Tracer("github.com/pollgrid/pollgrid/pkg/aggregator"),
		log:    opts.Logger,
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollgrid_reports_processed_total", Help: "Poll reports consumed, by result (ok, rejected, retried).",
		}, []string{"result"}),
	}
	a.errors = telemetry.NewDependencyErrors()
	opts.Registerer.MustRegister(a.reports, a.errors)
	if opts.ConnectorGauges > 0 {
		opts.Registerer.MustRegister(NewConnectorCollector(st, opts.ConnectorGauges, opts.HealthyWindow, a.errors))
	}
	return a
}

// Run consumes reports until ctx ends.
func (a *Aggregator) Run(ctx context.Context) error {
	cons, err := a.js.CreateOrUpdateConsumer(ctx, bus.ReportsStream, jetstream.ConsumerConfig{
		Durable:     ConsumerName,
		Description: "pollgrid aggregator",
		AckPolicy:   jetstream.AckExplicitPolicy,
		AckWait:     30 * time.Second,
		MaxDeliver:  -1,
	})
	if err != nil {
		return fmt.Errorf("create consumer %s on %s: %w", ConsumerName, bus.ReportsStream, err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) { a.handle(ctx, msg) })
	if err != nil {
		return fmt.Errorf("consume %s: %w", bus.ReportsStream, err)
	}
	a.log.Info("aggregator started")
	<-ctx.Done()
	cc.Drain()
	<-cc.Closed()
	a.log.Info("aggregator stopped")
	return nil
}

func (a *Aggregator) handle(ctx context.Context, msg jetstream.Msg) {
	ctx = a.opts.Propagator.Extract(context.WithoutCancel(ctx), bus.HeaderCarrier(msg.Headers()))
	ctx, span := bus.StartProcessSpan(ctx, a.tracer, msg, ConsumerName)
	defer span.End()
	batch, err := bus.DecodeReports(msg.Data())
	if err == nil {
		for _, r := range batch.GetReports() {
			if err = store.ValidateReport(r); err != nil {
				break
			}
		}
	}
	if err != nil {
		bus.RecordError(span, err)
		a.reports.WithLabelValues("rejected").Inc()
		a.log.ErrorContext(ctx, "dropping malformed poll report", "subject", msg.Subject(), "error", err)
		_ = msg.Term()
		return
	}
	if err := a.store.RecordReports(ctx, batch.GetReports()); err != nil {
		bus.RecordError(span, err)
		a.reports.WithLabelValues("retried").Inc()
		a.errors.WithLabelValues("redis", "record_report").Inc()
		a.log.WarnContext(ctx, "recording poll report failed; retrying", "error", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	a.reports.WithLabelValues("ok").Inc()
	if err := msg.Ack(); err != nil {
		a.errors.WithLabelValues("nats", "ack").Inc()
	}
}

// Handler serves GET /metrics/connectors and GET /metrics/connectors/{name}.
func (a *Aggregator) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics/connectors", func(w http.ResponseWriter, r *http.Request) {
		window, ok := a.window(w, r)
		if !ok {
			return
		}
		all, err := a.store.AllMetrics(r.Context(), window, time.Now())
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
		m, found, err := a.store.Metrics(r.Context(), name, window, time.Now())
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
