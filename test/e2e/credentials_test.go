package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/history"
	"github.com/pollgrid/pollgrid/pkg/service"
	"github.com/pollgrid/pollgrid/pkg/store"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
	"github.com/pollgrid/pollgrid/services/aggregator/aggregatord"
	"github.com/pollgrid/pollgrid/services/scheduler/schedulerd"
	"github.com/pollgrid/pollgrid/services/worker/workerd"
	"github.com/pollgrid/pollgrid/test/harness"
)

// securedNATS runs a nats-server that accepts only TLS connections with a
// client certificate from ca, and only the user of the nkey whose seed it
// returns (in a file).
func securedNATS(t *testing.T, ca *harness.CA) (*harness.NATSServer, string) {
	user, err := nkeys.CreateUser()
	require.NoError(t, err)
	seed, err := user.Seed()
	require.NoError(t, err)
	public, err := user.PublicKey()
	require.NoError(t, err)
	server := ca.Server(t, "nats")
	ns := harness.StartNATSServerConfig(t, harness.NATSConfig{TLS: true, Extra: fmt.Sprintf(`
tls { cert_file: %q, key_file: %q, ca_file: %q, verify: true, timeout: 2 }
authorization { users: [ { nkey: %q } ] }`, server.CertFile, server.KeyFile, ca.CertFile, public)})
	return ns, harness.WriteFile(t, "pollgrid.nk", string(seed))
}

// The whole stack against a nats-server that requires TLS, a client
// certificate and an nkey, and a redis-server that requires TLS, a client
// certificate and an ACL user limited to pollgrid's keys.
func TestStackWithTLSNkeyAndRedisACL(t *testing.T) {
	const redisPassword = "redis-acl-s3cret"
	ca := harness.NewCA(t)
	ns, seedFile := securedNATS(t, ca)
	redis := harness.StartRedisServer(t, harness.RedisOptions{TLS: ca,
		Users: []string{"pollgrid on >" + redisPassword + " ~pollgrid:* &* +@all"}})
	client := ca.Client(t, "pollgrid")

	body, err := os.ReadFile(fixture)
	require.NoError(t, err)
	upstream := harness.NewUpstream(t, body)
	env := map[string]string{
		"NATS_URL": ns.URL, "NATS_NKEY": seedFile, "NATS_CA": ca.CertFile, "NATS_CERT": client.CertFile, "NATS_KEY": client.KeyFile,
		"REDIS_URL": redis.URL("pollgrid", redisPassword), "REDIS_CA": ca.CertFile, "REDIS_CERT": client.CertFile, "REDIS_KEY": client.KeyFile,
		"CONNECTORS_FILE": harness.WriteFile(t, "connectors.json", connectorsJSON(upstream.URL, "noaa-tls")),
		"LOG_LEVEL":       "debug", "WORKER_ACK_WAIT": "3s",
	}
	with := func(over map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range env {
			m[k] = v
		}
		for k, v := range over {
			m[k] = v
		}
		return m
	}
	// The aggregator takes its NATS settings from a nats CLI context instead.
	home := t.TempDir()
	require.NoError(t, os.MkdirAll(home+"/.config/nats/context", 0o700))
	require.NoError(t, os.WriteFile(home+"/.config/nats/context/pollgrid.json", []byte(fmt.Sprintf(
		`{"description": "test", "url": %q, "nkey": %q, "ca": %q, "cert": %q, "key": %q}`,
		ns.URL, seedFile, ca.CertFile, client.CertFile, client.KeyFile)), 0o600))
	aggEnv := with(map[string]string{"NATS_CONTEXT": "pollgrid", "HOME": home})
	for _, k := range []string{"NATS_URL", "NATS_NKEY", "NATS_CA", "NATS_CERT", "NATS_KEY"} {
		delete(aggEnv, k)
	}

	// A subscriber with the same credentials, there before the first poll.
	nkeyOpt, err := nats.NkeyOptionFromSeed(seedFile)
	require.NoError(t, err)
	nc, err := nats.Connect(ns.URL, nkeyOpt, nats.RootCAs(ca.CertFile), nats.ClientCert(client.CertFile, client.KeyFile))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	sigs := harness.CollectSignals(t, nc)

	logs := &harness.SyncBuffer{}
	agg := harness.Start(t, aggregatord.Service, aggEnv, service.WithLogOutput(logs))
	worker := harness.Start(t, workerd.Service, with(nil), service.WithLogOutput(logs))
	harness.Start(t, schedulerd.Service, with(nil), service.WithLogOutput(logs))

	// A signal arrives through TLS and the nkey.
	require.Eventually(t, func() bool { return len(sigs.All()) >= 1 }, 30*time.Second, 50*time.Millisecond, "no signal through TLS and the nkey")
	require.Eventually(t, func() bool {
		code, body := httpGet(t, agg.HTTP+"/metrics/connectors/noaa-tls")
		return code == 200 && !strings.Contains(body, `"successes":0`)
	}, 30*time.Second, 100*time.Millisecond, "the aggregator counted the polls through Redis TLS and ACL")
	code, _ := httpGet(t, worker.HTTP+"/readyz")
	assert.Equal(t, 200, code)

	// The ACL user's keys are pollgrid's: the state is there.
	admin := redis.Client()
	defer admin.Close()
	keys, err := admin.Keys(context.Background(), "pollgrid:{noaa-tls}:*").Result()
	require.NoError(t, err)
	assert.NotEmpty(t, keys)

	seed, err := os.ReadFile(seedFile)
	require.NoError(t, err)
	assert.NotContains(t, logs.String(), redisPassword)
	assert.NotContains(t, logs.String(), string(seed))
}

