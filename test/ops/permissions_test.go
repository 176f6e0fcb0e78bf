package ops

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/pkg/service"
	"github.com/pollgrid/pollgrid/services/aggregator/aggregatord"
	"github.com/pollgrid/pollgrid/services/scheduler/schedulerd"
	"github.com/pollgrid/pollgrid/services/worker/workerd"
	"github.com/pollgrid/pollgrid/test/harness"
)

// exampleNATS runs an embedded NATS under deploy/nats/pollgrid.conf as
// shipped (only its listen address, monitoring port and store are the
// test's) and returns the URL each of its users connects with.
func exampleNATS(t *testing.T) (urlFor func(user string) string) {
	t.Helper()
	passwords := map[string]string{"pollgrid": "svc-pw", "operator": "op-pw", "viewer": "view-pw", "consumer": "cons-pw"}
	t.Setenv("POLLGRID_NATS_PASSWORD", passwords["pollgrid"])
	t.Setenv("OPERATOR_NATS_PASSWORD", passwords["operator"])
	t.Setenv("VIEWER_NATS_PASSWORD", passwords["viewer"])
	t.Setenv("CONSUMER_NATS_PASSWORD", passwords["consumer"])
	opts, err := server.ProcessConfigFile("../../deploy/nats/pollgrid.conf")
	require.NoError(t, err)
	opts.Host, opts.Port, opts.HTTPPort, opts.StoreDir, opts.NoSigs, opts.NoLog = "127.0.0.1", -1, 0, t.TempDir(), true, true
	ns, err := server.NewServer(opts)
	require.NoError(t, err)
	go ns.Start()
	require.True(t, ns.ReadyForConnections(10*time.Second))
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return func(user string) string {
		u, err := url.Parse(ns.ClientURL())
		require.NoError(t, err)
		u.User = url.UserPassword(user, passwords[user])
		return u.String()
	}
}

// The stack runs under deploy/nats/pollgrid.conf, the example server config
// of docs/operate.md: the services work, an operator may call every verb, a
// viewer only list and status, and a consumer none.
func TestAdminUnderTheExampleNATSPermissions(t *testing.T) {
	urlFor := exampleNATS(t)
	// A denied request gets no answer: the server refuses the publish, so
	// the client waits out its timeout. Keep it short for the denied ones.
	clientFor := func(user string, timeout time.Duration, opts ...nats.Option) *admin.Client {
		nc, err := nats.Connect(urlFor(user), opts...)
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		return admin.NewClient(nc, timeout)
	}

	up := harness.NewUpstream(t, fixtureBody(t))
	startStackOn(t, urlFor("pollgrid"), nil, connector{name: "hourly", interval: "1h", upstream: up})
	ctx := context.Background()
	polledAtLeast(t, up, 1)

	operator := clientFor("operator", 20*time.Second)
	_, err := operator.Pause(ctx, "hourly", "operator")
	require.NoError(t, err)
	tr, err := operator.Trigger(ctx, "hourly")
	require.NoError(t, err, "a trigger runs even while paused")
	assert.Equal(t, "success", tr.Outcome)
	replies, missing, err := operator.Reload(ctx)
	require.NoError(t, err)
	assert.Len(t, replies, 3)
	assert.Empty(t, missing)

	// The operator changes the catalog through the scheduler's verbs.
	def, err := operator.Get(ctx, admin.KindConnector, "hourly")
	require.NoError(t, err)
	changed := strings.Replace(def.Value, `"1h"`, `"2h"`, 1)
	require.NotEqual(t, def.Value, changed)
	applied, err := operator.Apply(ctx, admin.ApplyRequest{Connectors: []json.RawMessage{json.RawMessage(changed)}})
	require.NoError(t, err)
	assert.Len(t, applied.Changed, 1)

	viewer := clientFor("viewer", time.Second)
	st, err := viewer.Status(ctx, "hourly")
	require.NoError(t, err)
	assert.True(t, st.Paused)
	_, err = viewer.List(ctx, admin.ListRequest{})
	require.NoError(t, err)
	got, err := viewer.Get(ctx, admin.KindConnector, "hourly")
	require.NoError(t, err, "a viewer may read a definition")
	assert.Contains(t, got.Value, `"2h"`)
	hist, err := viewer.History(ctx, admin.KindConnector, "hourly")
	require.NoError(t, err, "and its history")
	assert.NotEmpty(t, hist.Revisions)
	_, err = viewer.AllDefinitions(ctx)
	require.NoError(t, err, "and list the definitions")
	for verb, call := range map[string]func() error{
		admin.VerbResume:  func() error { _, err := viewer.Resume(ctx, "hourly"); return err },
		admin.VerbTrigger: func() error { _, err := viewer.Trigger(ctx, "hourly"); return err },
		admin.VerbReset:   func() error { _, err := viewer.Reset(ctx, "hourly", "hourly"); return err },
		admin.VerbApply: func() error {
			_, err := viewer.Apply(ctx, admin.ApplyRequest{Connectors: []json.RawMessage{json.RawMessage(def.Value)}})
			return err
		},
		admin.VerbRollback: func() error { _, err := viewer.Rollback(ctx, admin.RollbackRequest{Name: "hourly"}); return err },
		admin.VerbDelete: func() error {
			_, err := viewer.Delete(ctx, []admin.Ref{{Kind: admin.KindConnector, Name: "hourly"}})
			return err
		},
	} {
		assert.Error(t, call(), "a viewer may not %s", verb)
	}
	got, err = operator.Get(ctx, admin.KindConnector, "hourly")
	require.NoError(t, err)
	assert.Contains(t, got.Value, `"2h"`, "the viewer's apply, rollback and delete changed nothing")
	_, err = clientFor("consumer", time.Second, consumerInbox).Status(ctx, "hourly")
	assert.Error(t, err, "a consumer may not use the admin API")

	st, err = operator.Status(ctx, "hourly")
	require.NoError(t, err)
	assert.True(t, st.Paused, "the viewer's resume changed nothing")
	assert.EqualValues(t, 0, st.Generation, "nor did its reset")
	assert.EqualValues(t, 2, up.Requests.Load(), "one first poll and the operator's trigger, none from the viewer")
}

