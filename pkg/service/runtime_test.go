package service

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/catalog"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connectors/builtin"
	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/pkg/testport"
)

// testService is a service with no loop of its own: these tests start its
// runtime and look at what Start did. Without HTTP_ADDR it opens no port.
var testService = Service{Name: "worker", Connectors: builtin.Registry()}

// natsWithPassword starts an embedded NATS with JetStream on port (-1 for
// a random one) that accepts the user pollgrid with password.
func natsWithPassword(t *testing.T, port int, storeDir, password string) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: storeDir, NoSigs: true, NoLog: true,
		Users: []*server.User{{Username: "pollgrid", Password: password}},
	})
	require.NoError(t, err)
	go ns.Start()
	require.True(t, ns.ReadyForConnections(10*time.Second))
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// logBuffer collects a runtime's JSON logs.
type logBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freeAddr(t *testing.T) string {
	port, err := testport.Free()
	require.NoError(t, err)
	return "127.0.0.1:" + strconv.Itoa(port)
}

func testEnv(t *testing.T, natsURL, redisURL string) config.Env {
	path := filepath.Join(t.TempDir(), "connectors.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"connectors": [{"name": "quakes", "type": "usgs-earthquakes", "config": {"feed": "significant_week"}}]}`), 0o600))
	return config.MapEnv(map[string]string{
		"NATS_URL": natsURL, "REDIS_URL": redisURL, "CONNECTORS_FILE": path, "HTTP_ADDR": freeAddr(t), "LOG_LEVEL": "debug",
	})
}

// serve runs rt's HTTP endpoints until the test ends.
func serve(t *testing.T, rt *Runtime) string {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = rt.serve(ctx, nil); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	base := "http://" + rt.Env.HTTPAddr
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	}, 5*time.Second, 10*time.Millisecond)
	return base
}

func fetch(t *testing.T, url string) (int, string) {
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// running runs rt with a loop that only waits, until the test ends, and
// returns its HTTP base URL once the connectors file is applied.
func running(t *testing.T, rt *Runtime) string {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx, Parts{Loop: func(ctx context.Context) error { <-ctx.Done(); return nil }}) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-rt.Applied():
	case err := <-done:
		t.Fatalf("the service stopped: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the connectors file was not applied")
	}
	return "http://" + rt.Env.HTTPAddr
}

// Start checks the file and connects; Run writes the file while the
// service's loop runs, and /readyz says so until it is written. A service
// that follows the catalog has the file in its index.
func TestRunAppliesTheStartFileWhileTheServiceRuns(t *testing.T) {
	ns := natsWithPassword(t, -1, t.TempDir(), "pw")
	redis := redistest.Start(t)
	env := testEnv(t, "nats://pollgrid:pw@"+ns.Addr().String(), redis.URL())
	file, _ := env("CONNECTORS_FILE")
	svc := testService
	svc.FollowsCatalog = true
	rt, err := Start(t.Context(), svc, env, WithLogOutput(io.Discard))
	require.NoError(t, err)
	defer rt.Close()
	require.NotNil(t, rt.Index, "a service that follows the catalog has an index")
	base := serve(t, rt)
	code, body := fetch(t, base+"/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body, "applying "+file+" (1 connector) to the connector catalog")
	_, err = rt.Catalog.Get(t.Context(), catalog.Connector("quakes"))
	require.ErrorIs(t, err, catalog.ErrNotFound, "Start wrote nothing")

	running(t, rt)
	require.Eventually(t, func() bool { _, ok := rt.Index.Connector("quakes"); return ok }, 10*time.Second, 10*time.Millisecond,
		"the index holds what Run wrote")
	code, body = fetch(t, base+"/readyz")
	assert.Equal(t, http.StatusOK, code, body)
	assert.Nil(t, rt.startFile, "the file's definitions are let go once written")

	other, err := Start(t.Context(), testService, testEnv(t, "nats://pollgrid:pw@"+ns.Addr().String(), redis.URL()), WithLogOutput(io.Discard))
	require.NoError(t, err)
	defer other.Close()
	assert.Nil(t, other.Index, "a worker keeps no index")
}

// A file that cannot be written stops the service with the reason, so that
// its process exits as a bad file's does.
func TestRunStopsWhenTheStartFileCannotBeWritten(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		NoSigs: true, NoLog: true, MaxPayload: 4096})
	require.NoError(t, err)
	go ns.Start()
	require.True(t, ns.ReadyForConnections(10*time.Second))
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	env := testEnv(t, ns.ClientURL(), redistest.Start(t).URL())
	file, _ := env("CONNECTORS_FILE")
	// One definition larger than a message nats-server takes.
	big := `{"connectors": [{"name": "quakes", "type": "usgs-earthquakes", "labels": {"note": "` + strings.Repeat("x", 5000) +
		`"}, "config": {"feed": "significant_week"}}]}`
	require.NoError(t, os.WriteFile(file, []byte(big), 0o600))
	rt, err := Start(t.Context(), testService, env, WithLogOutput(io.Discard))
	require.NoError(t, err, "the file passes its check")
	defer rt.Close()
	done := make(chan error, 1)
	go func() {
		done <- rt.Run(t.Context(), Parts{Loop: func(ctx context.Context) error { <-ctx.Done(); return nil }})
	}()
	select {
	case err := <-done:
		require.Error(t, err)
		assert.Contains(t, err.Error(), "apply "+file+" (1 connector) to the catalog")
		assert.Contains(t, err.Error(), "maximum payload exceeded")
	case <-time.After(10 * time.Second):
		t.Fatal("the service kept running without its connectors")
	}
	select {
	case <-rt.Applied():
		t.Fatal("a file that failed is not applied")
	default:
	}
}

