package e2e

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// metricLine reports whether a service's /metrics has a sample line that
// starts with series and ends with value.
func metricLine(t *testing.T, url, series, value string) bool {
	for _, line := range strings.Split(readMetrics(t, url), "\n") {
		if strings.HasPrefix(line, series+" ") && strings.TrimSpace(strings.TrimPrefix(line, series)) == value {
			return true
		}
	}
	return false
}

func TestSIGHUPReloadRejectsBrokenConfigAndAppliesValidOne(t *testing.T) {
	s := startStack(t)
	sigs := collect(t, s.nc)
	m := successesAtLeast(t, s, "noaa-az", 1)
	path := s.env["CONNECTORS_FILE"]

	// A broken file: every service keeps the running config.
	broken := strings.Replace(connectorsJSON(s.upstream.URL, "noaa-az", "noaa-b"), `"interval": "1s"`, `"interval": "5"`, 1)
	require.NoError(t, os.WriteFile(path, []byte(broken), 0o600))
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	for _, svc := range append([]string{s.scheduler.HTTP}, s.workers[0].HTTP, s.workers[1].HTTP) {
		require.Eventually(t, func() bool {
			return metricLine(t, svc, `pollgrid_config_reloads_total{result="rejected"}`, "1")
		}, 10*time.Second, 50*time.Millisecond, "%s did not count the rejected reload", svc)
	}
	m = successesAtLeast(t, s, "noaa-az", m.Successes+2)
	assert.True(t, metricLine(t, s.scheduler.HTTP, "pollgrid_scheduled_connectors", "1"))

	// A valid file with a new connector: it gets scheduled and signals.
	require.NoError(t, os.WriteFile(path, []byte(connectorsJSON(s.upstream.URL, "noaa-az", "noaa-b")), 0o600))
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	require.Eventually(t, func() bool {
		for _, msg := range sigs.all() {
			if msg.Subject == "signals.weather-noaa.noaa-b" {
				return true
			}
		}
		return false
	}, 30*time.Second, 50*time.Millisecond, "the added connector never signalled")
	assert.True(t, metricLine(t, s.scheduler.HTTP, `pollgrid_config_reloads_total{result="ok"}`, "1"))
	assert.True(t, metricLine(t, s.scheduler.HTTP, "pollgrid_scheduled_connectors", "2"))

	// Removing a connector stops its polls.
	require.NoError(t, os.WriteFile(path, []byte(connectorsJSON(s.upstream.URL, "noaa-b")), 0o600))
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	require.Eventually(t, func() bool {
		return metricLine(t, s.scheduler.HTTP, "pollgrid_scheduled_connectors", "1")
	}, 10*time.Second, 50*time.Millisecond)
}
