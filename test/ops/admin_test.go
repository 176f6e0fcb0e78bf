package ops

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/aggregator"
	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/services/scheduler/schedulerd"
	"github.com/pollgrid/pollgrid/services/worker/workerd"
	"github.com/pollgrid/pollgrid/test/harness"
)

// list and status show what an operator needs: health, freshness, state,
// the lease and the recent polls; trigger polls at once under the lease and
// says how it went, a success or a failure.
func TestListStatusAndTrigger(t *testing.T) {
	up := harness.NewUpstream(t, fixtureBody(t))
	slow := harness.NewUpstream(t, fixtureBody(t))
	s := startStack(t, nil, connector{name: "hourly", interval: "1h", upstream: up}, connector{name: "other", interval: "1h", upstream: slow})
	ctx := context.Background()

	// A new connector gets its first tick at once.
	polledAtLeast(t, up, 1)
	require.Eventually(t, func() bool { return s.status("hourly").Health == admin.HealthOK }, 30*time.Second, 20*time.Millisecond)

	list, err := s.admin.List(ctx, admin.ListRequest{})
	require.NoError(t, err)
	require.Equal(t, 2, list.Total)
	assert.Equal(t, []string{"weather-noaa"}, list.Types)
	assert.Equal(t, aggregator.DefaultStaleAfter, list.StaleAfter)
	var row admin.Connector
	for _, c := range list.Connectors {
		if c.Name == "hourly" {
			row = c
		}
	}
	assert.Equal(t, "weather-noaa", row.Type)
	assert.True(t, row.Enabled)
	assert.False(t, row.Paused)
	assert.Equal(t, "1h0m0s", row.Interval)
	assert.True(t, row.Healthy)
	assert.False(t, row.Stale)
	require.NotNil(t, row.LastSuccess)
	require.NotNil(t, row.NextDue, "a scheduled connector has a next due time")
	assert.True(t, row.NextDue.After(time.Now()) && row.NextDue.Before(time.Now().Add(time.Hour+time.Second)), "next due %s", row.NextDue)

	filtered, err := s.admin.List(ctx, admin.ListRequest{Query: "oth"})
	require.NoError(t, err)
	require.Len(t, filtered.Connectors, 1)
	assert.Equal(t, "other", filtered.Connectors[0].Name)
	_, err = s.admin.List(ctx, admin.ListRequest{Health: "sad"})
	var aerr *admin.Error
	require.ErrorAs(t, err, &aerr)
	assert.Equal(t, admin.CodeBadRequest, aerr.Code)

	st := s.status("hourly")
	assert.EqualValues(t, 2, st.SeenItems, "the fixture's two alerts are remembered")
	assert.Zero(t, st.Generation)
	assert.Empty(t, st.Lease.Holder, "no poll runs now")
	assert.Positive(t, st.Lease.Fence)

	// trigger: one more poll, now, on a connector that is not due for an hour.
	before := up.Requests.Load()
	asked := time.Now()
	tr, err := s.admin.Trigger(ctx, "hourly")
	require.NoError(t, err)
	assert.Equal(t, "success", tr.Outcome)
	assert.Equal(t, "hourly", tr.Connector)
	assert.Equal(t, "w1", tr.Worker)
	assert.WithinDuration(t, asked, tr.StartedAt, time.Second, "the poll started within a second of the request")
	assert.False(t, tr.FinishedAt.Before(tr.StartedAt))
	assert.EqualValues(t, 2, tr.ItemsFetched)
	assert.Zero(t, tr.ItemsPublished, "nothing changed upstream")
	assert.Greater(t, tr.FencingToken, st.Lease.Fence)
	assert.Equal(t, before+1, up.Requests.Load())

	// The triggered poll is reported like any other.
	require.Eventually(t, func() bool {
		recent := s.status("hourly").Recent
		return len(recent) >= 2 && recent[len(recent)-1].StartedAt.Equal(tr.StartedAt)
	}, 30*time.Second, 20*time.Millisecond)

	// A failing upstream: the trigger says so, and the connector shows failing.
	up.Set(http.StatusInternalServerError, []byte(`{"title": "Internal Server Error", "detail": "down for maintenance"}`))
	tr, err = s.admin.Trigger(ctx, "hourly")
	require.NoError(t, err)
	assert.Equal(t, "failure", tr.Outcome)
	assert.Contains(t, tr.Error, "500")
	st = s.status("hourly")
	assert.Equal(t, admin.HealthFailing, st.Health)
	assert.Equal(t, 1, st.ConsecutiveFailures)
	assert.Contains(t, st.LastError, "down for maintenance")
	list, err = s.admin.List(ctx, admin.ListRequest{})
	require.NoError(t, err)
	assert.Equal(t, "hourly", list.Connectors[0].Name, "failing connectors come first")
	assert.Equal(t, 1, list.Counts[admin.HealthFailing])

	// Unknown connectors are named in the error.
	_, err = s.admin.Trigger(ctx, "nope")
	require.ErrorAs(t, err, &aerr)
	assert.Equal(t, admin.CodeNotFound, aerr.Code)
	assert.Contains(t, aerr.Message, `"nope"`)
	_, err = s.admin.Status(ctx, "nope")
	require.ErrorAs(t, err, &aerr)
	assert.Equal(t, admin.CodeNotFound, aerr.Code)
}

