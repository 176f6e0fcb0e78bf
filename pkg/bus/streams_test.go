package bus

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every service ensures the streams at start. A stream that is already as
// wanted must read as such once nats-server has stored it (with its own
// spelling of defaults, such as -1 for "no limit"), or every start would
// update every stream, which races with consumers being created inside
// nats-server.
func TestStreamsAsStoredHaveTheWantedSettings(t *testing.T) {
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
	})
	require.NoError(t, err)
	go ns.Start()
	require.True(t, ns.ReadyForConnections(10*time.Second))
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err := nats.Connect(ns.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)

	ctx := context.Background()
	require.NoError(t, EnsureStreams(ctx, js, StreamOptions{}))
	for _, want := range StreamConfigs(StreamOptions{}) {
		st, err := js.Stream(ctx, want.Name)
		require.NoError(t, err)
		assert.True(t, sameSettings(st.CachedInfo().Config, want), "%s as stored differs from what is wanted: %+v", want.Name, st.CachedInfo().Config)
	}
}
