// Package service is what the scheduler, worker and aggregator processes (and
// the one-process dev stack) share: reading the shared environment,
// connecting to NATS, Redis and the connector catalog, applying the
// connectors file to the catalog (at start, on SIGHUP and on the admin
// reload verb), logs, traces, metrics, the HTTP endpoints and graceful
// shutdown. Each service's own wiring is in services/<name>/<name>d: a
// Service whose Run reads its options, builds its engine and hands its
// Parts to Runtime.Run.
package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/catalog"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/natsconn"
	"github.com/pollgrid/pollgrid/pkg/redact"
	"github.com/pollgrid/pollgrid/pkg/store"
	"github.com/pollgrid/pollgrid/pkg/telemetry"
)

// Runtime is one running service's shared plumbing.
type Runtime struct {
	Name     string
	Env      Env
	Lookup   config.Env
	Logger   *slog.Logger
	Redactor *redact.Redactor
	Metrics  *prometheus.Registry
	Tracer   *sdktrace.TracerProvider
	NATS     *nats.Conn
	JS       jetstream.JetStream
	Redis    redis.UniversalClient
	Store    *store.Store
	// Catalog holds the connector definitions (NATS KV): the scheduler
	// and the aggregator follow it (Index), a worker reads a definition
	// per poll.
	Catalog *catalog.Catalog
	// Index is the catalog as a service that follows it holds it
	// (Service.FollowsCatalog), followed from Start until Close; nil in
	// the others.
	Index      *catalog.Index
	Connectors *connector.Registry

	// startFile is the connectors file Start read and checked, which Run
	// applies; nil without one. applied is closed once it is (at Start
	// without one).
	startFile *startFile
	applied   chan struct{}
	// fileSource names the file, for /readyz while it is applied.
	fileSource string
	// stopFollowing ends the index's watch (Close).
	stopFollowing context.CancelFunc
	following     sync.WaitGroup

	reloads *prometheus.CounterVec
	// natsDial is how the service reaches NATS, and explains its refusals.
	natsDial *natsconn.Dialer
	// connSecrets are the passwords and tokens of the NATS and Redis
	// connections, for the redactor.
	connSecrets []string
	// hup delivers SIGHUP when the process registered it before Start
	// (WithReloadSignal), so that no stage of the process dies of one.
	hup <-chan os.Signal
	// natsClosed is closed when the NATS connection closes for good while
	// the service runs: nothing reopens it, so the service stops and
	// /healthz fails. closing is set once Close begins, when the close is ours.
	natsClosed  chan struct{}
	closedCause atomic.Pointer[error]
	closing     atomic.Bool
	// exportsSpans is true when spans leave the process (an exporter or a
	// test's processor): only then are upstream requests traced.
	exportsSpans bool

	// waiting is what Start still waits for, nil once it is connected:
	// /readyz says it. Until it is nil the HTTP handlers touch neither NATS
	// nor Redis (connect is still setting them).
	waiting atomic.Pointer[waitingFor]
	// natsAttemptErr is why the last attempt to (re)connect to NATS failed,
	// nil once connected: the client keeps no error of its own for that.
	natsAttemptErr atomic.Pointer[error]
	// servers are the HTTP servers, started before NATS and Redis are
	// connected so that /healthz answers from the first second; httpErr
	// gets their failures, extra the service's own handler (Serve).
	servers []*http.Server
	httpErr chan error
	extra   atomic.Pointer[http.Handler]
}

// ExportsSpans says whether spans leave the process (an exporter, or a
// test's span processor): a service traces its costlier calls only then.
func (rt *Runtime) ExportsSpans() bool { return rt.exportsSpans }

// startFile is a connectors file read and checked, to apply
// (Runtime.fileSource names it).
type startFile struct {
	defs  *config.Definitions
	whole bool
}