// pause stops a connector's polls (its schedule is removed, no worker polls
// it) and survives a scheduler failover; resume brings it back.
func TestPauseStopsPollsAndSurvivesSchedulerFailover(t *testing.T) {
	pausedUp := harness.NewUpstream(t, fixtureBody(t))
	runningUp := harness.NewUpstream(t, fixtureBody(t))
	s := startStack(t, nil, connector{name: "to-pause", interval: "1s", upstream: pausedUp},
		connector{name: "running", interval: "1s", upstream: runningUp})
	standby := harness.Start(t, schedulerd.Service, s.envWith(map[string]string{"SCHEDULER_ID": "second"}))
	ctx := context.Background()
	polledAtLeast(t, pausedUp, 2)

	p, err := s.admin.Pause(ctx, "to-pause", "ops-test")
	require.NoError(t, err)
	assert.True(t, p.Paused)
	assert.False(t, p.Already)
	assert.Equal(t, "ops-test", p.By)
	again, err := s.admin.Pause(ctx, "to-pause", "someone")
	require.NoError(t, err)
	assert.True(t, again.Already)
	assert.Equal(t, p.Since, again.Since)

	// No schedule and no pending tick are left for it.
	ticks, err := s.js.Stream(ctx, bus.TicksStream)
	require.NoError(t, err)
	for _, subject := range []string{bus.ScheduleSubject("weather-noaa", "to-pause"), bus.TickSubject("weather-noaa", "to-pause")} {
		_, err = ticks.GetLastMsgForSubject(ctx, subject)
		assert.ErrorIs(t, err, jetstream.ErrMsgNotFound, "%s is gone", subject)
	}
	st := s.status("to-pause")
	assert.Equal(t, admin.HealthPaused, st.Health)
	assert.Nil(t, st.NextDue)

	// Failover: the first scheduler stops, the standby leads and syncs.
	// Its sync must leave the paused connector out.
	require.NoError(t, s.scheduler.Stop())
	require.Eventually(t, func() bool {
		return metricValue(t, standby.HTTP, "pollgrid_scheduler_leader") == 1 &&
			metricValue(t, standby.HTTP, "pollgrid_scheduled_connectors") == 1
	}, 30*time.Second, 50*time.Millisecond, "the standby never took over")

	// A poll may have been running when the pause came: let the running
	// connector poll twice, then count; three more of its polls later the
	// paused one has had none.
	polledAtLeast(t, runningUp, runningUp.Requests.Load()+2)
	frozen := pausedUp.Requests.Load()
	polledAtLeast(t, runningUp, runningUp.Requests.Load()+3)
	assert.Equal(t, frozen, pausedUp.Requests.Load(), "a paused connector is not polled")
	_, err = ticks.GetLastMsgForSubject(ctx, bus.ScheduleSubject("weather-noaa", "to-pause"))
	assert.ErrorIs(t, err, jetstream.ErrMsgNotFound, "the new leader did not reinstall it")

	// A worker that still gets a tick for it skips it, and reports why.
	data, err := bus.EncodeTick(tickFor("to-pause"))
	require.NoError(t, err)
	_, err = s.js.Publish(ctx, bus.TickSubject("weather-noaa", "to-pause"), data)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		for _, p := range s.status("to-pause").Recent {
			if p.Outcome == "skipped" && strings.Contains(p.Error, "paused since") {
				return true
			}
		}
		return false
	}, 30*time.Second, 50*time.Millisecond, "the tick was not skipped as paused")
	assert.Equal(t, frozen, pausedUp.Requests.Load())

	// resume: scheduled again, and overdue, so polled at once.
	r, err := s.admin.Resume(ctx, "to-pause")
	require.NoError(t, err)
	assert.True(t, r.WasPaused)
	assert.True(t, r.Scheduled)
	assert.True(t, r.FirstTick, "paused for more than an interval: a tick at once")
	polledAtLeast(t, pausedUp, frozen+2)
	st = s.status("to-pause")
	assert.False(t, st.Paused)
	assert.Zero(t, st.MissedIntervals, "the paused time is not counted as missed")
}

