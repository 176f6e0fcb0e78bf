// Package harness starts the real parts of pollgrid for integration and
// end-to-end tests: an embedded NATS server with JetStream, a real
// redis-server (pkg/redistest), upstreams replaying recorded files, and the
// services themselves, in process, through the same code the binaries run.
package harness

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/service"
	"github.com/pollgrid/pollgrid/pkg/testport"
)

// NATS starts an embedded NATS server with JetStream on a random port.
func NATS(t testing.TB) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
	})
	require.NoError(t, err)
	go ns.Start()
	require.True(t, ns.ReadyForConnections(10*time.Second), "embedded NATS did not start")
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// Connect returns a client connection and its JetStream context.
func Connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return nc, js
}

// FreeAddr returns a loopback address with a port nobody listens on now and
// that no other part of this test process was given.
func FreeAddr(t testing.TB) string {
	t.Helper()
	port, err := testport.Free()
	require.NoError(t, err)
	return "127.0.0.1:" + strconv.Itoa(port)
}

// WriteFile writes content into a new file in a test temp dir.
func WriteFile(t testing.TB, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

// Service is one service running in this process.
type Service struct {
	Runtime *service.Runtime
	// HTTP is the base URL of its /healthz, /readyz, /metrics.
	HTTP   string
	cancel context.CancelFunc
	done   chan error
}

// LoopbackAllow is the UPSTREAM_ALLOW the harness gives workers: the
// upstreams of tests are httptest servers on loopback, which the outbound
// guard refuses unless told.
const LoopbackAllow = "127.0.0.0/8,::1"

// Start starts svc with env (nothing is read from the real environment),
// returns once its connectors file (if any) is applied, and stops it at the
// end of the test. HTTP_ADDR defaults to a free port and
// UPSTREAM_ALLOW to LoopbackAllow (set it to "" to test the outbound guard).
func Start(t testing.TB, svc service.Service, env map[string]string, opts ...service.Option) *Service {
	t.Helper()
	if env["HTTP_ADDR"] == "" {
		env["HTTP_ADDR"] = FreeAddr(t)
	}
	if _, set := env["UPSTREAM_ALLOW"]; !set {
		env["UPSTREAM_ALLOW"] = LoopbackAllow
	}
	ctx, cancel := context.WithCancel(context.Background())
	rt, err := service.Start(ctx, svc, config.MapEnv(env), opts...)
	if err != nil {
		cancel()
		require.NoError(t, err, "start %s", svc.Name)
	}
	s := &Service{Runtime: rt, HTTP: "http://" + env["HTTP_ADDR"], cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- svc.Run(ctx, rt) }()
	t.Cleanup(func() { _ = s.Stop() })
	require.Eventually(t, func() bool {
		resp, err := http.Get(s.HTTP + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 10*time.Millisecond, "%s never answered /healthz", svc.Name)
	// Run applies the connectors file (if any) next to the service's loop:
	// a test starts from the catalog holding it.
	select {
	case <-rt.Applied():
	case err := <-s.done:
		s.done <- err // for Stop
		require.NoError(t, err, "%s stopped before applying its connectors file", svc.Name)
	case <-time.After(time.Minute):
		t.Fatalf("%s did not apply its connectors file within a minute", svc.Name)
	}
	return s
}

// Stop cancels the service, waits for it to return and closes its runtime
// (as SIGTERM would). It returns the service's error; calling it twice is fine.
func (s *Service) Stop() error {
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	s.cancel = nil
	var err error
	select {
	case err = <-s.done:
	case <-time.After(30 * time.Second):
		err = context.DeadlineExceeded
	}
	s.Runtime.Close()
	return err
}

// Port returns the port of a host:port address.
func Port(t testing.TB, addr string) int {
	_, p, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	n, err := strconv.Atoi(p)
	require.NoError(t, err)
	return n
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers (log output).
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