func TestReadyzAnswersWithinItsDeadlineDuringARedisStall(t *testing.T) {
	ns := natsWithPassword(t, -1, t.TempDir(), "pw")
	redis := redistest.Start(t)
	rt, err := Start(t.Context(), testService, testEnv(t, "nats://pollgrid:pw@"+ns.Addr().String(), redis.URL()), WithLogOutput(io.Discard))
	require.NoError(t, err)
	defer rt.Close()
	base := running(t, rt)
	code, _ := fetch(t, base+"/readyz")
	require.Equal(t, http.StatusOK, code)

	redis.Freeze()
	defer redis.Thaw()
	start := time.Now()
	code, body := fetch(t, base+"/readyz")
	elapsed := time.Since(start)
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body, "redis does not answer within 1s")
	assert.Less(t, elapsed, 3*time.Second, "the 1 s check ended at its deadline, not the client's 5 s timeout")
	code, _ = fetch(t, base+"/healthz")
	assert.Equal(t, http.StatusOK, code, "a Redis stall is not a reason to restart the process")
}

func TestNATSWrongPasswordIsNamed(t *testing.T) {
	ns := natsWithPassword(t, -1, t.TempDir(), "right-password")
	logs := &logBuffer{}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := Start(ctx, testService, testEnv(t, "nats://pollgrid:wrong-password@"+ns.Addr().String(), "redis://127.0.0.1:1/0"), WithLogOutput(logs))
		done <- err
	}()
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "waiting for NATS JetStream") },
		15*time.Second, 20*time.Millisecond, "the service says it waits for NATS")
	cancel()
	err := <-done
	require.Error(t, err)
	for _, text := range []string{err.Error(), logs.String()} {
		assert.Contains(t, text, "NATS refused our credentials: check the user and password in NATS_URL")
		assert.Contains(t, strings.ToLower(text), "authorization violation")
		assert.NotContains(t, text, "connection closed")
		assert.NotContains(t, text, "wrong-password")
	}
}

