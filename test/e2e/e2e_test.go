package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/services/aggregator/aggregatord"
	"github.com/pollgrid/pollgrid/services/scheduler/schedulerd"
	"github.com/pollgrid/pollgrid/services/worker/workerd"
	"github.com/pollgrid/pollgrid/test/harness"
)

const (
	fixture      = "../../pkg/connectors/weather-noaa/testdata/alerts_active_point_2024.json"
	firstAlertID = "urn:oid:2.49.0.1.840.0.505a7220d91b00eb1d75a3fb4f339f825496a522.004.1"
	firstSent    = `"sent": "2024-07-18T12:47:00-07:00"`
)

// stack is scheduler + two workers + aggregator against real NATS (embedded)
// and a real redis-server, polling an httptest upstream that replays NWS.
type stack struct {
	natsURL    string
	redis      *redistest.Server
	js         jetstream.JetStream
	nc         *nats.Conn
	upstream   *harness.Upstream
	aggregator *harness.Service
	scheduler  *harness.Service
	workers    []*harness.Service
	env        map[string]string
	// signals is every signal since before the scheduler started: a
	// subscription made after it could miss the first tick's.
	signals *harness.Signals
}

func connectorsJSON(upstreamURL string, names ...string) string {
	var entries []string
	for _, n := range names {
		entries = append(entries, fmt.Sprintf(`{"name": %q, "type": "weather-noaa", "interval": "1s", "timeout": "900ms",
			"retries": {"max": 0}, "lease_ttl": "3s",
			"config": {"area": "AZ", "user_agent": "(pollgrid e2e, test@example.com)", "base_url": %q}}`, n, upstreamURL))
	}
	return `{"connectors": [` + strings.Join(entries, ",") + `]}`
}

func startStack(t *testing.T) *stack {
	t.Helper()
	body, err := os.ReadFile(fixture)
	require.NoError(t, err)
	ns := harness.NATS(t)
	redis := redistest.Start(t)
	s := &stack{natsURL: ns.ClientURL(), redis: redis, upstream: harness.NewUpstream(t, body)}
	s.nc, s.js = harness.Connect(t, s.natsURL)
	s.env = map[string]string{
		"NATS_URL":             s.natsURL,
		"REDIS_URL":            redis.URL(),
		"CONNECTORS_FILE":      harness.WriteFile(t, "connectors.json", connectorsJSON(s.upstream.URL, "noaa-az")),
		"SCHEDULER_LEADER_TTL": "3s",
		"WORKER_ACK_WAIT":      "3s",
		"LOG_LEVEL":            "warn",
	}
	s.aggregator = harness.Start(t, aggregatord.Service, s.envWith(nil))
	for i := 1; i <= 2; i++ {
		s.workers = append(s.workers, harness.Start(t, workerd.Service, s.envWith(map[string]string{"WORKER_ID": fmt.Sprintf("w%d", i)})))
	}
	s.signals = harness.CollectSignals(t, s.nc)
	s.scheduler = harness.Start(t, schedulerd.Service, s.envWith(nil))
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

type connectorMetrics struct {
	Name           string  `json:"name"`
	Polls          int64   `json:"polls"`
	Successes      int64   `json:"successes"`
	Failures       int64   `json:"failures"`
	ItemsFetched   int64   `json:"items_fetched"`
	ItemsPublished int64   `json:"items_published"`
	SuccessRate    float64 `json:"success_rate"`
	Healthy        bool    `json:"healthy"`
	LastError      string  `json:"last_error"`
}

func metricsOf(t *testing.T, s *stack, name string) (connectorMetrics, bool) {
	resp, err := http.Get(s.aggregator.HTTP + "/metrics/connectors/" + name)
	if err != nil {
		return connectorMetrics{}, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return connectorMetrics{}, false
	}
	var m connectorMetrics
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&m))
	return m, true
}

// successesAtLeast waits until the aggregator has counted n successful polls.
func successesAtLeast(t *testing.T, s *stack, name string, n int64) connectorMetrics {
	var m connectorMetrics
	require.Eventually(t, func() bool {
		var ok bool
		m, ok = metricsOf(t, s, name)
		return ok && m.Successes >= n
	}, 30*time.Second, 100*time.Millisecond, "connector %s never reached %d successful polls (last: %+v)", name, n, m)
	return m
}

func signalsInStream(t *testing.T, s *stack) uint64 {
	st, err := s.js.Stream(context.Background(), bus.SignalsStream)
	require.NoError(t, err)
	info, err := st.Info(context.Background())
	require.NoError(t, err)
	return info.State.Msgs
}

