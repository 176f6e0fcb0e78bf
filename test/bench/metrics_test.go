package bench

import (
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const scrape = `# HELP pollgrid_tick_lateness_seconds Time from a tick's due time to a worker starting it.
# TYPE pollgrid_tick_lateness_seconds histogram
pollgrid_tick_lateness_seconds_bucket{le="0.1"} 50
pollgrid_tick_lateness_seconds_bucket{le="1"} 98
pollgrid_tick_lateness_seconds_bucket{le="10"} 100
pollgrid_tick_lateness_seconds_bucket{le="+Inf"} 100
pollgrid_tick_lateness_seconds_sum 30
pollgrid_tick_lateness_seconds_count 100
# HELP pollgrid_polls_in_flight Polls running now in this worker.
# TYPE pollgrid_polls_in_flight gauge
pollgrid_polls_in_flight 3
# HELP pollgrid_polls_total Polls.
# TYPE pollgrid_polls_total counter
pollgrid_polls_total{outcome="success",type="http-json"} 7
pollgrid_polls_total{outcome="failure",type="http-json"} 2
`

func TestMetrics(t *testing.T) {
	m, err := ParseMetrics(strings.NewReader(scrape))
	require.NoError(t, err)
	v, ok := m.Value("pollgrid_polls_in_flight")
	assert.True(t, ok)
	assert.Equal(t, 3.0, v)
	v, _ = m.Value("pollgrid_polls_total")
	assert.Equal(t, 9.0, v, "summed over the series")
	_, ok = m.Value("absent")
	assert.False(t, ok)

	h, ok := m.Histogram("pollgrid_tick_lateness_seconds")
	require.True(t, ok)
	require.Len(t, h, 4)
	assert.Equal(t, Bucket{UpperBound: 0.1, Count: 50}, h[0])
	assert.True(t, math.IsInf(h[3].UpperBound, 1))
	assert.Equal(t, 0.1, BucketQuantile(h, 0.5))
	assert.Equal(t, 1.0, BucketQuantile(h, 0.98))
	assert.Equal(t, 10.0, BucketQuantile(h, 0.99))

	before := []Bucket{{0.1, 50}, {1, 50}, {10, 50}, {math.Inf(1), 50}}
	d := SubBuckets(h, before)
	assert.Equal(t, []Bucket{{0.1, 0}, {1, 48}, {10, 50}, {math.Inf(1), 50}}, d)
	assert.Equal(t, 1.0, BucketQuantile(d, 0.5))
	assert.True(t, math.IsNaN(BucketQuantile(SubBuckets(h, h), 0.99)), "nothing observed in between")
	_, err = ParseMetrics(strings.NewReader("not { metrics"))
	assert.Error(t, err)
}