// Start checks the connectors file, if the environment names one
// (config.LoadDefinitions), connects everything svc needs and, when svc
// follows the catalog, begins following it (Index). A bad file is returned
// as *config.Problems, listing every problem, before anything is
// connected. Run applies the file to the catalog, while the service
// already runs.
func Start(ctx context.Context, svc Service, lookup config.Env, opts ...Option) (*Runtime, error) {
	if svc.Connectors == nil {
		return nil, fmt.Errorf("service %s: no connector types (Service.Connectors)", svc.Name)
	}
	env, err := ReadEnv(lookup, svc.DefaultHTTP)
	if err != nil {
		return nil, err
	}
	o := startOptions{logOutput: os.Stderr}
	for _, opt := range opts {
		opt(&o)
	}
	rt := &Runtime{
		Name:       svc.Name,
		Env:        env,
		Lookup:     lookup,
		Redactor:   redact.New(),
		Metrics:    prometheus.NewRegistry(),
		Connectors: svc.Connectors,
		hup:        o.hup,
		natsClosed: make(chan struct{}),
		applied:    make(chan struct{}),
	}
	rt.Logger = telemetry.NewLogger(o.logOutput, telemetry.ParseLevel(env.LogLevel), env.LogFormat, rt.Redactor, svc.Name)
	rt.Metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	rt.Metrics.MustRegister(BuildInfo(svc.Name))
	rt.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pollgrid_config_reloads_total", Help: "Config reloads on SIGHUP, by result (ok, rejected).",
	}, []string{"result"})
	rt.Metrics.MustRegister(rt.reloads)
	// Both series exist from the start, so increase() sees the first rejection.
	rt.reloads.WithLabelValues("ok")
	rt.reloads.WithLabelValues("rejected")

	// The file is checked before anything is connected: a bad one fails
	// the start at once, with every problem.
	defs, whole, source, err := config.LoadDefinitions(lookup, rt.Connectors)
	if err != nil {
		return nil, err
	}

	tracing := telemetry.TracingOptions{Lookup: lookup, Redactor: rt.Redactor, Processors: o.spanProcessors}
	rt.Tracer, err = telemetry.SetupTracing(ctx, "pollgrid-"+svc.Name, tracing)
	rt.exportsSpans = telemetry.Exporting(tracing)
	if err != nil {
		return nil, err
	}
	epochs := newEpochWatch(rt)
	// The HTTP endpoints open before anything is connected: a liveness
	// probe must not restart a process that waits for NATS, and /readyz
	// says what it waits for.
	rt.setWaiting(waitingFor{url: natsconn.RedactURL(env.NATSURL)})
	if err := rt.listen(); err != nil {
		rt.Close()
		return nil, err
	}
	if err := rt.connect(ctx); err != nil {
		rt.Close()
		return nil, err
	}
	if defs != nil {
		rt.startFile, rt.fileSource = &startFile{defs: defs, whole: whole}, source
	} else {
		close(rt.applied)
		rt.Logger.Info("connectors: " + source)
	}
	if svc.FollowsCatalog {
		rt.follow(ctx)
	}
	epochs.js, epochs.redis = rt.JS, rt.Store
	rt.waiting.Store(nil)
	go epochs.run(ctx)
	return rt, nil
}

// follow begins the index's watch of the catalog, which lasts until Close.
// The definitions of the connectors file, checked whole already, are
// expected (catalog.Index.Expect): the index takes them without a second
// check, the unchanged ones as its first read brings them, the others as
// Run writes them.
func (rt *Runtime) follow(ctx context.Context) {
	rt.Index = catalog.NewIndex(rt.Connectors, rt.Logger)
	if f := rt.startFile; f != nil {
		rt.Index.Expect(f.defs.Connectors, f.defs.Checked)
	}
	ctx, rt.stopFollowing = context.WithCancel(context.WithoutCancel(ctx))
	rt.following.Go(func() { rt.Catalog.Follow(ctx, rt.Index) })
}

// applyStartFile applies the connectors file Start read, if any: Run does,
// next to the service's loop, so that a scheduler keeps the schedules of
// the first definitions while the rest are written.
func (rt *Runtime) applyStartFile(ctx context.Context) error {
	if f := rt.startFile; f != nil {
		if _, err := rt.apply(ctx, f.defs, f.whole, rt.fileSource); err != nil {
			return err
		}
		rt.startFile = nil // a large file's definitions are not kept
		close(rt.applied)
	}
	return nil
}

// Applied is closed once the connectors file Start read is applied to the
// catalog (Run applies it), at once when there was none. Until then
// /readyz says the service is not ready.
func (rt *Runtime) Applied() <-chan struct{} { return rt.applied }

// Option tunes Start.
type Option func(*startOptions)

type startOptions struct {
	logOutput      io.Writer
	spanProcessors []sdktrace.SpanProcessor
	hup            <-chan os.Signal
}