// reset forgets the cursor and seen versions: the next poll publishes the
// current items as created again, and JetStream keeps them (new ids).
func TestResetRepublishesCurrentItemsAsCreated(t *testing.T) {
	up := harness.NewUpstream(t, fixtureBody(t))
	s := startStack(t, nil, connector{name: "hourly", interval: "1h", upstream: up})
	ctx := context.Background()
	require.Eventually(t, func() bool { return s.status("hourly").SeenItems == 2 }, 30*time.Second, 20*time.Millisecond)
	require.EqualValues(t, 2, streamMsgs(t, s.js, bus.SignalsStream), "the first poll created both alerts")
	sigs := harness.CollectSignals(t, s.nc)

	_, err := s.admin.Reset(ctx, "hourly", "")
	var aerr *admin.Error
	require.ErrorAs(t, err, &aerr, "a reset must be confirmed")
	assert.Equal(t, admin.CodeBadRequest, aerr.Code)
	assert.Contains(t, aerr.Message, "--yes")
	assert.EqualValues(t, 2, s.status("hourly").SeenItems, "an unconfirmed reset changes nothing")

	r, err := s.admin.Reset(ctx, "hourly", "hourly")
	require.NoError(t, err)
	assert.EqualValues(t, 1, r.Generation)
	assert.EqualValues(t, 2, r.ItemsForgotten)
	st := s.status("hourly")
	assert.Zero(t, st.SeenItems)
	assert.EqualValues(t, 1, st.Generation)

	tr, err := s.admin.Trigger(ctx, "hourly")
	require.NoError(t, err)
	assert.EqualValues(t, 2, tr.ItemsPublished, "both current items again")
	require.Eventually(t, func() bool { return len(sigs.All()) == 2 }, 30*time.Second, 20*time.Millisecond)
	for _, m := range sigs.All() {
		assert.Equal(t, "pollgrid.weather-noaa.created", m.Header.Get("ce-type"))
		var body struct {
			Change     string `json:"change"`
			Generation uint64 `json:"generation"`
			Sequence   uint64 `json:"sequence"`
		}
		require.NoError(t, json.Unmarshal(m.Data, &body))
		assert.Equal(t, "created", body.Change)
		assert.EqualValues(t, 1, body.Generation)
		assert.EqualValues(t, 1, body.Sequence, "a new generation starts every item's sequence again")
	}
	assert.EqualValues(t, 4, streamMsgs(t, s.js, bus.SignalsStream), "SIGNALS kept them: not duplicates")
}

// reload is SIGHUP on every process, each replying with its result.
func TestReloadAnswersForEveryProcess(t *testing.T) {
	up := harness.NewUpstream(t, fixtureBody(t))
	s := startStack(t, nil, connector{name: "hourly", interval: "1h", upstream: up})
	harness.Start(t, workerd.Service, s.envWith(map[string]string{"WORKER_ID": "w2"}))
	ctx := context.Background()
	// A process answers reload once its admin service is up, a moment
	// after its HTTP port opens (a busy machine makes the moment longer).
	require.Eventually(t, func() bool {
		instances, err := s.admin.Instances(ctx, 300*time.Millisecond)
		return err == nil && len(instances) == 4
	}, 30*time.Second, 100*time.Millisecond, "the second worker's admin service never answered discovery")

	require.NoError(t, os.WriteFile(s.env["CONNECTORS_FILE"], []byte(configJSON(
		connector{name: "hourly", interval: "1h", upstream: up}, connector{name: "added", interval: "1h", upstream: up})), 0o600))
	replies, missing, err := s.admin.Reload(ctx)
	require.NoError(t, err)
	assert.Empty(t, missing)
	services := map[string]int{}
	for _, r := range replies {
		services[r.Service]++
		assert.True(t, r.OK, "%+v", r)
		assert.Equal(t, 2, r.Connectors)
	}
	assert.Equal(t, map[string]int{"scheduler": 1, "worker": 2, "aggregator": 1}, services)
	// Each process applied the file to the catalog; the aggregator lists
	// what its watch of the catalog has seen, a moment later.
	require.Eventually(t, func() bool {
		list, err := s.admin.List(ctx, admin.ListRequest{Query: "added"})
		return err == nil && list.Total == 1
	}, 5*time.Second, 20*time.Millisecond, "the aggregator never listed the connector the file added")

	require.NoError(t, os.WriteFile(s.env["CONNECTORS_FILE"], []byte(strings.Replace(configJSON(
		connector{name: "hourly", interval: "1h", upstream: up}), `"interval": "1h"`, `"interval": "5"`, 1)), 0o600))
	replies, missing, err = s.admin.Reload(ctx)
	require.NoError(t, err)
	assert.Empty(t, missing)
	require.Len(t, replies, 4)
	for _, r := range replies {
		assert.False(t, r.OK)
		assert.Contains(t, r.Error, "the catalog stays as it was")
		require.NotEmpty(t, r.Problems)
		assert.Equal(t, "connectors[0].interval", r.Problems[0].Path)
		assert.Contains(t, r.Problems[0].Message, `write "5s"`)
	}
	list, err := s.admin.List(ctx, admin.ListRequest{})
	require.NoError(t, err)
	assert.Equal(t, 2, list.Total, "a rejected file writes nothing: the catalog keeps both connectors")
}

// A verb nobody serves says which service to start.
func TestVerbWithoutItsServiceNamesIt(t *testing.T) {
	ns := harness.NATS(t)
	nc, _ := harness.Connect(t, ns.ClientURL())
	_, err := admin.NewClient(nc, 5*time.Second).Pause(context.Background(), "x", "me")
	require.Error(t, err)
	assert.True(t, errors.Is(err, admin.ErrNoService), "%v", err)
	assert.Contains(t, err.Error(), "start a scheduler")
}
