package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The HTTP endpoints every service serves on HTTP_ADDR: /healthz, /readyz,
// /metrics and the service's own. They open before the service connects to
// NATS and Redis, so that a liveness probe never restarts a process that
// only waits, and /readyz says what it waits for.

// waitingFor is what start-up waits for.
type waitingFor struct {
	// url is NATS_URL with its password masked.
	url string
	// nc is the client, once it exists.
	nc *nats.Conn
	// err is why setting up the streams failed last, while connected.
	err error
}

// setWaiting publishes a copy of w: the handlers read it while connect
// goes on.
func (rt *Runtime) setWaiting(w waitingFor) { rt.waiting.Store(&w) }

// reason is why start-up is not done, for /readyz.
func (w *waitingFor) reason(rt *Runtime) error {
	if w.nc == nil || !w.nc.IsConnected() {
		cause := errors.New("connecting")
		if w.nc != nil {
			cause = rt.natsWhy(w.nc)
		}
		return fmt.Errorf("waiting for NATS at %s: %w", w.url, cause)
	}
	if w.err != nil {
		return fmt.Errorf("waiting for NATS JetStream at %s: %w", w.url, w.err)
	}
	return fmt.Errorf("waiting for NATS JetStream at %s: setting up the streams", w.url)
}

// readyTimeout bounds /readyz's Redis check: the client honours it even
// while Redis stalls.
const readyTimeout = time.Second

// Ready reports whether start-up is done (the connectors file applied),
// NATS is connected and Redis answers, and if not why.
func (rt *Runtime) Ready(ctx context.Context) error {
	if w := rt.waiting.Load(); w != nil {
		return w.reason(rt)
	}
	if rt.NATS == nil || !rt.NATS.IsConnected() {
		return fmt.Errorf("NATS is not connected: %w", rt.natsWhy(rt.NATS))
	}
	select {
	case <-rt.applied:
	default:
		return fmt.Errorf("applying %s to the connector catalog", rt.fileSource)
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := rt.Redis.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis does not answer within %s: %w", readyTimeout, err)
	}
	return nil
}

// Healthy reports whether the process can still do its work: not once its
// NATS connection has closed for good (a restart is the only cure).
func (rt *Runtime) Healthy() error {
	select {
	case <-rt.natsClosed:
		return rt.natsClosedErr()
	default:
		return nil
	}
}

// listen opens the HTTP endpoints (Start calls it before connecting):
// /healthz, /readyz, /metrics, the service's own handler under / once Serve
// gives it, and the profiler on PPROF_ADDR if set.
func (rt *Runtime) listen() error {
	type endpoint struct {
		setting, addr string
		handler       http.Handler
	}
	endpoints := []endpoint{{"HTTP_ADDR", rt.Env.HTTPAddr, rt.mux()}}
	if rt.Env.PProfAddr != "" {
		// The profiler has its own listener, off by default: it is for
		// operators on the host, never for what scrapes /metrics.
		endpoints = append(endpoints, endpoint{"PPROF_ADDR", rt.Env.PProfAddr, pprofMux()})
	}
	rt.httpErr = make(chan error, len(endpoints))
	for _, e := range endpoints {
		addr := e.addr
		if addr == "" {
			addr = ":http" // what http.Server listens on without an address
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s %s: %w", e.setting, e.addr, err)
		}
		srv := &http.Server{Addr: addr, Handler: e.handler, ReadHeaderTimeout: 5 * time.Second}
		rt.servers = append(rt.servers, srv)
		go func() {
			if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				rt.httpErr <- fmt.Errorf("%s %s: %w", e.setting, e.addr, err)
			}
		}()
		rt.Logger.Info("http listening", "addr", l.Addr().String(), "for", e.setting)
	}
	return nil
}

func (rt *Runtime) mux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := rt.Healthy(); err != nil {
			http.Error(w, "unhealthy: "+rt.Redactor.String(err.Error())+" (restart the process)", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := rt.Ready(r.Context()); err != nil {
			http.Error(w, "not ready: "+rt.Redactor.String(err.Error()), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(rt.Metrics, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if h := rt.extra.Load(); h != nil {
			(*h).ServeHTTP(w, r)
			return
		}
		if waiting := rt.waiting.Load(); waiting != nil {
			http.Error(w, "not ready: "+rt.Redactor.String(waiting.reason(rt).Error()), http.StatusServiceUnavailable)
			return
		}
		http.NotFound(w, r)
	})
	return mux
}

// serve adds extra (nil for none) under / to the HTTP endpoints Start
// opened, and returns when ctx ends or a server fails. The endpoints stay
// open until Close, so probes answer while the service drains.
func (rt *Runtime) serve(ctx context.Context, extra http.Handler) error {
	if extra != nil {
		rt.extra.Store(&extra)
	}
	select {
	case err := <-rt.httpErr:
		return err
	case <-ctx.Done():
		return nil
	}
}

func pprofMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
