package e2e

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/bus"
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

// metricSum adds up the value of one series (name and labels exactly as
// exposed) over several services' /metrics.
func metricSum(t *testing.T, series string, urls ...string) float64 {
	var sum float64
	for _, url := range urls {
		for _, line := range strings.Split(readMetrics(t, url), "\n") {
			if v, ok := strings.CutPrefix(line, series+" "); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				require.NoError(t, err, "series %s: %q", series, line)
				sum += f
			}
		}
	}
	return sum
}

func TestSIGHUPReloadRejectsBrokenConfigAndAppliesValidOne(t *testing.T) {
	s := startStack(t)
	sigs := s.signals
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
		for _, msg := range sigs.All() {
			if msg.Subject == "signals.weather-noaa.noaa-b" {
				return true
			}
		}
		return false
	}, 30*time.Second, 50*time.Millisecond, "the added connector never signalled")
	assert.True(t, metricLine(t, s.scheduler.HTTP, `pollgrid_config_reloads_total{result="ok"}`, "1"))
	assert.True(t, metricLine(t, s.scheduler.HTTP, "pollgrid_scheduled_connectors", "2"))

	// Removing a connector stops its polls: its schedule and any pending
	// tick are gone from TICKS.
	require.NoError(t, os.WriteFile(path, []byte(connectorsJSON(s.upstream.URL, "noaa-b")), 0o600))
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	require.Eventually(t, func() bool {
		return metricLine(t, s.scheduler.HTTP, "pollgrid_scheduled_connectors", "1")
	}, 10*time.Second, 50*time.Millisecond)
	ticks, err := s.js.Stream(context.Background(), bus.TicksStream)
	require.NoError(t, err)
	for _, subject := range []string{bus.ScheduleSubject("weather-noaa", "noaa-az"), bus.TickSubject("weather-noaa", "noaa-az")} {
		_, err = ticks.GetLastMsgForSubject(context.Background(), subject)
		assert.ErrorIs(t, err, jetstream.ErrMsgNotFound, "%s is gone", subject)
	}
	_, err = ticks.GetLastMsgForSubject(context.Background(), bus.ScheduleSubject("weather-noaa", "noaa-b"))
	assert.NoError(t, err, "the remaining connector keeps its schedule")
}