// WithReloadSignal hands the runtime the channel SIGHUP arrives on, which
// the caller registered (signal.Notify) before anything else: a HUP sent
// while the service still waits for NATS at start-up, or while it shuts
// down, is then never fatal, and one received during start-up is applied
// once the service runs. Without it, WatchReload registers its own.
func WithReloadSignal(hup <-chan os.Signal) Option { return func(o *startOptions) { o.hup = hup } }

// WithLogOutput sends the JSON logs to w instead of standard error.
func WithLogOutput(w io.Writer) Option { return func(o *startOptions) { o.logOutput = w } }

// WithSpanProcessor adds p to the service's tracer provider, next to the
// OTLP exporter (if any): tests record spans in memory with it. p sees spans
// already redacted, as an exporter would.
func WithSpanProcessor(p sdktrace.SpanProcessor) Option {
	return func(o *startOptions) { o.spanProcessors = append(o.spanProcessors, p) }
}

// secrets are the passwords and tokens of the NATS and Redis connections,
// for the redactor (a worker adds the connectors' secrets as it resolves
// them).
func (rt *Runtime) secrets() []string {
	var s []string
	for _, raw := range []string{rt.Env.NATSURL, rt.Env.RedisURL} {
		if u, err := url.Parse(raw); err == nil && u.User != nil {
			if p, ok := u.User.Password(); ok && p != "" {
				s = append(s, p)
			}
		}
	}
	return append(s, rt.connSecrets...)
}

