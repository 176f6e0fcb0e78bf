package e2e

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/service"
	"github.com/pollgrid/pollgrid/test/harness"
)

// Two scheduler replicas: exactly one publishes ticks; when it stops, the
// other takes over and the connector keeps being polled.
func TestTwoSchedulersDoNotDoublePolls(t *testing.T) {
	s := startStack(t)
	second := harness.Start(t, service.Scheduler, s.envWith(map[string]string{"SCHEDULER_ID": "second"}))
	m := successesAtLeast(t, s, "noaa-az", 3)

	first := s.scheduler
	leaders := 0
	var leader, standby *harness.Service
	for _, sch := range []*harness.Service{first, second} {
		if metricLine(t, sch.HTTP, "pollgrid_scheduler_leader", "1") {
			leaders++
			leader = sch
		} else {
			standby = sch
		}
	}
	require.Equal(t, 1, leaders, "exactly one scheduler leads")
	assert.False(t, metricLine(t, standby.HTTP, `pollgrid_ticks_published_total{type="weather-noaa"}`, "1"),
		"the standby published no tick")
	assert.NotContains(t, readMetrics(t, standby.HTTP), `pollgrid_ticks_published_total{type="weather-noaa"}`)

	require.NoError(t, leader.Stop())
	require.Eventually(t, func() bool {
		return metricLine(t, standby.HTTP, "pollgrid_scheduler_leader", "1")
	}, 15*time.Second, 50*time.Millisecond, "the standby never took over")
	successesAtLeast(t, s, "noaa-az", m.Successes+3)
}
