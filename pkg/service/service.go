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
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connector"
)

// A Service is one of pollgrid's roles, as its binary runs it (Main), and
// the dev stack and tests run it in process (Start, then Run). Each lives in
// services/<name>/<name>d: its options from the environment, the parts it
// composes, its admin verbs and HTTP endpoints.
type Service struct {
	// Name is scheduler, worker or aggregator.
	Name string
	// DefaultHTTP is the HTTP_ADDR used when none is set.
	DefaultHTTP string
	// Connectors are the connector types the process knows: the config is
	// validated against them, at start, on reload and by -check-config.
	Connectors *connector.Registry
	// Run runs the service on a started runtime until ctx ends; it ends
	// with rt.Run.
	Run func(ctx context.Context, rt *Runtime) error
	// FollowsCatalog: the service keeps the catalog in an index
	// (Runtime.Index) from Start on.
	FollowsCatalog bool
}

// Parts are what a service runs on its runtime (Runtime.Run).
type Parts struct {
	// Loop is the service's main loop; it returns when ctx ends.
	Loop func(ctx context.Context) error
	// Verbs are the admin verbs the service answers; reload is added to
	// every service's.
	Verbs map[string]admin.Handler
	// Replica names this process in admin replies; default
	// telemetry.InstanceID().
	Replica string
	// Handler, if any, is served under / next to /healthz, /readyz and
	// /metrics.
	Handler http.Handler
}

// Run runs a service's parts until ctx ends: its admin verbs, its HTTP
// handler and its loop, the connectors file Start read applied to the
// catalog meanwhile, then its reloads. The first of the loop, the HTTP
// servers and that apply to fail stops the rest. A NATS connection that
// closes for good (it reconnects through restarts, outages and rejected
// credentials, so only a fault of the client ends it) stops the service
// too, with the cause, so that the process exits and is restarted rather
// than idling unconnected.
func (rt *Runtime) Run(ctx context.Context, p Parts) error {
	stopAdmin, err := rt.serveAdmin(ctx, p.Replica, p.Verbs)
	if err != nil {
		if rt.NATS.IsClosed() {
			// Closed for good as the service started: say why, once the
			// client's closed handler has recorded it.
			select {
			case <-rt.natsClosed:
				return rt.natsClosedErr()
			case <-time.After(time.Second):
			}
		}
		return err
	}
	defer stopAdmin()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return rt.serve(ctx, p.Handler) })
	g.Go(func() error { return p.Loop(ctx) })
	g.Go(func() error {
		// The loop runs while the file is written: a scheduler keeps the
		// schedules of the first definitions while the rest are written.
		// A HUP waits for this apply (WithReloadSignal keeps it).
		if err := rt.applyStartFile(ctx); err != nil {
			return err
		}
		rt.WatchReload(ctx)
		return nil
	})
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
		return CheckConfig(lookup, svc.Connectors, stdout, stderr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// SIGHUP is caught from here to exit: while the service waits for NATS
	// at start-up it is kept and applied once the service runs; while it
	// shuts down it is ignored. Uncaught, a HUP would end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	rt, err := Start(ctx, svc, lookup, WithReloadSignal(hup))
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

// CheckConfig checks the connectors file the way a service applies it at
// start (as written: its ${VAR} are a worker's to resolve), with the
// connector types of connectors, and reports.
func CheckConfig(lookup config.Env, connectors *connector.Registry, stdout, stderr io.Writer) int {
	defs, _, source, err := config.LoadDefinitions(lookup, connectors)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if defs == nil {
		fmt.Fprintf(stdout, "nothing to check: %s\n", source)
		return 0
	}
	fmt.Fprintf(stdout, "%s: ok, %d connectors (%d enabled)\n", source, len(defs.Connectors), defs.Enabled)
	for _, w := range defs.Warnings {
		fmt.Fprintf(stdout, "  warning: %s\n", w)
	}
	return 0
}
