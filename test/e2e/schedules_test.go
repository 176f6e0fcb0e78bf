package e2e

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/pkg/scheduler"
	"github.com/pollgrid/pollgrid/services/scheduler/schedulerd"
	"github.com/pollgrid/pollgrid/test/harness"
)

// A TICKS stream made by an earlier pollgrid (discard-new coalescing, no
// schedules) is brought to the schedule settings in place.
func TestOldTicksStreamIsUpgraded(t *testing.T) {
	ns := harness.NATS(t)
	_, js := harness.Connect(t, ns.ClientURL())
	ctx := context.Background()
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: bus.TicksStream, Subjects: []string{bus.TickPrefix + ".>"}, Retention: jetstream.WorkQueuePolicy,
		MaxMsgsPerSubject: 1, Discard: jetstream.DiscardNew, DiscardNewPerSubject: true, Storage: jetstream.FileStorage,
	})
	require.NoError(t, err)

	require.NoError(t, bus.EnsureStreams(ctx, js, bus.StreamOptions{}))

	st, err := js.Stream(ctx, bus.TicksStream)
	require.NoError(t, err)
	cfg := st.CachedInfo().Config
	assert.True(t, cfg.AllowMsgSchedules)
	assert.Equal(t, jetstream.DiscardOld, cfg.Discard)
	assert.ElementsMatch(t, []string{bus.TickPrefix + ".>", bus.SchedulePrefix + ".>"}, cfg.Subjects)
}

// The scheduler installs one schedule per connector; NATS fires its ticks
// on the connector's phase, each carrying when the next one comes, and the
// intended time a worker derives from that is on the phase.
func TestTicksFireOnTheConnectorsPhase(t *testing.T) {
	ns := harness.NATS(t)
	redis := redistest.Start(t)
	_, js := harness.Connect(t, ns.ClientURL())
	file := harness.WriteFile(t, "connectors.json", `{"connectors": [
		{"name": "every-2s", "type": "http-json", "interval": "2s", "config": {"url": "http://127.0.0.1:1/", "items": ".", "id": ".id"}},
		{"name": "every-3s", "type": "http-json", "interval": "3s", "config": {"url": "http://127.0.0.1:1/", "items": ".", "id": ".id"}}]}`)
	harness.Start(t, schedulerd.Service, map[string]string{
		"NATS_URL": ns.ClientURL(), "REDIS_URL": redis.URL(), "CONNECTORS_FILE": file, "LOG_LEVEL": "warn",
	})
	ctx := context.Background()
	cons, err := js.CreateOrUpdateConsumer(ctx, bus.TicksStream, jetstream.ConsumerConfig{
		Durable: "workers", AckPolicy: jetstream.AckExplicitPolicy, FilterSubjects: bus.Filter{}.Subjects(),
	})
	require.NoError(t, err)

	intervals := map[string]time.Duration{"every-2s": 2 * time.Second, "every-3s": 3 * time.Second}
	first := map[string]bool{}
	fired := map[string]int{}
	deadline := time.Now().Add(30 * time.Second)
	for (fired["every-2s"] < 2 || fired["every-3s"] < 2) && time.Now().Before(deadline) {
		msgs, err := cons.Fetch(10, jetstream.FetchMaxWait(time.Second))
		require.NoError(t, err)
		for m := range msgs.Messages() {
			require.NoError(t, m.Ack())
			tick, err := bus.DecodeTick(m.Data())
			require.NoError(t, err)
			name, interval := tick.GetConnector(), intervals[tick.GetConnector()]
			require.NotZero(t, interval, "a tick for %q", name)
			assert.Equal(t, interval, tick.GetInterval().AsDuration())
			intended, ok := bus.TickIntended(m.Headers(), tick)
			require.True(t, ok)
			if tick.GetDueAt() != nil {
				// The scheduler's own tick for a never-polled connector.
				assert.False(t, first[name], "one first tick for %s", name)
				first[name] = true
				continue
			}
			fired[name]++
			assert.Zero(t, intended.Nanosecond(), "fired on a whole second: %s", intended)
			phase := time.Duration(intended.Unix()%int64(interval/time.Second)) * time.Second
			assert.Equal(t, scheduler.Phase(name, interval), phase, "%s fired at %s", name, intended)
		}
	}
	assert.Equal(t, map[string]bool{"every-2s": true, "every-3s": true}, first, "each new connector got a first tick at once")
	assert.GreaterOrEqual(t, fired["every-2s"], 2)
	assert.GreaterOrEqual(t, fired["every-3s"], 2)
}

// A reload that changes a connector's interval reinstalls its schedule on
// the new spec without a first tick (the connector is not new), leaves an
// unchanged connector's schedule alone, and removes a dropped one's.
func TestReloadReinstallsOnlyWhatChanged(t *testing.T) {
	ns := harness.NATS(t)
	redis := redistest.Start(t)
	_, js := harness.Connect(t, ns.ClientURL())
	connector := func(name, interval string) string {
		return `{"name": "` + name + `", "type": "http-json", "interval": "` + interval +
			`", "config": {"url": "http://127.0.0.1:1/", "items": ".", "id": ".id"}}`
	}
	path := harness.WriteFile(t, "connectors.json", `{"connectors": [`+
		connector("kept", "10s")+`, `+connector("changed", "10s")+`, `+connector("dropped", "10s")+`]}`)
	sched := harness.Start(t, schedulerd.Service, map[string]string{
		"NATS_URL": ns.ClientURL(), "REDIS_URL": redis.URL(), "CONNECTORS_FILE": path, "LOG_LEVEL": "warn",
	})
	require.Eventually(t, func() bool {
		return metricLine(t, sched.HTTP, `pollgrid_schedule_changes_total{op="install"}`, "3")
	}, 30*time.Second, 50*time.Millisecond, "three schedules installed")
	assert.True(t, metricLine(t, sched.HTTP, "pollgrid_first_ticks_total", "3"), "three new connectors, three first ticks")

	require.NoError(t, os.WriteFile(path, []byte(`{"connectors": [`+connector("kept", "10s")+`, `+connector("changed", "20s")+`]}`), 0o600))
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	require.Eventually(t, func() bool {
		return metricLine(t, sched.HTTP, `pollgrid_schedule_changes_total{op="install"}`, "4")
	}, 30*time.Second, 50*time.Millisecond, "the changed connector's schedule reinstalled")
	require.Eventually(t, func() bool { return metricLine(t, sched.HTTP, "pollgrid_scheduled_connectors", "2") },
		10*time.Second, 50*time.Millisecond)
	assert.True(t, metricLine(t, sched.HTTP, "pollgrid_first_ticks_total", "3"), "no first tick for a changed connector")

	ctx := context.Background()
	ticks, err := js.Stream(ctx, bus.TicksStream)
	require.NoError(t, err)
	for name, interval := range map[string]time.Duration{"kept": 10 * time.Second, "changed": 20 * time.Second} {
		m, err := ticks.GetLastMsgForSubject(ctx, bus.ScheduleSubject("http-json", name))
		require.NoError(t, err, name)
		assert.Equal(t, scheduler.Spec(name, interval), m.Header.Get(jetstream.ScheduleHeader), name)
	}
	_, err = ticks.GetLastMsgForSubject(ctx, bus.ScheduleSubject("http-json", "dropped"))
	assert.ErrorIs(t, err, jetstream.ErrMsgNotFound, "the dropped connector's schedule is gone")
}
