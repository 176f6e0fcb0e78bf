package aggregatord

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/aggregator"
	"github.com/pollgrid/pollgrid/pkg/config"
)

func TestReadOptions(t *testing.T) {
	o, err := readOptions(config.MapEnv(map[string]string{}))
	require.NoError(t, err)
	assert.Equal(t, options{
		gauges: aggregator.DefaultConnectorGauges, flush: aggregator.DefaultFlushInterval, staleAfter: aggregator.DefaultStaleAfter,
	}, o)

	o, err = readOptions(config.MapEnv(map[string]string{
		"AGGREGATOR_HEALTHY_WINDOW": "10m", "AGGREGATOR_CONNECTOR_GAUGES_MAX": "0",
		"AGGREGATOR_FLUSH": "250ms", "AGGREGATOR_STALE_AFTER": "5",
	}))
	require.NoError(t, err)
	assert.Equal(t, options{healthyWindow: 10 * time.Minute, gauges: 0, flush: 250 * time.Millisecond, staleAfter: 5}, o,
		"AGGREGATOR_CONNECTOR_GAUGES_MAX=0 is kept: it turns the per-connector gauges off")

	for key, value := range map[string]string{
		"AGGREGATOR_CONNECTOR_GAUGES_MAX": "-1", "AGGREGATOR_STALE_AFTER": "0",
		"AGGREGATOR_FLUSH": "soon", "AGGREGATOR_HEALTHY_WINDOW": "-5m",
	} {
		_, err := readOptions(config.MapEnv(map[string]string{key: value}))
		require.Error(t, err, key)
		assert.Contains(t, err.Error(), key+`="`+value+`": want`)
	}
}
