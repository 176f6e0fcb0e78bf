package service

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/pkg/store"
)

// embeddedNATS starts an embedded NATS with JetStream on a random port;
// users (none: no authentication) restrict who may do what.
func embeddedNATS(t *testing.T, users ...*server.User) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true, Users: users,
	})
	require.NoError(t, err)
	go ns.Start()
	require.True(t, ns.ReadyForConnections(10*time.Second))
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// watcher is one service's epoch watch: its own NATS connection, its own
// Redis client, its own logs.
type watcher struct {
	*epochWatch
	logs *logBuffer
}

func newWatcher(t *testing.T, natsURL string, redisServer *redistest.Server) watcher {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	logs := &logBuffer{}
	rt := &Runtime{
		Env:     Env{StreamReplicas: 1, DuplicateWindow: 10 * time.Minute},
		Logger:  slog.New(slog.NewJSONHandler(logs, nil)),
		Metrics: prometheus.NewRegistry(),
	}
	w := newEpochWatch(rt)
	w.js, w.redis = js, store.New(redisServer.Client(t), store.Options{})
	return watcher{epochWatch: w, logs: logs}
}

// snapshot copies every key of Redis (DUMP), as a backup would.
func snapshot(t *testing.T, rdb *redis.Client) map[string]string {
	t.Helper()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	require.NotEmpty(t, keys)
	out := map[string]string{}
	for _, k := range keys {
		out[k], err = rdb.Dump(ctx, k).Result()
		require.NoError(t, err)
	}
	return out
}

// restore replaces Redis's data with a snapshot, as restoring a backup would.
func restore(t *testing.T, rdb *redis.Client, snap map[string]string) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, rdb.FlushAll(ctx).Err())
	for k, v := range snap {
		require.NoError(t, rdb.RestoreReplace(ctx, k, 0, v).Err())
	}
}

// checkAll runs one check of every watcher at the same time.
func checkAll(ws ...watcher) []verdict {
	out := make([]verdict, len(ws))
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Go(func() { out[i] = w.check(context.Background()) })
	}
	wg.Wait()
	return out
}

func reported(ws ...watcher) (losses, rollbacks float64) {
	for _, w := range ws {
		losses += testutil.ToFloat64(w.losses)
		rollbacks += testutil.ToFloat64(w.rollbacks)
	}
	return losses, rollbacks
}

// Two services checking at the same time: plain progress never reads as a
// loss or a rollback; a Redis restored from an older snapshot is reported
// once as a rollback, and a Redis that lost everything once as a data loss,
// each with what it means; afterwards the checks find plain progress again.
func TestEpochWatchReportsRollbackAndLossOnce(t *testing.T) {
	ns := embeddedNATS(t)
	redisServer := redistest.Start(t)
	rdb := redisServer.Client(t)
	a, b := newWatcher(t, ns.ClientURL(), redisServer), newWatcher(t, ns.ClientURL(), redisServer)

	first := checkAll(a, b)
	assert.Contains(t, first, verdictFirst, "one of them remembered the first progress")
	for range 20 {
		for _, v := range checkAll(a, b) {
			assert.Contains(t, []verdict{verdictProgress, verdictSkipped}, v, "plain progress")
		}
	}
	snap := snapshot(t, rdb)
	for range 5 {
		checkAll(a, b)
	}
	losses, rollbacks := reported(a, b)
	require.Zero(t, losses)
	require.Zero(t, rollbacks)

	restore(t, rdb, snap)
	var verdicts []verdict
	for range 5 {
		verdicts = append(verdicts, checkAll(a, b)...)
	}
	losses, rollbacks = reported(a, b)
	assert.Zero(t, losses, "a rollback is not a data loss")
	assert.Equal(t, 1.0, rollbacks, "reported once, by one of the two: %v", verdicts)
	logs := a.logs.String() + b.logs.String()
	assert.Equal(t, 1, strings.Count(logs, "Redis went back in time"), logs)
	assert.Contains(t, logs, `"level":"ERROR"`)
	assert.Contains(t, logs, "restore only Redis's latest data")
	assert.Contains(t, logs, `"progress_before"`)

	require.NoError(t, rdb.FlushAll(context.Background()).Err())
	for range 5 {
		checkAll(a, b)
	}
	losses, rollbacks = reported(a, b)
	assert.Equal(t, 1.0, losses, "the data loss, once")
	assert.Equal(t, 1.0, rollbacks, "and no rollback with it")
	for _, v := range checkAll(a, b) {
		assert.Contains(t, []verdict{verdictProgress, verdictSkipped}, v, "plain progress again")
	}
}