// consumerInbox is the inbox prefix the example config gives the consumer
// user: it may not read the replies others get on _INBOX.>.
var consumerInbox = nats.CustomInboxPrefix("_INBOX_consumer")

// Data-loss detection works under the example permissions: the services,
// connected as the pollgrid user, keep Redis's epoch in the key-value
// bucket, notice Redis losing its data and report it once, and no service
// logs a refusal (a permissions violation) or a failed check.
func TestRedisDataLossIsDetectedUnderTheExampleNATSPermissions(t *testing.T) {
	urlFor := exampleNATS(t)
	redisServer := redistest.Start(t)
	up := harness.NewUpstream(t, fixtureBody(t))
	logs := &harness.SyncBuffer{}
	env := map[string]string{
		"NATS_URL":        urlFor("pollgrid"),
		"REDIS_URL":       redisServer.URL(),
		"CONNECTORS_FILE": harness.WriteFile(t, "connectors.json", configJSON(connector{name: "hourly", interval: "1h", upstream: up})),
		"LOG_LEVEL":       "info",
	}
	// harness.Start fills in HTTP_ADDR: each service gets its own copy.
	envWith := func(k, v string) map[string]string {
		out := map[string]string{}
		for key, val := range env {
			out[key] = val
		}
		out[k] = v
		return out
	}
	var services []string
	for _, start := range []struct {
		svc service.Service
		env map[string]string
	}{
		{aggregatord.Service, envWith("LOG_LEVEL", "info")},
		{workerd.Service, envWith("WORKER_ID", "w1")},
		{schedulerd.Service, envWith("SCHEDULER_ID", "s1")},
	} {
		services = append(services, harness.Start(t, start.svc, start.env, service.WithLogOutput(logs)).HTTP)
	}
	polledAtLeast(t, up, 1)

	_, js := harness.Connect(t, urlFor("pollgrid"))
	ctx := context.Background()
	var kv jetstream.KeyValue
	revision := func() uint64 {
		if kv == nil {
			var err error
			if kv, err = js.KeyValue(ctx, "pollgrid"); err != nil {
				return 0
			}
		}
		entry, err := kv.Get(ctx, "redis-progress")
		if err != nil {
			return 0
		}
		return entry.Revision()
	}
	require.Eventually(t, func() bool { return revision() > 0 }, 30*time.Second, 100*time.Millisecond,
		"the services never stored Redis's progress in NATS:\n%s", logs)

	require.NoError(t, redisServer.Client(t).FlushAll(ctx).Err())
	sum := func(series string) float64 {
		var total float64
		for _, base := range services {
			if v := metricValue(t, base, series); v > 0 {
				total += v
			}
		}
		return total
	}
	require.Eventually(t, func() bool { return sum("pollgrid_redis_data_loss_total") == 1 }, 45*time.Second, 200*time.Millisecond,
		"the loss was not reported:\n%s", logs)
	// Every service checks again after the loss: still once.
	after := revision()
	require.Eventually(t, func() bool { return revision() >= after+3 }, 45*time.Second, 200*time.Millisecond)
	assert.Equal(t, 1.0, sum("pollgrid_redis_data_loss_total"), "reported once")
	assert.Zero(t, sum("pollgrid_redis_rollback_total"), "a loss is no rollback")
	for _, op := range []string{"redis", "kv_bucket", "kv_read", "kv_write"} {
		assert.Zero(t, sum(`pollgrid_redis_epoch_check_errors_total{op="`+op+`"}`), "failed checks (%s)", op)
	}
	text := logs.String()
	assert.Equal(t, 1, strings.Count(text, "Redis lost its data"), text)
	assert.NotContains(t, strings.ToLower(text), "permissions violation")
	assert.NotContains(t, text, "cannot check whether Redis lost its data")
}

