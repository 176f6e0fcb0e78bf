package aggregator

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/history"
	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/pkg/store"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

const (
	waitFor   = 15 * time.Second
	pollEvery = 10 * time.Millisecond
	// quickFlush keeps the tests short; the logic does not depend on it.
	quickFlush = 50 * time.Millisecond
)

// startJetStream runs an embedded NATS server with the REPORTS stream.
func startJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
	})
	require.NoError(t, err)
	go ns.Start()
	require.True(t, ns.ReadyForConnections(10*time.Second), "embedded NATS did not start")
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err := nats.Connect(ns.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name: bus.ReportsStream, Subjects: []string{bus.ReportPrefix + ".>"},
	})
	require.NoError(t, err)
	return js
}

// run starts a's Run, waits for its consumer, and stops it when the test
// ends.
func run(t *testing.T, a *Aggregator) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	require.Eventually(t, func() bool {
		_, err := a.js.Consumer(ctx, bus.ReportsStream, ConsumerName)
		return err == nil
	}, waitFor, pollEvery, "the aggregator's consumer")
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(waitFor):
			t.Error("Run did not return after its context ended")
		}
	}
	t.Cleanup(stop)
	return stop
}

func pollReport(connector string, started time.Time, traceID string) *pollgridv1.PollReport {
	return &pollgridv1.PollReport{
		Connector: connector, ConnectorType: "feed", Worker: "worker-1",
		Outcome: pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS, StartedAt: timestamppb.New(started),
		Duration: durationpb.New(100 * time.Millisecond), ItemsFetched: 3, ItemsPublished: 1, TraceId: traceID,
	}
}

func publish(t *testing.T, js jetstream.JetStream, reports ...*pollgridv1.PollReport) {
	t.Helper()
	data, err := bus.EncodeReports(&pollgridv1.PollReports{Reports: reports})
	require.NoError(t, err)
	_, err = js.Publish(context.Background(), bus.ReportPrefix+".worker-1", data)
	require.NoError(t, err)
}

func consumer(t *testing.T, js jetstream.JetStream) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := js.Consumer(context.Background(), bus.ReportsStream, ConsumerName)
	require.NoError(t, err)
	info, err := c.Info(context.Background())
	require.NoError(t, err)
	return info
}

// allAcked is true once JetStream holds no message of the stream for the
// aggregator: delivered and acknowledged (or terminated), up to last.
func allAcked(t *testing.T, js jetstream.JetStream, last uint64) bool {
	info := consumer(t, js)
	return info.AckFloor.Stream == last && info.NumAckPending == 0 && info.NumPending == 0
}

// newStores returns the connector store and the history the aggregator
// reads and writes, over rdb.
func newStores(rdb redis.UniversalClient) (*store.Store, *history.Store) {
	st := store.New(rdb, store.Options{})
	return st, history.New(rdb, st.Keys())
}

func polls(t *testing.T, hist *history.Store, connector string) int64 {
	t.Helper()
	m, _, err := hist.Metrics(context.Background(), connector, time.Hour, time.Now())
	require.NoError(t, err)
	return m.Polls
}

// Batches of reports of several connectors are written and acknowledged,
// each report once.
func TestRecordsBatches(t *testing.T) {
	js := startJetStream(t)
	st, hist := newStores(redistest.Start(t).Client(t))
	a := New(js, st, hist, Options{FlushInterval: quickFlush})
	run(t, a)

	now := time.Now().UTC()
	want := map[string]int64{}
	for i := range 20 {
		var batch []*pollgridv1.PollReport
		for j := range 10 {
			name := fmt.Sprintf("c%d", (i+j)%3)
			batch = append(batch, pollReport(name, now.Add(time.Duration(i*10+j)*time.Second), ""))
			want[name]++
		}
		publish(t, js, batch...)
	}
	require.Eventually(t, func() bool { return allAcked(t, js, 20) }, waitFor, pollEvery)
	for name, n := range want {
		assert.Equal(t, n, polls(t, hist, name), name)
	}
	assert.Equal(t, 200.0, testutil.ToFloat64(a.reports.WithLabelValues("ok")))
	assert.Equal(t, 0, consumer(t, js).NumRedelivered)
}

