package redistest_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/redistest"
)

func TestStartAnswersAndIsFresh(t *testing.T) {
	ctx := context.Background()
	a := redistest.Start(t)
	b := redistest.Start(t)
	require.NotEqual(t, a.Addr(), b.Addr(), "each test gets its own server")

	ra, rb := a.Client(t), b.Client(t)
	require.NoError(t, ra.Set(ctx, "k", "a", 0).Err())
	assert.Equal(t, redis.Nil, rb.Get(ctx, "k").Err(), "servers share nothing")

	opts, err := redis.ParseURL(a.URL())
	require.NoError(t, err)
	assert.Equal(t, a.Addr(), opts.Addr)
	viaURL := redis.NewClient(opts)
	t.Cleanup(func() { _ = viaURL.Close() })
	assert.Equal(t, "a", viaURL.Get(ctx, "k").Val())

	cfg, err := ra.ConfigGet(ctx, "save").Result()
	require.NoError(t, err)
	assert.Equal(t, "", cfg["save"], "persistence is off")
}

func TestStopKillRestart(t *testing.T) {
	for _, tc := range []struct {
		name string
		cut  func(*redistest.Server)
	}{
		{name: "stop", cut: (*redistest.Server).Stop},
		{name: "kill", cut: (*redistest.Server).Kill},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			srv := redistest.Start(t)
			rdb := srv.Client(t)
			require.NoError(t, rdb.Set(ctx, "k", "v", 0).Err())

			tc.cut(srv)
			once := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
			t.Cleanup(func() { _ = once.Close() })
			assert.Error(t, once.Ping(ctx).Err(), "no server after %s", tc.name)
			tc.cut(srv) // a second cut is a no-op

			srv.Restart()
			require.Eventually(t, func() bool { return rdb.Ping(ctx).Err() == nil },
				readyWait, pollEvery, "the same client reconnects to the restarted server")
			assert.Equal(t, redis.Nil, rdb.Get(ctx, "k").Err(), "a restarted server is empty")
		})
	}
}

func TestMissingBinaryFails(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	rec := &fatalRecorder{TB: t}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		redistest.Start(rec)
	}()
	wg.Wait()
	assert.True(t, rec.failed, "a missing redis-server fails the test, it does not skip it")
	assert.Equal(t, redistest.NotFoundMessage, rec.msg)
	assert.Contains(t, rec.msg, "apt-get install redis-server")
}

// fatalRecorder stands in for the test to catch Start's failure.
type fatalRecorder struct {
	testing.TB
	failed bool
	msg    string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatal(args ...any) {
	r.failed, r.msg = true, fmt.Sprint(args...)
	runtime.Goexit()
}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *fatalRecorder) Skip(args ...any) {
	r.msg = "skipped: " + fmt.Sprint(args...)
	runtime.Goexit()
}

const (
	readyWait = 5 * time.Second
	pollEvery = 10 * time.Millisecond
)