// A consumer reads SIGNALS through its own durable consumer (named after
// its user) and nothing else: another user's consumer it may neither
// delete, read, change nor list, and it cannot read the replies others get.
func TestConsumerUsesOnlyItsOwnConsumerUnderTheExampleNATSPermissions(t *testing.T) {
	urlFor := exampleNATS(t)
	ctx := context.Background()
	_, svc := harness.Connect(t, urlFor("pollgrid"))
	require.NoError(t, bus.EnsureStreams(ctx, svc, bus.StreamOptions{Replicas: 1, DuplicateWindow: time.Minute}))
	_, err := svc.Publish(ctx, "signals.weather-noaa.az", []byte(`{"item_id":"a"}`))
	require.NoError(t, err)
	_, err = svc.CreateOrUpdateConsumer(ctx, bus.SignalsStream, jetstream.ConsumerConfig{
		Durable: "other-app", AckPolicy: jetstream.AckExplicitPolicy,
	})
	require.NoError(t, err)

	nc, err := nats.Connect(urlFor("consumer"), consumerInbox)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)

	// Its own: create, read, pull, acknowledge.
	own, err := js.CreateOrUpdateConsumer(ctx, bus.SignalsStream, jetstream.ConsumerConfig{
		Durable: "consumer", FilterSubject: "signals.>", AckPolicy: jetstream.AckExplicitPolicy,
	})
	require.NoError(t, err, "a consumer creates its own consumer")
	_, err = js.Consumer(ctx, bus.SignalsStream, "consumer")
	require.NoError(t, err, "and reads it")
	batch, err := own.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	var got []jetstream.Msg
	for m := range batch.Messages() {
		got = append(got, m)
	}
	require.NoError(t, batch.Error())
	require.Len(t, got, 1, "and pulls the signal")
	require.NoError(t, got[0].DoubleAck(ctx), "and acknowledges it")

	// Another user's: every attempt refused by the server.
	refused := func(what string, call func(ctx context.Context) error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		assert.Error(t, call(ctx), "a consumer may not %s", what)
	}
	refused("delete another's consumer", func(ctx context.Context) error { return js.DeleteConsumer(ctx, bus.SignalsStream, "other-app") })
	assert.ErrorIs(t, nc.LastError(), nats.ErrPermissionViolation)
	assert.Contains(t, nc.LastError().Error(), `$JS.API.CONSUMER.DELETE.SIGNALS.other-app`, "refused by the server, not lost")
	refused("read another's consumer", func(ctx context.Context) error {
		_, err := js.Consumer(ctx, bus.SignalsStream, "other-app")
		return err
	})
	refused("change another's consumer", func(ctx context.Context) error {
		_, err := js.CreateOrUpdateConsumer(ctx, bus.SignalsStream, jetstream.ConsumerConfig{Durable: "other-app", AckPolicy: jetstream.AckNonePolicy})
		return err
	})
	refused("create a consumer named in the request body only", func(ctx context.Context) error {
		_, err := nc.RequestWithContext(ctx, "$JS.API.CONSUMER.CREATE.SIGNALS",
			[]byte(`{"stream_name":"SIGNALS","config":{"name":"other-app","ack_policy":"none"}}`))
		return err
	})
	refused("list the consumers", func(ctx context.Context) error {
		_, err := nc.RequestWithContext(ctx, "$JS.API.CONSUMER.NAMES.SIGNALS", nil)
		return err
	})
	refused("pull from another's consumer", func(ctx context.Context) error {
		_, err := nc.RequestWithContext(ctx, "$JS.API.CONSUMER.MSG.NEXT.SIGNALS.other-app", []byte(`{"batch":1,"no_wait":true}`))
		return err
	})
	snoop, err := nc.SubscribeSync("_INBOX.>")
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
	assert.Eventually(t, func() bool {
		err := nc.LastError()
		return err != nil && strings.Contains(err.Error(), `Subscription to "_INBOX.>"`)
	}, 5*time.Second, 20*time.Millisecond, "a consumer may not read the replies others get")
	_ = snoop.Unsubscribe()

	other, err := svc.Consumer(ctx, bus.SignalsStream, "other-app")
	require.NoError(t, err, "the other consumer is still there")
	assert.Equal(t, jetstream.AckExplicitPolicy, other.CachedInfo().Config.AckPolicy, "unchanged")
	info, err := own.Info(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 1, info.AckFloor.Consumer, "its own consumer moved on")
}
