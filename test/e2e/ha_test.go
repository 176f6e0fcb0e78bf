package e2e

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/services/scheduler/schedulerd"
	"github.com/pollgrid/pollgrid/test/harness"
)

// Two scheduler replicas: exactly one keeps the schedules; the other
// changes nothing. NATS fires the ticks, so polls go on while no scheduler
// runs at all, and a standby takes over the schedules when the leader stops.
func TestTwoSchedulersDoNotDoublePolls(t *testing.T) {
	s := startStack(t)
	second := harness.Start(t, schedulerd.Service, s.envWith(map[string]string{"SCHEDULER_ID": "second"}))
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
	assert.True(t, metricLine(t, standby.HTTP, `pollgrid_schedule_changes_total{op="install"}`, "0"), "the standby installed nothing")
	assert.True(t, metricLine(t, standby.HTTP, "pollgrid_first_ticks_total", "0"), "the standby sent no tick")

	require.NoError(t, standby.Stop())
	require.NoError(t, leader.Stop())
	m = successesAtLeast(t, s, "noaa-az", m.Successes+3) // no scheduler runs: NATS fires the ticks

	again := harness.Start(t, schedulerd.Service, s.envWith(map[string]string{"SCHEDULER_ID": "again"}))
	require.Eventually(t, func() bool {
		return metricLine(t, again.HTTP, "pollgrid_scheduler_leader", "1") &&
			metricLine(t, again.HTTP, "pollgrid_scheduled_connectors", "1")
	}, 15*time.Second, 50*time.Millisecond, "a new scheduler never took over")
	assert.True(t, metricLine(t, again.HTTP, `pollgrid_schedule_changes_total{op="install"}`, "0"),
		"the schedule was in place: nothing to install")
	successesAtLeast(t, s, "noaa-az", m.Successes+3)
}