func (rt *Runtime) connect(ctx context.Context) error {
	rdb, redisSecrets, err := NewRedisClient(rt.Name, rt.Lookup, rt.Env.RedisURL)
	if err != nil {
		return err
	}
	rt.Redis = rdb
	rt.Store = store.New(rt.Redis, store.Options{Prefix: rt.Env.RedisPrefix})

	dial, err := natsDialer(rt.Lookup)
	if err != nil {
		return err
	}
	rt.natsDial = dial
	rt.connSecrets = append(redisSecrets, dial.Secrets()...)
	rt.Redactor.Set(rt.secrets())
	rt.Logger.Info("connecting", "nats", dial.Redacted(), "redis", describeRedis(rt.Env.RedisURL))

	log := rt.Logger
	waiting := waitingFor{url: dial.Redacted()}
	rt.setWaiting(waiting)
	opts := append(natsTimings(),
		nats.Name("pollgrid-"+rt.Name),
		nats.ConnectHandler(func(nc *nats.Conn) {
			rt.natsAttemptErr.Store(nil)
			log.Info("NATS connected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected; reconnecting", "error", dial.Explain(err))
			}
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			// Said once per cause, not once a second.
			if prev := rt.natsAttemptErr.Swap(&err); prev == nil || (*prev).Error() != err.Error() {
				log.Warn("NATS reconnect failed; retrying every second", "error", dial.Explain(err))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			rt.natsAttemptErr.Store(nil)
			log.Info("NATS reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Error("NATS error", "error", dial.Explain(err))
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			if rt.closing.Load() {
				return
			}
			cause := fmt.Errorf("NATS connection closed for good: %w", dial.Why(nc))
			rt.closedCause.Store(&cause)
			close(rt.natsClosed)
			log.Error("NATS connection closed and will not reopen; stopping the service so that it is restarted", "error", cause)
		}),
	)
	rt.NATS, err = dial.Connect(opts...)
	if err != nil {
		return fmt.Errorf("NATS at %s: %w", dial.Redacted(), rt.Redactor.Error(dial.Explain(err)))
	}
	if rt.JS, err = jetstream.New(rt.NATS); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	waiting.nc = rt.NATS
	rt.setWaiting(waiting)
	// NATS may still be starting (compose, a restart): keep trying to set
	// up the streams until it answers or we are told to stop, saying why
	// it does not answer (a wrong password is not "connection closed").
	for attempt := 1; ; attempt++ {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = bus.EnsureStreams(sctx, rt.JS, bus.StreamOptions{Replicas: rt.Env.StreamReplicas, DuplicateWindow: rt.Env.DuplicateWindow})
		if err == nil {
			rt.Catalog, err = catalog.Open(sctx, rt.JS, catalog.Options{Replicas: rt.Env.StreamReplicas})
		}
		cancel()
		if err == nil {
			return nil
		}
		if !rt.NATS.IsConnected() {
			err = rt.natsWhy(rt.NATS)
		} else {
			err = dial.Explain(err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("set up JetStream streams at %s: %w", dial.Redacted(), err)
		}
		waiting.err = err
		rt.setWaiting(waiting)
		log.Warn("waiting for NATS JetStream", "url", dial.Redacted(), "attempt", attempt, "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// NATSClosed is closed when the NATS connection has closed for good while
// the service runs (not by Close).
func (rt *Runtime) NATSClosed() <-chan struct{} { return rt.natsClosed }

// natsClosedErr is why the connection closed, once NATSClosed is.
func (rt *Runtime) natsClosedErr() error {
	if p := rt.closedCause.Load(); p != nil {
		return *p
	}
	return errors.New("NATS connection closed")
}

// natsWhy is why nc is not connected: the client's last error, or else
// why the last attempt to connect failed, or else its status.
func (rt *Runtime) natsWhy(nc *nats.Conn) error {
	if nc != nil && nc.LastError() == nil {
		if p := rt.natsAttemptErr.Load(); p != nil {
			return rt.natsDial.Explain(*p)
		}
	}
	return rt.natsDial.Why(nc)
}

// Close releases the connections, flushes traces and stops the HTTP
// endpoints, last, so that probes answer while the service drains.
func (rt *Runtime) Close() {
	rt.closing.Store(true)
	if rt.stopFollowing != nil {
		rt.stopFollowing()
		rt.following.Wait()
	}
	if rt.NATS != nil {
		_ = rt.NATS.Drain()
	}
	if rt.Redis != nil {
		_ = rt.Redis.Close()
	}
	if rt.Tracer != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = rt.Tracer.Shutdown(ctx)
		cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range rt.servers {
		_ = srv.Shutdown(ctx)
	}
}

// WatchReload applies the connectors file again on SIGHUP until ctx ends.
// A file with a problem is rejected whole and the catalog stays as it was.
func (rt *Runtime) WatchReload(ctx context.Context) {
	hup := rt.hup
	if hup == nil {
		own := make(chan os.Signal, 1)
		signal.Notify(own, syscall.SIGHUP)
		hup = own
		context.AfterFunc(ctx, func() { signal.Stop(own) })
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_, _ = rt.Reload(ctx)
			}
		}
	}()
}

// Reload reads the connectors file again and applies it to the catalog
// (what SIGHUP does); defs is nil when the environment names no file.
func (rt *Runtime) Reload(ctx context.Context) (*config.Definitions, error) {
	defs, whole, source, err := config.LoadDefinitions(rt.Lookup, rt.Connectors)
	if err == nil && defs != nil {
		_, err = rt.apply(ctx, defs, whole, source)
	}
	if err != nil {
		rt.reloads.WithLabelValues("rejected").Inc()
		rt.Logger.Error("config reload rejected; the catalog stays as it was", "error", err)
		return nil, err
	}
	rt.reloads.WithLabelValues("ok").Inc()
	if defs == nil {
		rt.Logger.Info("config reload: no connectors file to apply; the catalog stays as it is", "source", source)
	}
	return defs, nil
}

// apply writes defs to the catalog, removing what they do not hold when
// they are a whole file. Processes started with the same file apply it at
// once: a write that finds its definition changed meanwhile is planned
// again, a few times.
func (rt *Runtime) apply(ctx context.Context, defs *config.Definitions, whole bool, source string) (catalog.Diff, error) {
	for _, w := range defs.Warnings {
		rt.Logger.Warn("config: "+w.Message, "path", w.Path)
	}
	for attempt := 1; ; attempt++ {
		diff, err := rt.Catalog.Apply(ctx, defs, catalog.ApplyOptions{Prune: whole})
		if errors.Is(err, catalog.ErrConflict) && attempt < 5 {
			continue
		}
		if err != nil {
			return diff, fmt.Errorf("apply %s to the catalog: %w", source, err)
		}
		rt.Logger.Info("connectors applied to the catalog", "source", source, "connectors", len(defs.Connectors), "enabled", defs.Enabled,
			"created", len(diff.Created), "changed", len(diff.Changed), "deleted", len(diff.Deleted), "unchanged", diff.Unchanged)
		return diff, nil
	}
}
