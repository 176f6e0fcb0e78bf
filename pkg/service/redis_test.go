package service

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/redistest"
)

func TestRedisURLForms(t *testing.T) {
	tests := []struct {
		name, url string
		mode      string
		addrs     []string
		master    string
		db        int
		user      string
		password  string
		sentinel  string // sentinel password
	}{
		{name: "single node", url: "redis://:pw@10.0.0.1:6380/2", mode: "single"},
		{name: "sentinel", url: "redis-sentinel://app:pw@s1:26379,s2:26379,s3:26379/mymaster/3", mode: "sentinel",
			addrs: []string{"s1:26379", "s2:26379", "s3:26379"}, master: "mymaster", db: 3, user: "app", password: "pw", sentinel: "pw"},
		{name: "sentinel with its own password", url: "rediss-sentinel://:pw@s1:26379/mymaster?sentinel_password=spw", mode: "sentinel",
			addrs: []string{"s1:26379"}, master: "mymaster", password: "pw", sentinel: "spw"},
		{name: "cluster", url: "redis-cluster://:pw@n1:7000,n2:7001?read_timeout=2s", mode: "cluster",
			addrs: []string{"n1:7000", "n2:7001"}, password: "pw", sentinel: "pw"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseRedisURL(tt.url)
			require.NoError(t, err)
			assert.Equal(t, tt.mode, got.mode)
			if tt.mode == "single" {
				assert.Equal(t, "10.0.0.1:6380", got.single.Addr)
				assert.Equal(t, 2, got.single.DB)
				return
			}
			assert.Equal(t, tt.addrs, got.addrs)
			assert.Equal(t, tt.master, got.master)
			assert.Equal(t, tt.db, got.db)
			assert.Equal(t, tt.user, got.username)
			assert.Equal(t, tt.password, got.password)
			assert.Equal(t, tt.sentinel, got.sentinelPassword)
		})
	}
}

func TestRedisURLErrorsNameTheFixAndNoSecret(t *testing.T) {
	tests := []struct{ url, want string }{
		{"localhost:6379", "not a URL"},
		{"http://x:6379", `unknown scheme "http"`},
		{"redis-sentinel://:s3cret@s1:26379", "names its master"},
		{"redis-sentinel://:s3cret@s1/mymaster", `"s1" is not a host:port`},
		{"redis-cluster://:s3cret@n1:7000/0", "has no databases"},
		{"redis-cluster://:s3cret@n1:7000?pool=3", `unknown option "pool"`},
		{"redis://:s3cret@h:6379/x", "REDIS_URL: "},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			_, err := parseRedisURL(tt.url)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "s3cret")
		})
	}
}

func TestRedisClientSettingsAreChosen(t *testing.T) {
	env := config.MapEnv(map[string]string{"WORKER_CONCURRENCY": "16"})
	rdb, secrets, err := NewRedisClient("worker", env, "redis://:pw@127.0.0.1:6379/0")
	require.NoError(t, err)
	defer rdb.Close()
	o := rdb.(*redis.Client).Options()
	assert.True(t, o.ContextTimeoutEnabled, "context deadlines honoured")
	assert.Equal(t, 0, o.MaxRetries, "no command retried (-1 is stored as 0)")
	assert.Equal(t, 36, o.PoolSize, "two connections per poll slot and room")
	assert.Equal(t, 36, o.MaxActiveConns)
	assert.Equal(t, time.Second, o.PoolTimeout)
	assert.Equal(t, 2*time.Second, o.DialTimeout)
	assert.Equal(t, 5*time.Second, o.ReadTimeout)
	assert.Equal(t, "pollgrid-worker", o.ClientName)
	assert.Equal(t, []string{"pw"}, secrets)

	rdb, _, err = NewRedisClient("scheduler", config.MapEnv(map[string]string{"REDIS_POOL_SIZE": "3"}), "redis://127.0.0.1:6379/0?read_timeout=1s")
	require.NoError(t, err)
	defer rdb.Close()
	o = rdb.(*redis.Client).Options()
	assert.Equal(t, 3, o.PoolSize)
	assert.Equal(t, time.Second, o.ReadTimeout, "the URL's own setting wins")

	rdb, _, err = NewRedisClient("aggregator", config.MapEnv(nil), "redis-cluster://n1:7000,n2:7000")
	require.NoError(t, err)
	defer rdb.Close()
	co := rdb.(*redis.ClusterClient).Options()
	assert.Equal(t, 0, co.MaxRedirects, "a cluster client neither follows MOVED nor retries (-1 is stored as 0)")
	assert.Equal(t, -1, co.MaxRetries)
	assert.True(t, co.ContextTimeoutEnabled)

	_, _, err = NewRedisClient("worker", config.MapEnv(map[string]string{"REDIS_CA": "/nope.pem"}), "redis://127.0.0.1:6379")
	assert.ErrorContains(t, err, "write rediss:// instead of redis://")
	_, _, err = NewRedisClient("worker", config.MapEnv(map[string]string{"REDIS_CA": "/nope.pem"}), "rediss://127.0.0.1:6379")
	assert.ErrorContains(t, err, "REDIS_CA: open /nope.pem: no such file or directory (mount the CA certificate there, or unset REDIS_CA)")
	_, _, err = NewRedisClient("worker", config.MapEnv(map[string]string{"REDIS_CERT": "/c.pem"}), "rediss://127.0.0.1:6379")
	assert.ErrorContains(t, err, "REDIS_CERT and REDIS_KEY go together")
}

