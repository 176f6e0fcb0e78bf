package admin_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/admin"
)

func connect(t *testing.T) *nats.Conn {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	require.NoError(t, err)
	go ns.Start()
	require.True(t, ns.ReadyForConnections(10*time.Second))
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

func serve(t *testing.T, nc *nats.Conn, service, instance string, verbs map[string]admin.Handler) *admin.Server {
	t.Helper()
	srv, err := admin.NewServer(nc, admin.ServerConfig{Service: service, Instance: instance, Version: "test",
		Redact: strings.NewReplacer("hunter2", "[REDACTED]").Replace})
	require.NoError(t, err)
	for verb, h := range verbs {
		require.NoError(t, srv.Handle(verb, h))
	}
	require.NoError(t, srv.HandleEach(admin.VerbReload, func(context.Context, []byte) (any, error) {
		return admin.ReloadReply{Service: service, Replica: instance, Instance: srv.ID(), OK: true}, nil
	}))
	t.Cleanup(func() { _ = srv.Stop() })
	return srv
}

// Replies are JSON with every string redacted; errors keep their code and
// message; a panic is a 500 and the service goes on; unknown request fields
// are refused.
func TestServerRepliesErrorsAndRedaction(t *testing.T) {
	nc := connect(t)
	var calls atomic.Int32
	serve(t, nc, "aggregator", "a1", map[string]admin.Handler{
		admin.VerbStatus: func(_ context.Context, data []byte) (any, error) {
			calls.Add(1)
			var req admin.NameRequest
			if err := admin.Decode(data, &req); err != nil {
				return nil, err
			}
			switch req.Name {
			case "missing":
				return nil, admin.Errorf(admin.CodeNotFound, "no connector named %q (the password is hunter2)", req.Name)
			case "boom":
				panic("boom")
			}
			return admin.Status{Connector: admin.Connector{Name: req.Name, LastError: "token hunter2 refused"}}, nil
		},
	})
	c := admin.NewClient(nc, 5*time.Second)
	ctx := context.Background()

	st, err := c.Status(ctx, "noaa")
	require.NoError(t, err)
	assert.Equal(t, "noaa", st.Name)
	assert.Equal(t, "token [REDACTED] refused", st.LastError)

	_, err = c.Status(ctx, "missing")
	var e *admin.Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, admin.CodeNotFound, e.Code)
	assert.Equal(t, `no connector named "missing" (the password is [REDACTED])`, e.Message)

	_, err = c.Status(ctx, "boom")
	require.ErrorAs(t, err, &e)
	assert.Equal(t, admin.CodeInternal, e.Code)
	_, err = c.Status(ctx, "noaa")
	assert.NoError(t, err, "a panic does not take the service down")

	msg, err := nc.Request(admin.Subject(admin.VerbStatus), []byte(`{"nmae": "typo"}`), 5*time.Second)
	require.NoError(t, err)
	assert.Equal(t, "400", msg.Header.Get(micro.ErrorCodeHeader))
	assert.Contains(t, string(msg.Data), "nmae")
	assert.EqualValues(t, 5, calls.Load(), "the typo never reached past Decode, but the handler was called")

	_, err = c.Pause(ctx, "x", "me")
	assert.True(t, errors.Is(err, admin.ErrNoService), "%v", err)
	assert.Contains(t, err.Error(), "start a scheduler")
}

// reload reaches every instance, and the client waits for each one.
func TestReloadGathersEveryInstance(t *testing.T) {
	nc := connect(t)
	serve(t, nc, "scheduler", "s1", map[string]admin.Handler{admin.VerbPause: func(context.Context, []byte) (any, error) { return nil, nil }})
	serve(t, nc, "worker", "w1", nil)
	serve(t, nc, "worker", "w2", nil)
	c := admin.NewClient(nc, 5*time.Second)

	infos, err := c.Instances(context.Background(), 200*time.Millisecond)
	require.NoError(t, err)
	assert.Len(t, infos, 3)
	replies, missing, err := c.Reload(context.Background())
	require.NoError(t, err)
	assert.Empty(t, missing)
	var replicas []string
	for _, r := range replies {
		replicas = append(replicas, r.Service+"/"+r.Replica)
	}
	assert.ElementsMatch(t, []string{"scheduler/s1", "worker/w1", "worker/w2"}, replicas)
}