func TestNATSReconnectsWhenTheRightPasswordIsBack(t *testing.T) {
	store := t.TempDir()
	first := natsWithPassword(t, -1, store, "pw1")
	port := first.Addr().(*net.TCPAddr).Port
	redis := redistest.Start(t)
	logs := &logBuffer{}
	rt, err := Start(t.Context(), testService, testEnv(t, fmt.Sprintf("nats://pollgrid:pw1@127.0.0.1:%d", port), redis.URL()), WithLogOutput(logs))
	require.NoError(t, err)
	defer rt.Close()
	base := running(t, rt)

	// NATS comes back with another password: the service keeps trying, says
	// why it is not ready, and stays alive (nothing to restart).
	first.Shutdown()
	first.WaitForShutdown()
	other := natsWithPassword(t, port, store, "pw2")
	require.Eventually(t, func() bool {
		code, body := fetch(t, base+"/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "NATS refused our credentials")
	}, 15*time.Second, 50*time.Millisecond, "readyz names the rejected credentials")
	code, _ := fetch(t, base+"/healthz")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, logs.String(), "NATS refused our credentials", "the logs say why too")

	// Then with the right one again: connected, ready.
	other.Shutdown()
	other.WaitForShutdown()
	natsWithPassword(t, port, store, "pw1")
	require.Eventually(t, func() bool { code, _ := fetch(t, base+"/readyz"); return code == http.StatusOK },
		20*time.Second, 50*time.Millisecond, "the service reconnected once the password was right again")
	assert.NotContains(t, logs.String(), "pw1")
	assert.NotContains(t, logs.String(), "pw2")
}

func TestClosedNATSConnectionFailsHealthzAndStopsTheService(t *testing.T) {
	ns := natsWithPassword(t, -1, t.TempDir(), "pw")
	redis := redistest.Start(t)
	rt, err := Start(t.Context(), testService, testEnv(t, "nats://pollgrid:pw@"+ns.Addr().String(), redis.URL()), WithLogOutput(io.Discard))
	require.NoError(t, err)
	defer rt.Close()
	base := serve(t, rt)
	code, _ := fetch(t, base+"/healthz")
	require.Equal(t, http.StatusOK, code)

	// A service running on it (its admin verbs subscribed, its loop
	// running) stops, with the cause, so that its process exits.
	done := make(chan error, 1)
	go func() {
		done <- rt.Run(t.Context(), Parts{Loop: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }})
	}()
	require.Eventually(t, func() bool { return rt.NATS.NumSubscriptions() > 0 }, 10*time.Second, 10*time.Millisecond,
		"the service subscribed")

	rt.NATS.Close() // a fault of the client: nothing will reopen it
	code, body := fetch(t, base+"/healthz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body, "NATS connection closed for good")
	assert.Contains(t, body, "restart the process")
	select {
	case err := <-done:
		require.Error(t, err)
		assert.Contains(t, err.Error(), "NATS connection closed for good")
	case <-time.After(10 * time.Second):
		t.Fatal("the service kept running with a closed NATS connection")
	}
}

// While a service waits for NATS at start-up its endpoints already answer:
// alive, not ready, and why; once NATS is there, ready.
func TestHealthzAnswersWhileWaitingForNATS(t *testing.T) {
	port, err := testport.Free()
	require.NoError(t, err)
	redis := redistest.Start(t)
	env := testEnv(t, fmt.Sprintf("nats://pollgrid:secret-pw@127.0.0.1:%d", port), redis.URL())
	addr, _ := env("HTTP_ADDR")
	base := "http://" + addr
	started := make(chan *Runtime, 1)
	go func() {
		rt, err := Start(t.Context(), testService, env, WithLogOutput(io.Discard))
		assert.NoError(t, err)
		started <- rt
	}()
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 5*time.Second, 10*time.Millisecond, "/healthz answers while NATS is away")
	require.Eventually(t, func() bool {
		code, body := fetch(t, base+"/readyz")
		return code == http.StatusServiceUnavailable &&
			strings.Contains(body, fmt.Sprintf("waiting for NATS at nats://pollgrid:[REDACTED]@127.0.0.1:%d: nothing accepts connections", port)) &&
			strings.Contains(body, "connection refused")
	}, 10*time.Second, 20*time.Millisecond, "/readyz says what it waits for")
	code, body := fetch(t, base+"/readyz")
	assert.NotContains(t, body, "secret-pw")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	code, _ = fetch(t, base+"/metrics")
	assert.Equal(t, http.StatusOK, code)

	natsWithPassword(t, port, t.TempDir(), "secret-pw")
	var rt *Runtime
	select {
	case rt = <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("Start did not return once NATS was there")
	}
	require.NotNil(t, rt)
	defer rt.Close()
	code, body = fetch(t, base+"/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body, "to the connector catalog", "connected: the file is applied next, by Run")
	running(t, rt)
	code, body = fetch(t, base+"/readyz")
	assert.Equal(t, http.StatusOK, code, body)
}