// Many services, each checking on its own rhythm, over a long run: never a
// false report.
func TestEpochWatchConcurrentServicesNeverReportFalsely(t *testing.T) {
	ns := embeddedNATS(t)
	redisServer := redistest.Start(t)
	var ws []watcher
	for range 4 {
		ws = append(ws, newWatcher(t, ns.ClientURL(), redisServer))
	}
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(func() {
			for range 40 {
				assert.NotContains(t, []verdict{verdictLoss, verdictRollback, verdictUnknown}, w.check(context.Background()))
			}
		})
	}
	wg.Wait()
	losses, rollbacks := reported(ws...)
	assert.Zero(t, losses)
	assert.Zero(t, rollbacks)
}

// An upgrade from a pollgrid that kept only the epoch (under redis-epoch)
// still notices a loss across it, and otherwise starts quietly.
func TestEpochWatchReadsTheEpochOfEarlierVersions(t *testing.T) {
	ns := embeddedNATS(t)
	redisServer := redistest.Start(t)
	w := newWatcher(t, ns.ClientURL(), redisServer)
	ctx := context.Background()
	kv, err := w.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: stateBucket, History: 1})
	require.NoError(t, err)

	// The epoch Redis has: no report.
	p, err := store.New(redisServer.Client(t), store.Options{}).Progress(ctx)
	require.NoError(t, err)
	_, err = kv.Put(ctx, legacyEpochKey, []byte(p.Epoch))
	require.NoError(t, err)
	assert.Equal(t, verdictProgress, w.check(ctx))

	// Another epoch: the loss happened across the upgrade.
	require.NoError(t, kv.Delete(ctx, progressKey))
	_, err = kv.Put(ctx, legacyEpochKey, []byte("epoch-before-the-upgrade"))
	require.NoError(t, err)
	assert.Equal(t, verdictLoss, w.check(ctx))
	assert.Equal(t, verdictProgress, w.check(ctx))
	losses, rollbacks := reported(w)
	assert.Equal(t, 1.0, losses)
	assert.Zero(t, rollbacks)
}

// A NATS user that may not write to the bucket: every failed check is
// counted, the log says it once, with the fix, and says when it works again.
func TestEpochWatchSaysWhyItCannotCheck(t *testing.T) {
	denied := &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{"$JS.API.>", "_INBOX.>"}},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
	}
	ns := embeddedNATS(t,
		&server.User{Username: "denied", Password: "pw", Permissions: denied},
		&server.User{Username: "admin", Password: "pw"})
	redisServer := redistest.Start(t)
	w := newWatcher(t, "nats://denied:pw@"+ns.Addr().String(), redisServer)
	w.timeout = 500 * time.Millisecond // a refused publish gets no answer: the check waits this out
	for range 3 {
		assert.Equal(t, verdictUnknown, w.check(context.Background()))
	}
	assert.Equal(t, 3.0, testutil.ToFloat64(w.errors.WithLabelValues(epochOpKVWrite)))
	assert.Zero(t, testutil.ToFloat64(w.errors.WithLabelValues(epochOpKVRead)))
	logs := w.logs.String()
	assert.Equal(t, 1, strings.Count(logs, "cannot check whether Redis lost its data"), logs)
	assert.Contains(t, logs, `"level":"WARN"`)
	assert.Contains(t, logs, "needs to publish to $KV.pollgrid.")

	// With the right to write: it works again, and says so.
	w.js, w.kv = newWatcher(t, "nats://admin:pw@"+ns.Addr().String(), redisServer).js, nil
	assert.Contains(t, []verdict{verdictFirst, verdictProgress}, w.check(context.Background()))
	assert.Contains(t, w.logs.String(), "works again")

	// Redis away: counted and said too.
	redisServer.Kill()
	assert.Equal(t, verdictUnknown, w.check(context.Background()))
	assert.Equal(t, 1.0, testutil.ToFloat64(w.errors.WithLabelValues(epochOpRedis)))
	assert.Contains(t, w.logs.String(), `"op":"redis"`)
}