// A stalled Redis (SIGSTOP: it accepts connections and reads nothing)
// fails a call at its caller's deadline, not at the client's read timeout.
func TestRedisStallFailsAtTheCallersDeadline(t *testing.T) {
	srv := redistest.Start(t)
	rdb, _, err := NewRedisClient("worker", config.MapEnv(nil), srv.URL())
	require.NoError(t, err)
	defer rdb.Close()
	incr := redis.NewScript(`return redis.call("INCR", KEYS[1])`)
	require.NoError(t, incr.Load(t.Context(), rdb).Err())

	srv.Freeze()
	defer srv.Thaw()
	// Each call ends at its caller's deadline (300 ms), long before the
	// client's own read timeout (5 s) would.
	for name, call := range map[string]func(context.Context) error{
		"a script": func(ctx context.Context) error { return incr.Run(ctx, rdb, []string{"counter"}).Err() },
		"a ping":   func(ctx context.Context) error { return rdb.Ping(ctx).Err() },
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		start := time.Now()
		err = call(ctx)
		elapsed := time.Since(start)
		cancel()
		var netErr interface{ Timeout() bool }
		require.True(t, errors.As(err, &netErr) && netErr.Timeout(), "%s fails with a timeout during the stall: %v", name, err)
		assert.Less(t, elapsed, 2*time.Second, "%s ended at its caller's deadline", name)
	}
}

// A script whose answer is lost (the connection drops after Redis ran it)
// is not sent again: its effect is done, and a second run would take a
// second fencing token or apply a commit twice.
func TestRedisScriptIsNotRetriedWhenItsAnswerIsLost(t *testing.T) {
	srv := redistest.Start(t)
	proxy := newReplyDropper(t, srv.Addr(), "EVALSHA")
	rdb, _, err := NewRedisClient("worker", config.MapEnv(nil), "redis://"+proxy+"/0")
	require.NoError(t, err)
	defer rdb.Close()
	incr := redis.NewScript(`return redis.call("INCR", KEYS[1])`)
	require.NoError(t, incr.Load(t.Context(), srv.Client(t)).Err())

	err = incr.Run(t.Context(), rdb, []string{"counter"}).Err()
	require.Error(t, err, "the connection dropped before the answer")
	assert.Equal(t, "1", srv.Client(t).Get(t.Context(), "counter").Val(), "the script ran once, and was not sent again")
}

// newReplyDropper is a TCP proxy to addr that, on the first connection to
// send a command starting with verb, forwards the command, waits for
// Redis's answer and then closes the connection instead of passing it on.
func newReplyDropper(t *testing.T, addr, verb string) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	var dropped atomic.Bool
	go func() {
		for {
			client, err := l.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", addr)
			if err != nil {
				_ = client.Close()
				continue
			}
			go func() {
				defer client.Close()
				defer server.Close()
				answered := make(chan struct{}, 1)
				var drop atomic.Bool
				go func() { // server -> client
					buf := make([]byte, 64<<10)
					for {
						n, err := server.Read(buf)
						if err != nil {
							return
						}
						if drop.Load() {
							answered <- struct{}{}
							return
						}
						if _, err := client.Write(buf[:n]); err != nil {
							return
						}
					}
				}()
				buf := make([]byte, 64<<10)
				for {
					n, err := client.Read(buf)
					if err != nil {
						return
					}
					if bytes.Contains(bytes.ToUpper(buf[:n]), []byte(verb)) && dropped.CompareAndSwap(false, true) {
						drop.Store(true)
						_, _ = server.Write(buf[:n])
						<-answered
						return // close both: the answer is lost
					}
					if _, err := server.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}