// Nothing is acknowledged before it is in Redis: with Redis down the
// reports are returned and come back until Redis is up again, and then each
// is recorded once.
func TestAcksOnlyAfterTheWrite(t *testing.T) {
	js := startJetStream(t)
	redisServer := redistest.Start(t)
	st, hist := newStores(redisServer.Client(t))
	a := New(js, st, hist, Options{FlushInterval: quickFlush})
	run(t, a)

	now := time.Now().UTC()
	publish(t, js, pollReport("before", now, ""))
	require.Eventually(t, func() bool { return allAcked(t, js, 1) }, waitFor, pollEvery)

	redisServer.Stop()
	for i := range 5 {
		publish(t, js, pollReport("a", now.Add(time.Duration(i)*time.Second), ""),
			pollReport("b", now.Add(time.Duration(i)*time.Second), ""), pollReport("a", now.Add(time.Duration(i)*time.Second+1), ""))
	}
	// Every report failed at least once, and came back.
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(a.reports.WithLabelValues("retried")) >= 15 && consumer(t, js).NumRedelivered > 0
	}, waitFor, pollEvery)
	info := consumer(t, js)
	assert.Equal(t, uint64(1), info.AckFloor.Stream, "nothing acknowledged while Redis is down")
	assert.Equal(t, 5, info.NumAckPending+int(info.NumPending))
	assert.Positive(t, testutil.ToFloat64(a.errors.WithLabelValues("redis", "record_report")))

	redisServer.Restart() // empty: what was written before the stop is gone
	require.Eventually(t, func() bool { return allAcked(t, js, 6) }, waitFor, pollEvery)
	assert.Equal(t, int64(10), polls(t, hist, "a"), "recorded once")
	assert.Equal(t, int64(5), polls(t, hist, "b"), "recorded once")
}

// A message that does not decode is terminated; an invalid report is
// dropped and the rest of its message recorded.
func TestRejectsMalformed(t *testing.T) {
	js := startJetStream(t)
	st, hist := newStores(redistest.Start(t).Client(t))
	a := New(js, st, hist, Options{FlushInterval: quickFlush})
	run(t, a)

	_, err := js.Publish(context.Background(), bus.ReportPrefix+".worker-1", []byte("not protobuf \xff\xff"))
	require.NoError(t, err)
	noStart := pollReport("good", time.Now(), "")
	noStart.StartedAt = nil
	publish(t, js, pollReport("good", time.Now(), ""), noStart)
	publish(t, js) // an empty batch

	require.Eventually(t, func() bool { return allAcked(t, js, 3) }, waitFor, pollEvery)
	assert.Equal(t, int64(1), polls(t, hist, "good"))
	assert.Equal(t, 2.0, testutil.ToFloat64(a.reports.WithLabelValues("rejected")))
	assert.Equal(t, 1.0, testutil.ToFloat64(a.reports.WithLabelValues("ok")))
	assert.Equal(t, 0, consumer(t, js).NumRedelivered, "nothing malformed comes back")
}

// Reports Redis refuses for good (here: a key of the wrong type) are dropped
// and counted; the rest of their messages is recorded and nothing comes
// back forever.
func TestDropsWhatRedisRefuses(t *testing.T) {
	js := startJetStream(t)
	rdb := redistest.Start(t).Client(t)
	require.NoError(t, rdb.HSet(context.Background(), "pollgrid:{bad}:history", "not", "a string").Err())
	st, hist := newStores(rdb)
	a := New(js, st, hist, Options{FlushInterval: quickFlush})
	run(t, a)

	now := time.Now()
	publish(t, js, pollReport("good", now, ""), pollReport("bad", now, ""), pollReport("bad", now.Add(time.Second), ""))
	publish(t, js, pollReport("good", now.Add(time.Second), ""))
	require.Eventually(t, func() bool { return allAcked(t, js, 2) }, waitFor, pollEvery)
	assert.Equal(t, int64(2), polls(t, hist, "good"))
	assert.Equal(t, 2.0, testutil.ToFloat64(a.reports.WithLabelValues("rejected")))
	assert.Equal(t, 2.0, testutil.ToFloat64(a.reports.WithLabelValues("ok")))
	assert.Equal(t, 0, consumer(t, js).NumRedelivered)
}

// tracedReports returns reports of n polls, each carrying its poll's span
// context as a worker stamps it, and those polls' spans.
func tracedReports(tp trace.TracerProvider, connector string, n int) ([]*pollgridv1.PollReport, []trace.SpanContext) {
	var reports []*pollgridv1.PollReport
	var polls []trace.SpanContext
	for i := range n {
		ctx, poll := tp.Tracer("worker").Start(context.Background(), "process pollgrid.tick.feed."+connector)
		poll.End()
		r := pollReport(connector, time.Now().Add(time.Duration(i)*time.Millisecond), "")
		bus.InjectReportTrace(ctx, propagation.TraceContext{}, r)
		reports = append(reports, r)
		polls = append(polls, poll.SpanContext())
	}
	return reports, polls
}

func flushSpans(rec *tracetest.SpanRecorder) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "process "+bus.ReportPrefix+".*" {
			out = append(out, s)
		}
	}
	return out
}