// Without the CA, or with another nkey, a service says what is wrong and
// which setting fixes it.
func TestNATSCredentialErrorsNameTheCause(t *testing.T) {
	ca := harness.NewCA(t)
	ns, seedFile := securedNATS(t, ca)
	client := ca.Client(t, "pollgrid")
	other, err := nkeys.CreateUser()
	require.NoError(t, err)
	otherSeed, err := other.Seed()
	require.NoError(t, err)
	file := harness.WriteFile(t, "connectors.json", connectorsJSON("https://api.weather.gov", "noaa"))

	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"the server's CA is not trusted", map[string]string{"NATS_NKEY": seedFile, "NATS_CERT": client.CertFile, "NATS_KEY": client.KeyFile},
			"set NATS_CA to the CA certificate that signed it"},
		{"another nkey", map[string]string{"NATS_NKEY": harness.WriteFile(t, "other.nk", string(otherSeed)), "NATS_CA": ca.CertFile,
			"NATS_CERT": client.CertFile, "NATS_KEY": client.KeyFile}, "NATS refused our credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"NATS_URL": ns.URL, "REDIS_URL": "redis://127.0.0.1:1/0", "CONNECTORS_FILE": file, "HTTP_ADDR": harness.FreeAddr(t)}
			for k, v := range tt.env {
				env[k] = v
			}
			logs := &harness.SyncBuffer{}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				_, err := service.Start(ctx, workerd.Service, config.MapEnv(env), service.WithLogOutput(logs))
				done <- err
			}()
			require.Eventually(t, func() bool { return strings.Contains(logs.String(), "waiting for NATS JetStream") },
				30*time.Second, 50*time.Millisecond)
			cancel()
			err := <-done
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Contains(t, logs.String(), tt.want)
		})
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// REDIS_URL=redis-cluster://...: a connector's keys and Lua scripts stay in
// one slot, and the whole stack runs on a three-master Redis Cluster.
func TestStackOnRedisCluster(t *testing.T) {
	cluster := harness.StartRedisCluster(t, 3)
	body, err := os.ReadFile(fixture)
	require.NoError(t, err)
	upstream := harness.NewUpstream(t, body)
	ns := harness.NATS(t)
	names := []string{"noaa-a", "noaa-b", "noaa-c", "noaa-d"}
	env := map[string]string{
		"NATS_URL": ns.ClientURL(), "REDIS_URL": cluster.URL(), "LOG_LEVEL": "warn", "WORKER_ACK_WAIT": "3s",
		"CONNECTORS_FILE": harness.WriteFile(t, "connectors.json", connectorsJSON(upstream.URL, names...)),
	}
	with := func() map[string]string {
		m := map[string]string{}
		for k, v := range env {
			m[k] = v
		}
		return m
	}
	nc, _ := harness.Connect(t, ns.ClientURL())
	sigs := harness.CollectSignals(t, nc) // before the first poll, so no signal goes by unseen
	agg := harness.Start(t, aggregatord.Service, with())
	harness.Start(t, workerd.Service, with())
	sched := harness.Start(t, schedulerd.Service, with())
	for _, n := range names {
		require.Eventually(t, func() bool {
			code, body := httpGet(t, agg.HTTP+"/metrics/connectors/"+n)
			return code == 200 && !strings.Contains(body, `"successes":0`)
		}, 30*time.Second, 100*time.Millisecond, "%s polled, committed and counted on the cluster", n)
	}
	assert.GreaterOrEqual(t, len(sigs.All()), 2*len(names), "every connector's alerts signalled")
	assert.Eventually(t, func() bool { return metricLine(t, sched.HTTP, "pollgrid_scheduler_leader", "1") },
		15*time.Second, 50*time.Millisecond, "the leader lease works on the cluster")
	// The connectors' keys are spread over the masters.
	holding := 0
	for _, n := range cluster.Nodes {
		c := n.Client()
		keys, err := c.Keys(context.Background(), "pollgrid:{noaa-*}:state").Result()
		require.NoError(t, err)
		if len(keys) > 0 {
			holding++
		}
		_ = c.Close()
	}
	assert.GreaterOrEqual(t, holding, 2, "four connectors' keys live on more than one master")
}

