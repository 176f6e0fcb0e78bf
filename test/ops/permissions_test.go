package ops

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/test/harness"
)

// The stack runs under deploy/nats/pollgrid.conf, the example server config
// of docs/operate.md: the services work, an operator may call every verb, a
// viewer only list and status, and a consumer none.
func TestAdminUnderTheExampleNATSPermissions(t *testing.T) {
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
	t.Cleanup(ns.Shutdown)
	urlFor := func(user string) string {
		u, err := url.Parse(ns.ClientURL())
		require.NoError(t, err)
		u.User = url.UserPassword(user, passwords[user])
		return u.String()
	}
	// A denied request gets no answer: the server refuses the publish, so
	// the client waits out its timeout. Keep it short for the denied ones.
	clientFor := func(user string, timeout time.Duration) *admin.Client {
		nc, err := nats.Connect(urlFor(user))
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		return admin.NewClient(nc, timeout)
	}

	up := harness.NewUpstream(t, fixtureBody(t))
	startStackOn(t, urlFor("pollgrid"), nil, connector{name: "hourly", interval: "1h", upstream: up})
	ctx := context.Background()
	polledAtLeast(t, up, 1)

	operator := clientFor("operator", 20*time.Second)
	_, err = operator.Pause(ctx, "hourly", "operator")
	require.NoError(t, err)
	tr, err := operator.Trigger(ctx, "hourly")
	require.NoError(t, err, "a trigger runs even while paused")
	assert.Equal(t, "success", tr.Outcome)
	replies, missing, err := operator.Reload(ctx)
	require.NoError(t, err)
	assert.Len(t, replies, 3)
	assert.Empty(t, missing)

	viewer := clientFor("viewer", time.Second)
	st, err := viewer.Status(ctx, "hourly")
	require.NoError(t, err)
	assert.True(t, st.Paused)
	_, err = viewer.List(ctx, admin.ListRequest{})
	require.NoError(t, err)
	for verb, call := range map[string]func() error{
		admin.VerbResume:  func() error { _, err := viewer.Resume(ctx, "hourly"); return err },
		admin.VerbTrigger: func() error { _, err := viewer.Trigger(ctx, "hourly"); return err },
		admin.VerbReset:   func() error { _, err := viewer.Reset(ctx, "hourly", "hourly"); return err },
	} {
		assert.Error(t, call(), "a viewer may not %s", verb)
	}
	_, err = clientFor("consumer", time.Second).Status(ctx, "hourly")
	assert.Error(t, err, "a consumer may not use the admin API")

	st, err = operator.Status(ctx, "hourly")
	require.NoError(t, err)
	assert.True(t, st.Paused, "the viewer's resume changed nothing")
	assert.EqualValues(t, 0, st.Generation, "nor did its reset")
	assert.EqualValues(t, 2, up.Requests.Load(), "one first poll and the operator's trigger, none from the viewer")
}