// One flush is one span, after the messaging conventions for a batch: a
// consumer span of its own trace that links to the span of every poll it
// records (the reports' creation contexts), and counts them.
func TestFlushSpanLinksToThePolls(t *testing.T) {
	js := startJetStream(t)
	st, hist := newStores(redistest.Start(t).Client(t))
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	// Two messages make a flush, whenever they arrive.
	a := New(js, st, hist, Options{FlushInterval: time.Hour, FlushMessages: 2, Tracer: tp})
	run(t, a)

	x, xPolls := tracedReports(tp, "x", 2)
	y, yPolls := tracedReports(tp, "y", 1)
	untraced := pollReport("y", time.Now(), "") // an unsampled poll: no context to link
	publish(t, js, x...)
	publish(t, js, append(y, untraced)...)
	require.Eventually(t, func() bool { return len(flushSpans(spans)) == 1 && allAcked(t, js, 2) }, waitFor, pollEvery)

	flush := flushSpans(spans)[0]
	assert.Equal(t, trace.SpanKindConsumer, flush.SpanKind())
	assert.False(t, flush.Parent().IsValid(), "a flush serves many polls: a trace of its own")
	var linked []trace.SpanContext
	for _, l := range flush.Links() {
		linked = append(linked, l.SpanContext.WithRemote(false))
	}
	assert.ElementsMatch(t, append(xPolls, yPolls...), linked, "one link to each poll's span")
	fa := attrs(flush.Attributes())
	assert.Equal(t, "4", fa["messaging.batch.message_count"], "the reports recorded")
	assert.Equal(t, "2", fa["pollgrid.flush.jetstream_messages"], "the messages acknowledged")
	assert.Equal(t, "0", fa["pollgrid.links.dropped"])
	assert.Equal(t, "nats", fa["messaging.system"])
	assert.Equal(t, "process", fa["messaging.operation.type"])
	assert.Equal(t, bus.ReportPrefix+".*", fa["messaging.destination.template"])
	assert.Equal(t, ConsumerName, fa["messaging.consumer.group.name"])
	assert.Equal(t, int64(2), polls(t, hist, "x"), "and the flush wrote them")
	assert.Equal(t, int64(2), polls(t, hist, "y"))
}

// A flush of more polls than a span may link says how many it left out.
func TestFlushSpanLinksAreBounded(t *testing.T) {
	js := startJetStream(t)
	st, hist := newStores(redistest.Start(t).Client(t))
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	a := New(js, st, hist, Options{FlushInterval: time.Hour, FlushMessages: 1, Tracer: tp})
	run(t, a)

	reports, _ := tracedReports(tp, "many", bus.MaxLinks+5)
	publish(t, js, reports...)
	require.Eventually(t, func() bool { return len(flushSpans(spans)) == 1 }, waitFor, pollEvery)
	flush := flushSpans(spans)[0]
	assert.Len(t, flush.Links(), bus.MaxLinks)
	assert.Zero(t, flush.DroppedLinks())
	assert.Equal(t, "5", attrs(flush.Attributes())["pollgrid.links.dropped"])
	assert.Equal(t, fmt.Sprint(bus.MaxLinks+5), attrs(flush.Attributes())["messaging.batch.message_count"])
	assert.Equal(t, "many", attrs(flush.Attributes())["pollgrid.connector"], "one connector's batch names it")
}

func attrs(kvs []attribute.KeyValue) map[string]string {
	out := map[string]string{}
	for _, kv := range kvs {
		out[string(kv.Key)] = kv.Value.Emit()
	}
	return out
}

// Replicas share the durable consumer: every report is recorded once,
// whichever replica got its message.
func TestReplicasShareTheConsumer(t *testing.T) {
	js := startJetStream(t)
	st, hist := newStores(redistest.Start(t).Client(t))
	replicas := []*Aggregator{
		New(js, st, hist, Options{FlushInterval: quickFlush}),
		New(js, st, hist, Options{FlushInterval: quickFlush}),
	}
	for _, a := range replicas {
		run(t, a)
	}
	now := time.Now().UTC()
	for i := range 100 {
		publish(t, js, pollReport("shared", now.Add(time.Duration(i)*time.Second), ""),
			pollReport(fmt.Sprintf("own-%d", i%7), now, ""))
	}
	require.Eventually(t, func() bool { return allAcked(t, js, 100) }, waitFor, pollEvery)
	assert.Equal(t, int64(100), polls(t, hist, "shared"))
	var ok float64
	for _, a := range replicas {
		ok += testutil.ToFloat64(a.reports.WithLabelValues("ok"))
	}
	assert.Equal(t, 200.0, ok)
	m, _, err := hist.Metrics(context.Background(), "shared", time.Hour, now)
	require.NoError(t, err)
	require.NotNil(t, m.LastPoll)
	assert.Equal(t, now.Add(99*time.Second).Truncate(time.Millisecond), *m.LastPoll,
		"the latest poll wins whatever order the replicas wrote in")
}

// Stopping writes what the aggregator holds before Run returns.
func TestStopWritesWhatItHolds(t *testing.T) {
	js := startJetStream(t)
	st, hist := newStores(redistest.Start(t).Client(t))
	a := New(js, st, hist, Options{FlushInterval: time.Hour})
	stop := run(t, a)

	for i := range 3 {
		publish(t, js, pollReport("held", time.Now().Add(time.Duration(i)*time.Second), ""))
	}
	require.Eventually(t, func() bool { return consumer(t, js).NumAckPending == 3 }, waitFor, pollEvery,
		"delivered and held until the flush")
	assert.Zero(t, polls(t, hist, "held"))
	stop()
	assert.Equal(t, int64(3), polls(t, hist, "held"))
	assert.True(t, allAcked(t, js, 3))
}
