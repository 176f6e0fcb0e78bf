package aggregator

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/catalog"
	"github.com/pollgrid/pollgrid/pkg/connectors/builtin"
	"github.com/pollgrid/pollgrid/pkg/history"
	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/pkg/store"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// An adaptive connector's effective interval, from its state in Redis, is
// in list and status, on its page, and in its gauge (under the cap); a
// fixed connector has none.
func TestAdaptiveConnectorShowsItsEffectiveInterval(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	st, hist := newStores(rdb)
	index := catalog.NewIndex(builtin.Registry(), nil)
	const noaa = `"type": "weather-noaa", "config": {"area": "CA", "user_agent": "(pollgrid-test, ops@example.com)"}`
	index.Update(catalog.Entry{Ref: catalog.Connector("burst"), Revision: 1,
		Value: []byte(`{"name": "burst", "interval": "1m", "adaptive": {"min": "10s", "max": "10m"}, ` + noaa + `}`)})
	index.Update(catalog.Entry{Ref: catalog.Connector("steady"), Revision: 2,
		Value: []byte(`{"name": "steady", "interval": "1m", ` + noaa + `}`)})
	index.SetSynced()
	reg := prometheus.NewPedanticRegistry()
	a := New(nil, st, hist, Options{Connectors: index, ConnectorGaugesMax: 10, Registerer: reg})
	ctx := context.Background()
	now := time.Now()
	for _, name := range []string{"burst", "steady"} {
		require.NoError(t, hist.RecordReports(ctx, []*pollgridv1.PollReport{{Connector: name, ConnectorType: "weather-noaa", Worker: "w1",
			Outcome: pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS, StartedAt: timestamppb.New(now.Add(-time.Second)),
			Duration: durationpb.New(100 * time.Millisecond)}}))
		lease, _, err := st.Acquire(ctx, name, "w1", time.Minute, store.ClaimTick)
		require.NoError(t, err)
		state := store.State{LastPoll: now.Add(-time.Second), LastSuccess: now.Add(-time.Second)}
		if name == "burst" {
			state.EffectiveInterval = 22500 * time.Millisecond
		}
		require.NoError(t, st.Commit(ctx, lease, store.Commit{Now: now, State: state}))
	}

	list, err := a.list(ctx, admin.ListRequest{}, now)
	require.NoError(t, err)
	require.Len(t, list.Connectors, 2)
	byName := map[string]admin.Connector{}
	for _, c := range list.Connectors {
		byName[c.Name] = c
	}
	assert.Equal(t, "23s", byName["burst"].EffectiveInterval)
	assert.Equal(t, "10s..10m", byName["burst"].Adaptive)
	assert.Empty(t, byName["steady"].EffectiveInterval)
	status, err := a.status(ctx, "burst", now)
	require.NoError(t, err)
	assert.Equal(t, "23s", status.EffectiveInterval)

	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/connectors/burst")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	assert.Contains(t, string(body), `<dd id="effective-interval">23s (adaptive 10s..10m:`)

	want := `
# HELP pollgrid_connector_effective_interval_seconds The interval an adaptive connector's ticks fire at now, as its polls found the upstream changing (absent for a fixed interval).
# TYPE pollgrid_connector_effective_interval_seconds gauge
pollgrid_connector_effective_interval_seconds{connector="burst",type="weather-noaa"} 23
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want), "pollgrid_connector_effective_interval_seconds"))
}

// The gauge is per connector only under AGGREGATOR_CONNECTOR_GAUGES_MAX,
// like the others; a failed read counts and serves the other gauges.
func TestEffectiveIntervalGaugeKeepsTheCap(t *testing.T) {
	last := time.Unix(1_700_000_000, 0)
	metrics := fakeMetrics{all: []history.ConnectorMetrics{
		{Name: "a", Type: "feed", Healthy: true, LastPoll: &last}, {Name: "b", Type: "feed", Healthy: true, LastPoll: &last},
	}}
	var asked []string
	c := NewConnectorCollector(metrics, 1, time.Minute, newErrors())
	c.intervals = func(_ context.Context, names []string) (map[string]time.Duration, error) {
		asked = names
		return map[string]time.Duration{"a": 30 * time.Second, "b": time.Minute}, nil
	}
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	want := `
# HELP pollgrid_connector_effective_interval_seconds The interval an adaptive connector's ticks fire at now, as its polls found the upstream changing (absent for a fixed interval).
# TYPE pollgrid_connector_effective_interval_seconds gauge
pollgrid_connector_effective_interval_seconds{connector="a",type="feed"} 30
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want), "pollgrid_connector_effective_interval_seconds"))
	assert.Equal(t, []string{"a"}, asked, "only the connectors under the cap are read")

	errs := newErrors()
	failing := NewConnectorCollector(metrics, 10, time.Minute, errs)
	failing.intervals = func(context.Context, []string) (map[string]time.Duration, error) { return nil, assert.AnError }
	n, err := testutil.GatherAndCount(prometheusRegistry(t, failing), "pollgrid_connector_healthy")
	require.NoError(t, err)
	assert.Equal(t, 2, n, "the other gauges are served")
	assert.Equal(t, 1.0, testutil.ToFloat64(errs.WithLabelValues("redis", "effective_intervals")))
}

func prometheusRegistry(t *testing.T, c prometheus.Collector) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	return reg
}
