// Package stack runs the whole of pollgrid in one process for `make run`:
// an embedded NATS server with JetStream, an embedded Redis-protocol store
// (miniredis) unless REDIS_URL is set, the scheduler, two workers and the
// aggregator — the same service code the separate binaries run.
package stack

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/nats-io/nats-server/v2/server"
	"golang.org/x/sync/errgroup"

	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connectors/builtin"
	"github.com/pollgrid/pollgrid/pkg/connectors/demo"
	"github.com/pollgrid/pollgrid/pkg/service"
	"github.com/pollgrid/pollgrid/services/aggregator/aggregatord"
	"github.com/pollgrid/pollgrid/services/scheduler/schedulerd"
	"github.com/pollgrid/pollgrid/services/worker/workerd"
)

// Workers is how many worker services the stack runs.
const Workers = 2

// LoopbackAllow is the UPSTREAM_ALLOW the dev stack runs with unless one is set.
const LoopbackAllow = "127.0.0.0/8,::1"

// Run starts everything and blocks until ctx ends. lookup is the process
// environment; banner receives the "where to look" text.
func Run(ctx context.Context, lookup config.Env, banner io.Writer) error {
	natsPort, err := service.Int(lookup, "NATS_PORT", 4222, 1, 65535)
	if err != nil {
		return err
	}
	httpPort, err := service.Int(lookup, "HTTP_PORT", 8080, 1, 65535-Workers-1)
	if err != nil {
		return err
	}
	natsURL, _ := lookup("NATS_URL")
	if natsURL == "" {
		ns, stop, err := startNATS(natsPort)
		if err != nil {
			return err
		}
		defer stop()
		natsURL = ns.ClientURL()
	}
	redisURL, _ := lookup("REDIS_URL")
	if redisURL == "" {
		addr, stop, err := startRedis(ctx)
		if err != nil {
			return err
		}
		defer stop()
		redisURL = "redis://" + addr
	}

	// The dev stack polls upstreams on this machine too (a local mock, an
	// API under development): loopback is allowed, and the banner says so.
	// Production workers refuse it unless UPSTREAM_ALLOW says otherwise.
	upstreamAllow, _ := lookup("UPSTREAM_ALLOW")
	outbound := "UPSTREAM_ALLOW=" + upstreamAllow + " (from your environment)"
	if upstreamAllow == "" {
		upstreamAllow = LoopbackAllow
		outbound = "loopback allowed for local upstreams (UPSTREAM_ALLOW=" + LoopbackAllow + "); production workers refuse it unless told"
	}

	type role struct {
		svc  service.Service
		port int
		id   string
	}
	roles := []role{{aggregatord.Service, httpPort, ""}, {schedulerd.Service, httpPort + 1, ""}}
	for i := 1; i <= Workers; i++ {
		roles = append(roles, role{workerd.Service, httpPort + 1 + i, fmt.Sprintf("worker-%d", i)})
	}
	runtimes := make([]*service.Runtime, 0, len(roles))
	defer func() {
		for _, rt := range runtimes {
			rt.Close()
		}
	}()
	for _, r := range roles {
		env := overlay(lookup, map[string]string{
			"NATS_URL":       natsURL,
			"REDIS_URL":      redisURL,
			"HTTP_ADDR":      "127.0.0.1:" + strconv.Itoa(r.port),
			"WORKER_ID":      r.id,
			"UPSTREAM_ALLOW": upstreamAllow,
		})
		rt, err := service.Start(ctx, r.svc, env)
		if err != nil {
			return err
		}
		runtimes = append(runtimes, rt)
	}
	// What the runtimes applied, for the banner: checked as written.
	defs, _, _, err := config.LoadDefinitions(lookup, builtin.Registry())
	if err != nil || defs == nil {
		defs = &config.Definitions{}
	}
	fmt.Fprintf(banner, `
pollgrid is running: scheduler, %d workers and the aggregator in one process.
  connectors   %d configured, %d enabled
  NATS         %s   watch signals: nats sub 'signals.>' --server %s
%s  Redis        %s
  upstreams    %s
  status page  http://127.0.0.1:%d/
  operate      go run ./services/pollctl --server %s list   (status, trigger, pause, ...: docs/operate.md)
  dry-run      REDIS_URL=%s go run ./services/pollctl dry-run NAME   (one poll from here, nothing written)
  metrics      http://127.0.0.1:%d/metrics/connectors   (per connector, JSON)
  prometheus   http://127.0.0.1:%d/metrics (aggregator), :%d (scheduler), :%d..%d (workers)
  reload       kill -HUP %d    stop: Ctrl-C
`, Workers, len(defs.Connectors), defs.Enabled, natsURL, natsURL, demoLine(defs, natsURL), redisDesc(redisURL, lookup), outbound,
		httpPort, natsURL, redisURL, httpPort, httpPort, httpPort+1, httpPort+2, httpPort+1+Workers, os.Getpid())

	g, gctx := errgroup.WithContext(ctx)
	for i, r := range roles {
		rt := runtimes[i]
		g.Go(func() error { return r.svc.Run(gctx, rt) })
	}
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// demoLine is the banner's line for the first enabled demo connector, whose
// signals flow without internet: what changes, how often, and how to watch
// it. It is empty when there is none.
func demoLine(defs *config.Definitions, natsURL string) string {
	for _, d := range defs.Connectors {
		var c struct {
			Type    string `json:"type"`
			Enabled *bool  `json:"enabled"`
			Config  struct {
				ChangeEvery string `json:"change_every"`
			} `json:"config"`
		}
		_ = json.Unmarshal(d.Value, &c) // checked when it was loaded
		if c.Type != demo.TypeName || c.Enabled != nil && !*c.Enabled {
			continue
		}
		return fmt.Sprintf("  demo         one item changes every %s on signals.demo.%s, no internet needed: "+
			"go run ./services/pollctl --server %s tail 'signals.demo.>'\n",
			cmp.Or(c.Config.ChangeEvery, demo.DefaultChangeEvery), d.Name, natsURL)
	}
	return ""
}

func redisDesc(url string, lookup config.Env) string {
	if v, _ := lookup("REDIS_URL"); v != "" {
		return "REDIS_URL (external)"
	}
	return url + " (embedded miniredis: data is lost on exit; set REDIS_URL to keep it)"
}

// overlay returns lookup with some keys replaced (empty values unset them).
func overlay(lookup config.Env, over map[string]string) config.Env {
	return func(key string) (string, bool) {
		if v, ok := over[key]; ok {
			return v, v != ""
		}
		return lookup(key)
	}
}

func startNATS(port int) (*server.Server, func(), error) {
	dir, err := os.MkdirTemp("", "pollgrid-nats-*")
	if err != nil {
		return nil, nil, err
	}
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoSigs: true,
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("embedded NATS: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("embedded NATS did not start on 127.0.0.1:%d (is the port in use? set NATS_PORT, or NATS_URL to use a running server)", port)
	}
	return ns, func() { ns.Shutdown(); ns.WaitForShutdown(); os.RemoveAll(dir) }, nil
}

// startRedis runs miniredis with its TTLs advanced in real time (miniredis
// only moves time when told to).
func startRedis(ctx context.Context) (string, func(), error) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return "", nil, fmt.Errorf("embedded redis: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				m.SetTime(now)
				m.FastForward(now.Sub(last))
				last = now
			}
		}
	}()
	return m.Addr(), func() { cancel(); m.Close() }, nil
}
