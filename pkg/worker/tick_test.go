package worker

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/catalog"
	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/store"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

func TestBadTickIsTerminated(t *testing.T) {
	fx := newFixture(t, Options{})
	badNames, err := bus.EncodeTick(&pollgridv1.Tick{Connector: "Feed!", ConnectorType: feedType})
	require.NoError(t, err)
	tests := []struct {
		name string
		data []byte
	}{
		{name: "not protobuf", data: []byte("\xff\xff not a tick")},
		{name: "names no valid connector", data: badNames},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ack := &answers{}
			_, ok := fx.w.decode(tt.data, "pollgrid.ticks.fake.feed", ack)
			assert.False(t, ok)
			assert.Equal(t, []string{"term"}, ack.list(), "dropped for good: no redelivery can fix it")
			assert.InDelta(t, float64(i+1), testutil.ToFloat64(fx.w.metrics.badTicks), 0)
		})
	}
}

func TestTickOfAConnectorNotInTheCatalogIsAckedAndDropped(t *testing.T) {
	var logs bytes.Buffer
	fx := newFixture(t, Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	require.NoError(t, fx.cat.Delete(context.Background(), catalog.Connector("feed"), 0))
	tests := []struct {
		name, connector string
		deliveries      uint64
	}{
		{name: "deleted", connector: "feed", deliveries: 1},
		{name: "deleted, again", connector: "feed", deliveries: 1},
		{name: "never defined", connector: "gone", deliveries: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk := tickOf(feed())
			tk.Connector = tt.connector
			tk.deliveries = tt.deliveries
			ack := &answers{}
			fx.w.run(context.Background(), tk, ack)
			assert.Equal(t, []string{"ack"}, ack.list(), "no redelivery brings it back")
		})
	}
	assert.Empty(t, fx.reports(), "no poll, no report")
	assert.Zero(t, fx.connectorPolls())
	assert.Zero(t, testutil.ToFloat64(fx.w.metrics.badTicks), "a deleted connector's tick is no bad tick")
	assert.Equal(t, 2, strings.Count(logs.String(), "level=INFO msg=\"dropping the ticks of a connector deleted from the catalog\""),
		"logged once per connector: %s", logs.String())
	assert.Equal(t, 1, strings.Count(logs.String(), "level=DEBUG msg=\"dropping the tick of a connector deleted"))
}

func TestTickOfAnotherTypeIsDropped(t *testing.T) {
	fx := newFixture(t, Options{})
	tk := tickOf(feed())
	tk.ConnectorType = "other"
	ack := &answers{}
	fx.w.run(context.Background(), tk, ack)
	assert.Equal(t, []string{"ack"}, ack.list(), "planned from an older definition: the next tick has the type")
	assert.Empty(t, fx.reports())
	assert.Zero(t, fx.connectorPolls())
	assert.InDelta(t, 1, testutil.ToFloat64(fx.w.metrics.badTicks), 0)
}

func TestDisabledConnectorTickIsAcked(t *testing.T) {
	off := feed()
	off.Enabled = false
	fx := newFixture(t, Options{}, off)
	ack := &answers{}
	fx.w.run(context.Background(), tickOf(off), ack)
	assert.Equal(t, []string{"ack"}, ack.list())
	assert.Zero(t, fx.connectorPolls())
	assert.Empty(t, fx.reports())
	assert.Zero(t, testutil.ToFloat64(fx.w.metrics.badTicks))
}

