package e2e

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/test/harness"
)

// docs/deploy.md tells users to send HUP to every service: no service dies
// of one, at any stage. A HUP while a service still waits for NATS is kept
// and applied once it runs; the aggregator reloads too.
func TestSIGHUPAtEveryStage(t *testing.T) {
	redis := redistest.Start(t)
	natsPort := harness.Port(t, harness.FreeAddr(t))
	file := harness.WriteFile(t, "connectors.json", connectorsJSON("https://api.weather.gov", "noaa"))
	type proc struct {
		name string
		p    *harness.Process
		http string
	}
	var procs []proc
	for _, svc := range []string{"scheduler", "worker", "aggregator"} {
		addr := harness.FreeAddr(t)
		bin := harness.Build(t, "github.com/pollgrid/pollgrid/services/"+svc)
		procs = append(procs, proc{svc, harness.StartProcess(t, bin, map[string]string{
			"NATS_URL": "nats://127.0.0.1:" + strconv.Itoa(natsPort), "REDIS_URL": redis.URL(), "CONNECTORS_FILE": file,
			"HTTP_ADDR": addr, "LOG_LEVEL": "info",
		}), "http://" + addr})
	}

	// Start-up: nothing answers at NATS_URL yet.
	for _, s := range procs {
		require.Eventually(t, func() bool { return strings.Count(s.p.Stderr.String(), "waiting for NATS JetStream") >= 1 },
			30*time.Second, 50*time.Millisecond, "%s waits for NATS", s.name)
		require.NoError(t, s.p.Cmd.Process.Signal(syscall.SIGHUP))
	}
	for _, s := range procs {
		waits := strings.Count(s.p.Stderr.String(), "waiting for NATS JetStream")
		require.Eventually(t, func() bool { return strings.Count(s.p.Stderr.String(), "waiting for NATS JetStream") > waits },
			30*time.Second, 50*time.Millisecond, "%s goes on waiting after a HUP", s.name)
		require.False(t, s.p.Exited(), "%s died of a HUP while waiting for NATS", s.name)
	}

	// NATS arrives: every service starts and applies the HUP it kept.
	harness.StartNATSServerConfig(t, harness.NATSConfig{Port: natsPort})
	for _, s := range procs {
		s.p.WaitHTTP(t, s.http+"/readyz", 60*time.Second)
		require.Eventually(t, func() bool { return metricLine(t, s.http, `pollgrid_config_reloads_total{result="ok"}`, "1") },
			10*time.Second, 50*time.Millisecond, "%s applied the HUP received during start-up", s.name)
	}

	// Running: a HUP reloads, the aggregator included.
	for _, s := range procs {
		require.NoError(t, s.p.Cmd.Process.Signal(syscall.SIGHUP))
		require.Eventually(t, func() bool { return metricLine(t, s.http, `pollgrid_config_reloads_total{result="ok"}`, "2") },
			10*time.Second, 50*time.Millisecond, "%s reloads on HUP", s.name)
	}
	for _, s := range procs {
		assert.Equal(t, 0, s.p.Terminate(60*time.Second), "%s exits cleanly on SIGTERM after its HUPs", s.name)
	}
}
