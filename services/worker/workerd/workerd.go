// Package workerd is the worker service's wiring: its options from the
// environment, the worker it builds on the shared runtime (pkg/service), its
// admin verbs and its outbound HTTP client. services/worker runs it as a
// binary; the dev stack and the tests run it in process.
package workerd

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/budget"
	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/connectors/builtin"
	"github.com/pollgrid/pollgrid/pkg/egress"
	"github.com/pollgrid/pollgrid/pkg/service"
	"github.com/pollgrid/pollgrid/pkg/telemetry"
	"github.com/pollgrid/pollgrid/pkg/upstream"
	"github.com/pollgrid/pollgrid/pkg/worker"
)

// Service is the worker: it takes ticks from the TICKS queue, polls under a
// lease and publishes what changed. Its default port is the one
// docker-compose.yml and the Prometheus scrape config use.
var Service = service.Service{Name: "worker", DefaultHTTP: ":8082", Connectors: builtin.Registry(), Run: run}

// options are the worker's own environment variables (the shared ones are
// service.Env).
type options struct {
	// id is WORKER_ID, the consumer's and the lease holder's name; default
	// host name and pid.
	id string
	// concurrency is WORKER_CONCURRENCY, polls at once, 1..1024; default 4.
	concurrency int
	// ackWait is WORKER_ACK_WAIT, how long a tick may go without an ack or
	// a sign of progress before NATS redelivers it; default 2s.
	ackWait time.Duration
	// grace is WORKER_GRACE, how long in-flight polls may finish on
	// SIGTERM; default 20s.
	grace time.Duration
	// definitionsCache is WORKER_DEFINITIONS_CACHE, how many connectors
	// the worker keeps read from the catalog and built, 1..1,000,000;
	// default 4096. A worker's memory follows it, not the connectors
	// defined.
	definitionsCache int
	// adaptEvery is WORKER_ADAPT_EVERY, the least time between two
	// schedule changes of an adaptive connector; default 2m.
	adaptEvery time.Duration
	// filter is WORKER_TYPES and WORKER_CONNECTORS: the ticks this worker takes.
	filter bus.Filter
	// allow is UPSTREAM_ALLOW: exceptions to the outbound guard.
	allow egress.Allowlist
}

func readOptions(lookup config.Env, known *connector.Registry) (options, error) {
	var o options
	var err error
	if o.concurrency, err = service.Int(lookup, "WORKER_CONCURRENCY", 4, 1, 1024); err != nil {
		return o, err
	}
	if o.ackWait, err = service.Duration(lookup, "WORKER_ACK_WAIT", 0); err != nil {
		return o, err
	}
	if o.grace, err = service.Duration(lookup, "WORKER_GRACE", 0); err != nil {
		return o, err
	}
	if o.definitionsCache, err = service.Int(lookup, "WORKER_DEFINITIONS_CACHE", worker.DefaultDefinitionsCache, 1, 1_000_000); err != nil {
		return o, err
	}
	if o.adaptEvery, err = service.Duration(lookup, "WORKER_ADAPT_EVERY", worker.DefaultAdaptEvery); err != nil {
		return o, err
	}
	o.id, _ = lookup("WORKER_ID")
	o.filter = bus.Filter{Types: service.List(lookup, "WORKER_TYPES"), Names: service.List(lookup, "WORKER_CONNECTORS")}
	for _, t := range o.filter.Types {
		if !known.Known(t) {
			return o, fmt.Errorf("WORKER_TYPES: unknown connector type %q (known: %v)", t, known.Types())
		}
	}
	o.allow, err = egress.Parse("UPSTREAM_ALLOW", service.List(lookup, "UPSTREAM_ALLOW"))
	return o, err
}

func run(ctx context.Context, rt *service.Runtime) error {
	o, err := readOptions(rt.Lookup, rt.Connectors)
	if err != nil {
		return err
	}
	budgets, err := budget.New(rt.Redis, rt.Store.Keys(), rt.Metrics)
	if err != nil {
		return err
	}
	if rt.Catalog == nil {
		return errors.New("worker: the runtime opened no catalog to read connector definitions from")
	}
	w, err := worker.New(rt.JS, rt.Store, rt.Connectors, rt.Catalog, worker.Options{
		ID: o.id, Concurrency: o.concurrency, AckWait: o.ackWait, Grace: o.grace, Filter: o.filter,
		HTTP:   upstreamClient(rt, o),
		Logger: rt.Logger, Registerer: rt.Metrics, Tracer: rt.Tracer, Propagator: telemetry.Propagator,
		Redactor: rt.Redactor, Budgets: budgets,
		Env: rt.Lookup, DefinitionsCache: o.definitionsCache, AdaptEvery: o.adaptEvery,
	})
	if err != nil {
		return err
	}
	return rt.Run(ctx, service.Parts{
		Loop:    w.Run,
		Replica: o.id,
		Verbs:   map[string]admin.Handler{admin.VerbTrigger: w.Trigger, admin.VerbReset: w.Reset},
	})
}

// upstreamClient is the client every connector uses: upstream's politeness,
// limits and outbound guard (widened by UPSTREAM_ALLOW), with a client span
// per request when spans are exported (its attributes cost a few percent of
// a poll's CPU for nothing otherwise). Trace context is not sent to
// third-party upstreams (an empty propagator), so no traceparent leaves.
func upstreamClient(rt *service.Runtime, o options) *http.Client {
	if o.allow.IsZero() {
		rt.Logger.Info("outbound guard on: upstreams on loopback, link-local, private and unspecified addresses are refused (allow some with UPSTREAM_ALLOW or a connector's config.allow_hosts)")
	} else {
		rt.Logger.Info("outbound guard on, with exceptions", "UPSTREAM_ALLOW", o.allow.String())
	}
	opts := upstream.Options{IdleConnsPerHost: o.concurrency, Allow: o.allow}
	if rt.ExportsSpans() {
		opts.Wrap = func(next http.RoundTripper) http.RoundTripper {
			return otelhttp.NewTransport(next,
				otelhttp.WithTracerProvider(rt.Tracer),
				otelhttp.WithPropagators(propagation.NewCompositeTextMapPropagator()))
		}
	}
	return upstream.NewClient(opts)
}