func TestSuccessfulPollIsAckedAndReported(t *testing.T) {
	fx := newFixture(t, Options{})
	fx.onPoll(func(context.Context, connector.State) (connector.Result, error) {
		return connector.Result{Items: []connector.Item{{ID: "a1", Version: "v1", Data: []byte(`{"n":1}`)}},
			State: connector.State{Cursor: "c1"}}, nil
	})
	ack := &answers{}
	fx.w.run(context.Background(), tickOf(feed()), ack)

	assert.Equal(t, []string{"ack"}, ack.list())
	report := fx.onlyReport(t)
	assert.Equal(t, pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS, report.GetOutcome())
	assert.Empty(t, report.GetError())
	assert.Equal(t, "feed", report.GetConnector())
	assert.Equal(t, fx.w.opts.ID, report.GetWorker())
	assert.EqualValues(t, 1, report.GetItemsFetched())
	assert.EqualValues(t, 1, report.GetItemsPublished())
	assert.NotZero(t, report.GetFencingToken())
	assert.InDelta(t, 1, testutil.ToFloat64(fx.w.metrics.polls.WithLabelValues(feedType, "success")), 0)
	assert.InDelta(t, 1, testutil.ToFloat64(fx.w.metrics.signals.WithLabelValues(feedType, "created")), 0)

	signals, err := fx.js.Stream(context.Background(), bus.SignalsStream)
	require.NoError(t, err)
	info, err := signals.Info(context.Background())
	require.NoError(t, err)
	assert.EqualValues(t, 1, info.State.Msgs, "the signal is in JetStream")
	st := fx.state(t, "feed")
	assert.Equal(t, "c1", st.Cursor, "the cursor is committed")
	assert.False(t, st.LastSuccess.IsZero())
	_, _, err = fx.st.Acquire(context.Background(), "feed", "next", time.Minute, store.ClaimTrigger)
	assert.NoError(t, err, "the commit released the lease")
}

func TestFailedAckIsCountedAndTheTickComesBack(t *testing.T) {
	fx := newFixture(t, Options{})
	ack := &answers{ackErr: errors.New("nats: timeout")}
	fx.w.run(context.Background(), tickOf(feed()), ack)
	assert.Equal(t, []string{"ack"}, ack.list())
	assert.InDelta(t, 1, testutil.ToFloat64(fx.w.metrics.errors.WithLabelValues("nats", "ack")), 0)
	assert.Equal(t, pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS, fx.onlyReport(t).GetOutcome())
}

func TestShutdownMidPollNaksTheTick(t *testing.T) {
	fx := newFixture(t, Options{})
	polling := make(chan struct{})
	fx.onPoll(func(ctx context.Context, _ connector.State) (connector.Result, error) {
		close(polling)
		<-ctx.Done()
		return connector.Result{}, ctx.Err()
	})
	ctx, abandon := context.WithCancel(context.Background())
	done := make(chan struct{})
	ack := &answers{}
	go func() { defer close(done); fx.w.run(ctx, tickOf(feed()), ack) }()
	<-polling
	abandon()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the poll did not end after its context did")
	}

	assert.Equal(t, []string{"nak"}, ack.list(), "handed to another worker now, not after AckWait")
	assert.Equal(t, pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE, fx.onlyReport(t).GetOutcome())
	assert.Equal(t, 1, fx.state(t, "feed").ConsecutiveFailures, "the failure is committed even so")
	_, _, err := fx.st.Acquire(context.Background(), "feed", "next", time.Minute, store.ClaimTrigger)
	assert.NoError(t, err, "and the lease released")
}

func TestHeartbeatKeepsTheTickInProgress(t *testing.T) {
	fx := newFixture(t, Options{AckWait: 40 * time.Millisecond})
	ack := &answers{}
	fx.onPoll(func(ctx context.Context, _ connector.State) (connector.Result, error) {
		deadline := time.Now().Add(10 * time.Second)
		for ack.progressed() < 3 && time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return connector.Result{}, ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
		return connector.Result{}, nil
	})
	fx.w.run(context.Background(), tickOf(feed()), ack)
	assert.GreaterOrEqual(t, ack.progressed(), 3)
	assert.Equal(t, []string{"ack"}, ack.list())
	assert.Equal(t, pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS, fx.onlyReport(t).GetOutcome())
}

func TestTriggerPollsAPausedConnectorWithoutATick(t *testing.T) {
	fx := newFixture(t, Options{})
	_, _, err := fx.st.Pause(context.Background(), "feed", "alice", time.Now())
	require.NoError(t, err)

	got, err := fx.w.Trigger(context.Background(), []byte(`{"name":"feed"}`))
	require.NoError(t, err)
	reply, ok := got.(admin.TriggerReply)
	require.True(t, ok)
	assert.Equal(t, "feed", reply.Connector)
	assert.NotZero(t, reply.FencingToken)
	assert.Equal(t, 1, fx.connectorPolls(), "a trigger polls whatever the pause")
	assert.Equal(t, pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS, fx.onlyReport(t).GetOutcome())
}
