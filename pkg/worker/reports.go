package worker

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/pollgrid/pollgrid/pkg/bus"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// Report batching: a worker publishes its poll reports together, at most
// every reportFlush or when reportBatch are waiting, so reporting costs one
// JetStream message per worker and flush instead of one per poll. Reports
// are metrics: when NATS refuses them they wait for the next flush, and past
// reportBacklog the oldest are dropped and counted.
const (
	reportFlush   = time.Second
	reportBatch   = 2000
	reportBacklog = 100_000
)

// reporter gathers poll reports and publishes them in batches.
type reporter struct {
	js      jetstream.JetStream
	subject string
	log     *slog.Logger
	metrics *metrics
	tracer  trace.Tracer
	prop    propagation.TextMapPropagator

	mu      sync.Mutex
	pending []*pollgridv1.PollReport
	full    chan struct{}
}

func newReporter(js jetstream.JetStream, worker string, log *slog.Logger, m *metrics, tracer trace.Tracer,
	prop propagation.TextMapPropagator) *reporter {
	return &reporter{js: js, subject: bus.ReportSubject(worker), log: log, metrics: m, tracer: tracer, prop: prop,
		full: make(chan struct{}, 1)}
}

// add queues a report for the next flush.
func (r *reporter) add(rep *pollgridv1.PollReport) {
	r.mu.Lock()
	r.pending = append(r.pending, rep)
	n := len(r.pending)
	r.mu.Unlock()
	if n >= reportBatch {
		select {
		case r.full <- struct{}{}:
		default:
		}
	}
}

// run flushes every reportFlush, or sooner when a batch is full, until ctx
// ends; then it flushes what is left once more.
func (r *reporter) run(ctx context.Context) {
	t := time.NewTicker(reportFlush)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			r.flush(fctx)
			cancel()
			return
		case <-t.C:
		case <-r.full:
		}
		r.flush(ctx)
	}
}

// flush publishes the pending reports, reportBatch per message. What NATS
// refuses goes back to the front of the queue.
func (r *reporter) flush(ctx context.Context) {
	r.mu.Lock()
	batch := r.pending
	r.pending = nil
	r.mu.Unlock()
	for len(batch) > 0 {
		n := min(len(batch), reportBatch)
		if err := r.publish(ctx, batch[:n]); err != nil {
			r.metrics.errors.WithLabelValues("nats", "report").Inc()
			r.log.WarnContext(ctx, "publish poll reports failed; they wait for the next flush", "reports", len(batch), "error", err)
			r.requeue(batch)
			return
		}
		batch = batch[n:]
	}
}

// publish sends one batch. Its producer span is a trace of its own (it
// serves many polls) that links to the span of each poll it reports, the
// reports' creation contexts.
func (r *reporter) publish(ctx context.Context, reports []*pollgridv1.PollReport) error {
	data, err := bus.EncodeReports(&pollgridv1.PollReports{Reports: reports})
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: r.subject, Data: data}
	ctx, span := bus.StartPublishSpan(ctx, r.tracer, msg)
	defer span.End()
	bus.LinkReports(span, r.prop, reports)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err = r.js.PublishMsg(ctx, msg); err != nil {
		bus.RecordError(span, err)
	}
	return err
}

// requeue puts unsent reports back before those added since, keeping at
// most reportBacklog (the oldest go first).
func (r *reporter) requeue(unsent []*pollgridv1.PollReport) {
	r.mu.Lock()
	defer r.mu.Unlock()
	all := append(unsent, r.pending...)
	if drop := len(all) - reportBacklog; drop > 0 {
		r.metrics.reportsDropped.Add(float64(drop))
		all = all[drop:]
	}
	r.pending = all
}