// A connector's history keys (the head, three rings, the recent reports)
// share its hash tag, and the record script, which declares the metrics and
// the head alone, writes the others on a Redis Cluster too: two days of
// polls every 10 minutes close minutes, quarter-hours and days into every
// ring, and each resolution reads back what was recorded.
func TestHistoryOnRedisCluster(t *testing.T) {
	ctx := context.Background()
	cluster := harness.StartRedisCluster(t, 3)
	rdb, _, err := service.NewRedisClient("aggregator", func(string) (string, bool) { return "", false }, cluster.URL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = rdb.Close() })
	s := history.New(rdb, store.NewKeys(""))
	now := time.Now().UTC()
	names := []string{"noaa-a", "noaa-b", "noaa-c", "noaa-d"}
	// Every node says ok a moment after the first does.
	require.Eventually(t, func() bool {
		for _, name := range names {
			if rdb.Set(ctx, store.NewKeys("").Connector(name, "probe"), "1", time.Minute).Err() != nil {
				return false
			}
		}
		return true
	}, 30*time.Second, 50*time.Millisecond)
	const polls = 2 * 24 * 6
	for _, name := range names {
		var reports []*pollgridv1.PollReport
		for i := range polls {
			started := now.Add(-time.Duration(polls-i) * 10 * time.Minute)
			reports = append(reports, &pollgridv1.PollReport{Connector: name, ConnectorType: "weather-noaa",
				Outcome: pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS, StartedAt: timestamppb.New(started),
				Duration: durationpb.New(time.Second), ItemsFetched: 3})
		}
		for chunk := range slices.Chunk(reports, 50) {
			require.NoError(t, s.RecordReports(ctx, chunk), name)
		}
	}
	for _, name := range names {
		for res, want := range map[history.Resolution]int64{history.PerMinute: 6, history.PerQuarterHour: 144,
			history.PerHour: 144, history.PerDay: polls} {
			rollups, err := s.Rollups(ctx, name, res, now.Add(-res.Retention()), now.Add(time.Minute))
			require.NoError(t, err)
			var sum int64
			for _, r := range rollups {
				sum += r.Polls
			}
			// The first bucket may start before the window: an hour holds 6.
			assert.GreaterOrEqual(t, sum, want-1, "%s %s", name, res)
			assert.LessOrEqual(t, sum, want+6, "%s %s", name, res)
		}
		recent, err := s.Recent(ctx, name, 0)
		require.NoError(t, err)
		assert.Len(t, recent, history.RecentKept, name)
	}
}
