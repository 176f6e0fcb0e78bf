package schedulerd

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/config"
)

func TestReadOptions(t *testing.T) {
	o, err := readOptions(config.MapEnv(map[string]string{
		"SCHEDULER_ID": "s2", "SCHEDULER_LEADER_TTL": "4s", "SCHEDULER_RESYNC": "1m",
	}))
	require.NoError(t, err)
	assert.Equal(t, options{id: "s2", leaderTTL: 4 * time.Second, resync: time.Minute}, o)

	o, err = readOptions(config.MapEnv(map[string]string{}))
	require.NoError(t, err)
	assert.Equal(t, options{}, o, "unset: the scheduler's own defaults")

	_, err = readOptions(config.MapEnv(map[string]string{"SCHEDULER_LEADER_TTL": "10"}))
	assert.EqualError(t, err, `SCHEDULER_LEADER_TTL="10": want a positive duration such as 30s`)
	_, err = readOptions(config.MapEnv(map[string]string{"SCHEDULER_RESYNC": "0s"}))
	assert.EqualError(t, err, `SCHEDULER_RESYNC="0s": want a positive duration such as 30s`)
}
