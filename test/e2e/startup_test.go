package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/test/harness"
)

// A service binary started before NATS (compose, a Kubernetes rollout) has
// its HTTP port open while it waits: /healthz is 200, so a liveness probe
// leaves it alone, and /readyz is 503 saying what it waits for, without the
// password; once NATS is there it becomes ready, in the same process.
func TestServiceAnswersHealthzWhileWaitingForNATS(t *testing.T) {
	alerts, err := os.ReadFile(fixture)
	require.NoError(t, err)
	upstream := harness.NewUpstream(t, alerts)
	bin := harness.Build(t, "github.com/pollgrid/pollgrid/services/worker")
	redis := redistest.Start(t)
	natsPort := harness.Port(t, harness.FreeAddr(t)) // nothing listens there yet
	addr := harness.FreeAddr(t)
	base := "http://" + addr
	p := harness.StartProcess(t, bin, map[string]string{
		"NATS_URL":        fmt.Sprintf("nats://pollgrid:nats-s3cret@127.0.0.1:%d", natsPort),
		"REDIS_URL":       redis.URL(),
		"HTTP_ADDR":       addr,
		"CONNECTORS_FILE": harness.WriteFile(t, "connectors.json", connectorsJSON(upstream.URL, "noaa-startup")),
		"UPSTREAM_ALLOW":  harness.LoopbackAllow,
	})
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	require.Eventually(t, func() bool { code, _ := get("/healthz"); return code == http.StatusOK },
		10*time.Second, 20*time.Millisecond, "/healthz never answered while NATS was away:\n%s", p.Stderr)
	want := fmt.Sprintf("not ready: waiting for NATS at nats://pollgrid:[REDACTED]@127.0.0.1:%d: nothing accepts connections at NATS_URL", natsPort)
	require.Eventually(t, func() bool {
		code, body := get("/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, want) && strings.Contains(body, "connection refused")
	}, 10*time.Second, 20*time.Millisecond, "/readyz does not say what it waits for")
	code, body := get("/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.NotContains(t, body, "nats-s3cret")
	t.Logf("/readyz while NATS is away: %s", strings.TrimSpace(body))
	code, _ = get("/metrics")
	assert.Equal(t, http.StatusOK, code, "/metrics answers too")

	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: natsPort, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
		Users: []*server.User{{Username: "pollgrid", Password: "nats-s3cret"}},
	})
	require.NoError(t, err)
	go ns.Start()
	require.True(t, ns.ReadyForConnections(10*time.Second))
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })

	p.WaitHTTP(t, base+"/readyz", 30*time.Second)
	code, _ = get("/healthz")
	assert.Equal(t, http.StatusOK, code)
	assert.False(t, p.Exited(), "the same process, never restarted")
	assert.NotContains(t, p.Stderr.String(), "nats-s3cret")
}
