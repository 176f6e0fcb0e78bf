// Package ops tests the operator's side of pollgrid against a running stack
// (embedded NATS, a real redis-server, the services in process): the admin
// API's verbs, pollctl's commands, freshness and the status page.
package ops

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/services/aggregator/aggregatord"
	"github.com/pollgrid/pollgrid/services/scheduler/schedulerd"
	"github.com/pollgrid/pollgrid/services/worker/workerd"
	"github.com/pollgrid/pollgrid/test/harness"
)

const fixture = "../../pkg/connectors/weather-noaa/testdata/alerts_active_point_2024.json"

// connector is one weather-noaa connector of a test config, each polling
// its own upstream so a test can tell their polls apart.
type connector struct {
	name     string
	interval string
	upstream *harness.Upstream
	// userAgent is its config's user_agent; a default when empty.
	userAgent string
}

func configJSON(cs ...connector) string {
	var entries []string
	for _, c := range cs {
		entries = append(entries, fmt.Sprintf(`{"name": %q, "type": "weather-noaa", "interval": %q, "timeout": "900ms",
			"retries": {"max": 0}, "lease_ttl": "3s",
			"config": {"area": "AZ", "user_agent": %q, "base_url": %q}}`,
			c.name, c.interval, cmp.Or(c.userAgent, "(pollgrid ops test, test@example.com)"), c.upstream.URL))
	}
	return `{"connectors": [` + strings.Join(entries, ",") + `]}`
}

// stack is scheduler + worker + aggregator.
type stack struct {
	t          *testing.T
	ns         *server.Server
	nc         *nats.Conn
	js         jetstream.JetStream
	redis      *redistest.Server
	env        map[string]string
	aggregator *harness.Service
	scheduler  *harness.Service
	workers    []*harness.Service
	admin      *admin.Client
}

func fixtureBody(t *testing.T) []byte {
	body, err := os.ReadFile(fixture)
	require.NoError(t, err)
	return body
}

// startStack runs the services on cs on an embedded NATS of their own;
// env adds to their environment.
func startStack(t *testing.T, env map[string]string, cs ...connector) *stack {
	t.Helper()
	ns := harness.NATS(t)
	s := startStackOn(t, ns.ClientURL(), env, cs...)
	s.ns = ns
	return s
}

// startStackOn runs the services on cs against the NATS at natsURL.
func startStackOn(t *testing.T, natsURL string, env map[string]string, cs ...connector) *stack {
	t.Helper()
	s := &stack{t: t, redis: redistest.Start(t)}
	s.nc, s.js = harness.Connect(t, natsURL)
	s.env = map[string]string{
		"NATS_URL":             natsURL,
		"REDIS_URL":            s.redis.URL(),
		"CONNECTORS_FILE":      harness.WriteFile(t, "connectors.json", configJSON(cs...)),
		"SCHEDULER_LEADER_TTL": "3s",
		"WORKER_ACK_WAIT":      "3s",
		"AGGREGATOR_FLUSH":     "200ms",
		"LOG_LEVEL":            "warn",
	}
	for k, v := range env {
		s.env[k] = v
	}
	s.aggregator = harness.Start(t, aggregatord.Service, s.envWith(nil))
	s.workers = append(s.workers, harness.Start(t, workerd.Service, s.envWith(map[string]string{"WORKER_ID": "w1"})))
	s.scheduler = harness.Start(t, schedulerd.Service, s.envWith(map[string]string{"SCHEDULER_ID": "first"}))
	s.admin = admin.NewClient(s.nc, 20*time.Second)
	return s
}

func (s *stack) envWith(over map[string]string) map[string]string {
	env := map[string]string{}
	for k, v := range s.env {
		env[k] = v
	}
	for k, v := range over {
		env[k] = v
	}
	return env
}

// status waits for nothing: it reads the connector's status now.
func (s *stack) status(name string) admin.Status {
	st, err := s.admin.Status(context.Background(), name)
	require.NoError(s.t, err)
	return st
}

// polledAtLeast waits until the connector's upstream has served n requests.
func polledAtLeast(t *testing.T, u *harness.Upstream, n int64) int64 {
	t.Helper()
	require.Eventually(t, func() bool { return u.Requests.Load() >= n }, 30*time.Second, 20*time.Millisecond,
		"the upstream never got %d requests (got %d)", n, u.Requests.Load())
	return u.Requests.Load()
}

func streamMsgs(t *testing.T, js jetstream.JetStream, name string) uint64 {
	st, err := js.Stream(context.Background(), name)
	require.NoError(t, err)
	info, err := st.Info(context.Background())
	require.NoError(t, err)
	return info.State.Msgs
}

func httpGet(t *testing.T, url string) (int, string) {
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}
