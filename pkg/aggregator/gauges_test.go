package aggregator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/history"
)

type fakeMetrics struct {
	all []history.ConnectorMetrics
	err error
}

func (f fakeMetrics) AllMetrics(context.Context, time.Duration, time.Time) ([]history.ConnectorMetrics, error) {
	return append([]history.ConnectorMetrics(nil), f.all...), f.err
}

func newErrors() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pollgrid_dependency_errors_total", Help: "h"}, []string{"system", "op"})
}

func TestConnectorGaugesCapKeepsUnhealthyFirst(t *testing.T) {
	last := time.Unix(1_700_000_000, 500_000_000)
	var all []history.ConnectorMetrics
	for i := range 5 {
		all = append(all, history.ConnectorMetrics{Name: fmt.Sprintf("c%d", i), Type: "feed", Healthy: i != 3,
			Successes: 9, Failures: 1, SuccessRate: 0.9, LastSuccess: &last, LastPoll: &last, LatencyP95Seconds: 0.25})
	}
	c := NewConnectorCollector(fakeMetrics{all: all}, 2, time.Minute, newErrors())
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))

	want := `
# HELP pollgrid_connector_healthy 1 when the connector's last successful poll is within the healthy window (AGGREGATOR_HEALTHY_WINDOW), else 0.
# TYPE pollgrid_connector_healthy gauge
pollgrid_connector_healthy{connector="c0",type="feed"} 1
pollgrid_connector_healthy{connector="c3",type="feed"} 0
# HELP pollgrid_connector_gauges_omitted Connectors left out of the per-connector series by AGGREGATOR_CONNECTOR_GAUGES_MAX.
# TYPE pollgrid_connector_gauges_omitted gauge
pollgrid_connector_gauges_omitted 3
# HELP pollgrid_connectors_reporting Connectors with at least one poll report in Redis.
# TYPE pollgrid_connectors_reporting gauge
pollgrid_connectors_reporting 5
# HELP pollgrid_connector_last_success_timestamp_seconds Unix time of the connector's last successful poll (absent before the first).
# TYPE pollgrid_connector_last_success_timestamp_seconds gauge
pollgrid_connector_last_success_timestamp_seconds{connector="c0",type="feed"} 1.7000000005e+09
pollgrid_connector_last_success_timestamp_seconds{connector="c3",type="feed"} 1.7000000005e+09
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want),
		"pollgrid_connector_healthy", "pollgrid_connector_gauges_omitted", "pollgrid_connectors_reporting",
		"pollgrid_connector_last_success_timestamp_seconds"))
	n, err := testutil.GatherAndCount(reg, "pollgrid_connector_polls_total")
	require.NoError(t, err)
	assert.Equal(t, 2*3, n, "2 connectors × 3 outcomes")
}

func TestConnectorGaugesRedisFailureCountsAndServesNothing(t *testing.T) {
	errs := newErrors()
	c := NewConnectorCollector(fakeMetrics{err: errors.New("connection refused")}, 10, time.Minute, errs)
	assert.Equal(t, 0, testutil.CollectAndCount(c))
	assert.Equal(t, 1.0, testutil.ToFloat64(errs.WithLabelValues("redis", "connector_gauges")))
}

// AGGREGATOR_CONNECTOR_GAUGES_MAX=0 and ConnectorGaugesMax 0 say the same:
// no per-connector series, and no pollgrid_connectors.
func TestConnectorGaugesOffRegistersNothing(t *testing.T) {
	for _, gaugesMax := range []int{0, -1} {
		reg := prometheus.NewRegistry()
		New(nil, nil, nil, Options{ConnectorGaugesMax: gaugesMax, Registerer: reg})
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			assert.False(t, strings.HasPrefix(mf.GetName(), "pollgrid_connector"), "ConnectorGaugesMax %d: %s", gaugesMax, mf.GetName())
		}
	}
}