func TestSignalsFlowEndToEnd(t *testing.T) {
	s := startStack(t)
	sigs := s.signals

	// First polls: both alerts of the fixture are created, once each.
	require.Eventually(t, func() bool { return len(sigs.All()) >= 2 }, 30*time.Second, 50*time.Millisecond)
	m := successesAtLeast(t, s, "noaa-az", 1)
	assert.True(t, m.Healthy)

	msg := sigs.All()[0]
	assert.Equal(t, "signals.weather-noaa.noaa-az", msg.Subject)
	assert.Equal(t, "1.0", msg.Header.Get("ce-specversion"))
	assert.Equal(t, "/connectors/noaa-az", msg.Header.Get("ce-source"))
	assert.Equal(t, "pollgrid.weather-noaa.created", msg.Header.Get("ce-type"))
	assert.Equal(t, "application/json", msg.Header.Get("content-type"))
	assert.Regexp(t, `^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$`, msg.Header.Get("traceparent"))
	_, err := time.Parse(time.RFC3339Nano, msg.Header.Get("ce-time"))
	assert.NoError(t, err)
	subject := msg.Header.Get("ce-subject")
	assert.Regexp(t, `^[0-9a-f]{32}$`, msg.Header.Get("ce-id"))
	assert.Equal(t, msg.Header.Get("ce-id"), msg.Header.Get(nats.MsgIdHdr))

	var body struct {
		Connector     string          `json:"connector"`
		ConnectorType string          `json:"connector_type"`
		ItemID        string          `json:"item_id"`
		Version       string          `json:"version"`
		Change        string          `json:"change"`
		ObservedAt    string          `json:"observed_at"`
		Data          json.RawMessage `json:"data"`
		Generation    uint64          `json:"generation"`
		Sequence      uint64          `json:"sequence"`
	}
	require.NoError(t, json.Unmarshal(msg.Data, &body))
	assert.Equal(t, "noaa-az", body.Connector)
	assert.Equal(t, "weather-noaa", body.ConnectorType)
	assert.Equal(t, subject, body.ItemID)
	assert.Equal(t, "created", body.Change)
	assert.EqualValues(t, 1, body.Sequence, "the item's first change")
	decoded, err := bus.DecodeSignal(msg.Data)
	require.NoError(t, err)
	assert.Equal(t, bus.SignalID(decoded), msg.Header.Get("ce-id"), "the id is the change's: connector, item, version, change, sequence")
	assert.Contains(t, string(body.Data), `"event"`)
	ids := map[string]bool{}
	for _, m := range sigs.All() {
		ids[m.Header.Get("ce-subject")] = true
	}
	assert.True(t, ids[firstAlertID], "the fixture's first alert was signalled")

	// Unchanged upstream: more polls, nothing new in SIGNALS.
	before := signalsInStream(t, s)
	assert.EqualValues(t, 2, before, "exactly one signal per alert")
	polled := successesAtLeast(t, s, "noaa-az", m.Successes+3)
	assert.EqualValues(t, before, signalsInStream(t, s), "an unchanged upstream publishes nothing")
	assert.Len(t, sigs.All(), 2)

	// One alert updated upstream: exactly one "updated" signal.
	body2, err := os.ReadFile(fixture)
	require.NoError(t, err)
	updated := strings.Replace(string(body2), firstSent, `"sent": "2024-07-18T13:05:00-07:00"`, 1)
	require.NotEqual(t, string(body2), updated)
	s.upstream.Set(http.StatusOK, []byte(updated))
	require.Eventually(t, func() bool { return len(sigs.All()) >= 3 }, 30*time.Second, 50*time.Millisecond)
	successesAtLeast(t, s, "noaa-az", polled.Successes+3)
	all := sigs.All()
	require.Len(t, all, 3, "exactly one signal for the one updated alert")
	assert.Equal(t, "pollgrid.weather-noaa.updated", all[2].Header.Get("ce-type"))
	assert.Equal(t, firstAlertID, all[2].Header.Get("ce-subject"))
	update, err := bus.DecodeSignal(all[2].Data)
	require.NoError(t, err)
	assert.Equal(t, "2024-07-18T13:05:00-07:00", update.GetVersion())
	assert.EqualValues(t, 2, update.GetSequence(), "the item's second change")
	assert.Equal(t, bus.SignalID(update), all[2].Header.Get("ce-id"))
	assert.EqualValues(t, 3, signalsInStream(t, s))

	// The aggregator's list shows the connector with its polls.
	resp, err := http.Get(s.aggregator.HTTP + "/metrics/connectors")
	require.NoError(t, err)
	defer resp.Body.Close()
	var list struct {
		Connectors []connectorMetrics `json:"connectors"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&list))
	require.Len(t, list.Connectors, 1)
	got := list.Connectors[0]
	assert.Equal(t, "noaa-az", got.Name)
	assert.GreaterOrEqual(t, got.Polls, int64(7))
	assert.EqualValues(t, 3, got.ItemsPublished)
	assert.Equal(t, 1.0, got.SuccessRate)
}

func TestFailedUpstreamMovesNothing(t *testing.T) {
	s := startStack(t)
	sigs := s.signals
	require.Eventually(t, func() bool { return len(sigs.All()) >= 2 }, 30*time.Second, 50*time.Millisecond)
	m := successesAtLeast(t, s, "noaa-az", 1)

	s.upstream.Set(http.StatusInternalServerError, []byte(`{"title": "Internal Server Error", "detail": "upstream down"}`))
	require.Eventually(t, func() bool {
		got, ok := metricsOf(t, s, "noaa-az")
		return ok && got.Failures >= 2
	}, 30*time.Second, 100*time.Millisecond)
	got, _ := metricsOf(t, s, "noaa-az")
	assert.Contains(t, got.LastError, "500")

	// Back to the same data: the seen versions survived the failures, so
	// nothing is re-published.
	body, err := os.ReadFile(fixture)
	require.NoError(t, err)
	s.upstream.Set(http.StatusOK, body)
	successesAtLeast(t, s, "noaa-az", m.Successes+2)
	assert.Len(t, sigs.All(), 2)
}

func TestStateSurvivesWorkerRestart(t *testing.T) {
	s := startStack(t)
	sigs := s.signals
	require.Eventually(t, func() bool { return len(sigs.All()) >= 2 }, 30*time.Second, 50*time.Millisecond)
	m := successesAtLeast(t, s, "noaa-az", 1)

	for _, w := range s.workers {
		require.NoError(t, w.Stop())
	}
	w := harness.Start(t, workerd.Service, s.envWith(map[string]string{"WORKER_ID": "w3"}))
	successesAtLeast(t, s, "noaa-az", m.Successes+3)
	assert.Len(t, sigs.All(), 2, "a new worker continues from the stored versions")
	require.NoError(t, w.Stop())
}

func readMetrics(t *testing.T, url string) string {
	resp, err := http.Get(url + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}
