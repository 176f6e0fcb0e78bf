package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	"golang.org/x/sync/errgroup"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/aggregator"
	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connectors/builtin"
	"github.com/pollgrid/pollgrid/pkg/egress"
	"github.com/pollgrid/pollgrid/pkg/history"
	"github.com/pollgrid/pollgrid/pkg/leader"
	"github.com/pollgrid/pollgrid/pkg/scheduler"
	"github.com/pollgrid/pollgrid/pkg/telemetry"
	"github.com/pollgrid/pollgrid/pkg/upstream"
	"github.com/pollgrid/pollgrid/pkg/worker"
)

// A Service is one of pollgrid's three roles.
type Service struct {
	// Name is scheduler, worker or aggregator.
	Name string
	// DefaultHTTP is the HTTP_ADDR used when none is set.
	DefaultHTTP string
	// Run runs the service on a started runtime until ctx ends.
	Run func(ctx context.Context, rt *Runtime) error
}

// The three services. Their default ports are the ones docker-compose.yml
// and the Prometheus scrape config use.
var (
	Scheduler  = Service{Name: "scheduler", DefaultHTTP: ":8081", Run: runScheduler}
	Worker     = Service{Name: "worker", DefaultHTTP: ":8082", Run: runWorker}
	Aggregator = Service{Name: "aggregator", DefaultHTTP: ":8080", Run: runAggregator}
)

func runScheduler(ctx context.Context, rt *Runtime) error {
	leaderTTL, err := Duration(rt.Lookup, "SCHEDULER_LEADER_TTL", 0)
	if err != nil {
		return err
	}
	resync, err := Duration(rt.Lookup, "SCHEDULER_RESYNC", 0)
	if err != nil {
		return err
	}
	id, _ := rt.Lookup("SCHEDULER_ID")
	s := scheduler.New(rt.JS, rt.Store, leader.New(rt.Redis, rt.Store.Keys()), rt.Config(), scheduler.Options{
		ID: id, LeaderTTL: leaderTTL, Resync: resync, Logger: rt.Logger, Registerer: rt.Metrics,
	})
	apply := func(c *config.Config) error { s.Apply(c); return nil }
	rt.WatchReload(ctx, apply)
	stopAdmin, err := serveAdmin(rt, id, apply, map[string]admin.Handler{admin.VerbPause: s.Pause, admin.VerbResume: s.Resume})
	if err != nil {
		return err
	}
	defer stopAdmin()
	resyncSub, err := s.WatchResync(rt.NATS)
	if err != nil {
		return err
	}
	defer func() { _ = resyncSub.Unsubscribe() }()
	return serveAlong(ctx, rt, nil, s.Run)
}

func runWorker(ctx context.Context, rt *Runtime) error {
	concurrency, err := Int(rt.Lookup, "WORKER_CONCURRENCY", 4, 1, 1024)
	if err != nil {
		return err
	}
	ackWait, err := Duration(rt.Lookup, "WORKER_ACK_WAIT", 0)
	if err != nil {
		return err
	}
	grace, err := Duration(rt.Lookup, "WORKER_GRACE", 0)
	if err != nil {
		return err
	}
	id, _ := rt.Lookup("WORKER_ID")
	filter := bus.Filter{Types: List(rt.Lookup, "WORKER_TYPES"), Names: List(rt.Lookup, "WORKER_CONNECTORS")}
	for _, t := range filter.Types {
		if !rt.Connectors.Known(t) {
			return fmt.Errorf("WORKER_TYPES: unknown connector type %q (known: %v)", t, rt.Connectors.Types())
		}
	}
	client, err := upstreamClient(rt, concurrency)
	if err != nil {
		return err
	}
	w, err := worker.New(rt.JS, rt.Store, rt.Connectors, rt.Config(), worker.Options{
		ID: id, Concurrency: concurrency, AckWait: ackWait, Grace: grace, Filter: filter,
		HTTP:   client,
		Logger: rt.Logger, Registerer: rt.Metrics, Tracer: rt.Tracer, Propagator: telemetry.Propagator,
		Redactor: rt.Redactor,
	})
	if err != nil {
		return err
	}
	rt.WatchReload(ctx, w.Apply)
	stopAdmin, err := serveAdmin(rt, id, w.Apply, map[string]admin.Handler{admin.VerbTrigger: w.Trigger, admin.VerbReset: w.Reset})
	if err != nil {
		return err
	}
	defer stopAdmin()
	return serveAlong(ctx, rt, nil, w.Run)
}

func runAggregator(ctx context.Context, rt *Runtime) error {
	window, err := Duration(rt.Lookup, "AGGREGATOR_HEALTHY_WINDOW", 0)
	if err != nil {
		return err
	}
	// AGGREGATOR_CONNECTOR_GAUGES_MAX: 0 turns the per-connector gauges off.
	gauges, err := Int(rt.Lookup, "AGGREGATOR_CONNECTOR_GAUGES_MAX", aggregator.DefaultConnectorGauges, 0, 1_000_000)
	if err != nil {
		return err
	}
	// AGGREGATOR_FLUSH: how long reports wait before one write to Redis.
	flush, err := Duration(rt.Lookup, "AGGREGATOR_FLUSH", aggregator.DefaultFlushInterval)
	if err != nil {
		return err
	}
	// AGGREGATOR_STALE_AFTER: missed intervals that make a connector stale.
	staleAfter, err := Int(rt.Lookup, "AGGREGATOR_STALE_AFTER", aggregator.DefaultStaleAfter, 1, 1000)
	if err != nil {
		return err
	}
	a := aggregator.New(rt.JS, rt.Store, history.New(rt.Redis, rt.Store.Keys()), aggregator.Options{
		HealthyWindow: window, ConnectorGaugesMax: gauges, FlushInterval: flush,
		Config: rt.Config, StaleAfter: staleAfter, Redactor: rt.Redactor,
		Logger: rt.Logger, Registerer: rt.Metrics, Tracer: rt.Tracer, Propagator: telemetry.Propagator,
	})
	// The aggregator applies nothing itself: a reload swaps the config its
	// status views read (and keeps SIGHUP from ending it).
	apply := func(*config.Config) error { return nil }
	rt.WatchReload(ctx, apply)
	stopAdmin, err := serveAdmin(rt, "", apply, map[string]admin.Handler{admin.VerbList: a.List, admin.VerbStatus: a.Status})
	if err != nil {
		return err
	}
	defer stopAdmin()
	return serveAlong(ctx, rt, a.Handler(), a.Run)
}

// serveAlong runs the HTTP endpoints next to the service's main loop; the
// first to fail stops both. A NATS connection that closes for good (it
// reconnects through restarts, outages and rejected credentials, so only a
// fault of the client ends it) stops the service too, with the cause, so
// that the process exits and is restarted rather than idling unconnected.
func serveAlong(ctx context.Context, rt *Runtime, extra http.Handler, run func(context.Context) error) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return rt.Serve(ctx, extra) })
	g.Go(func() error { return run(ctx) })
	g.Go(func() error {
		select {
		case <-ctx.Done():
			return nil
		case <-rt.NATSClosed():
			return rt.natsClosedErr()
		}
	})
	return g.Wait()
}

// Main is a service binary's whole main: flags, signals, start, run, exit
// code. -check-config validates the config, prints every problem and exits
// 0 or 1.
func Main(svc Service) {
	os.Exit(run(svc, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}

func run(svc Service, args []string, lookup config.Env, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(svc.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	check := fs.Bool("check-config", false, "validate the connectors config, print every problem, exit 0 (valid) or 1")
	build := buildFlags(fs, svc, lookup)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if code, done := build(stdout, stderr); done {
		return code
	}
	if *check {
		return CheckConfig(lookup, stdout, stderr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// SIGHUP is caught from here to exit: while the service waits for NATS
	// at start-up it is kept and applied once the service runs; while it
	// shuts down it is ignored. Uncaught, a HUP would end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	rt, err := Start(ctx, svc.Name, lookup, svc.DefaultHTTP, WithReloadSignal(hup))
	if err != nil {
		fmt.Fprintf(stderr, "pollgrid %s: %v\n", svc.Name, err)
		return 1
	}
	defer rt.Close()
	if err := svc.Run(ctx, rt); err != nil && !errors.Is(err, context.Canceled) {
		rt.Logger.Error("service failed", "error", err)
		return 1
	}
	rt.Logger.Info("shut down cleanly")
	return 0
}

// CheckConfig loads the config the way the services do and reports.
func CheckConfig(lookup config.Env, stdout, stderr io.Writer) int {
	cfg, source, err := config.Load(lookup, builtin.Registry())
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok, %d connectors (%d enabled)\n", source, len(cfg.Connectors), len(cfg.Enabled()))
	return 0
}

// upstreamClient is the client every connector uses: upstream's politeness,
// limits and outbound guard (widened by UPSTREAM_ALLOW), with a client span
// per request when spans are exported (its attributes cost a few percent of
// a poll's CPU for nothing otherwise). Trace context is not sent to
// third-party upstreams (an empty propagator), so no traceparent leaves.
func upstreamClient(rt *Runtime, concurrency int) (*http.Client, error) {
	allow, err := egress.Parse("UPSTREAM_ALLOW", List(rt.Lookup, "UPSTREAM_ALLOW"))
	if err != nil {
		return nil, err
	}
	if allow.IsZero() {
		rt.Logger.Info("outbound guard on: upstreams on loopback, link-local, private and unspecified addresses are refused (allow some with UPSTREAM_ALLOW or a connector's config.allow_hosts)")
	} else {
		rt.Logger.Info("outbound guard on, with exceptions", "UPSTREAM_ALLOW", allow.String())
	}
	opts := upstream.Options{IdleConnsPerHost: concurrency, Allow: allow}
	if rt.exportsSpans {
		opts.Wrap = func(next http.RoundTripper) http.RoundTripper {
			return otelhttp.NewTransport(next,
				otelhttp.WithTracerProvider(rt.Tracer),
				otelhttp.WithPropagators(propagation.NewCompositeTextMapPropagator()))
		}
	}
	return upstream.NewClient(opts), nil
}
