package workerd

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/config"
)

func TestReadOptions(t *testing.T) {
	o, err := readOptions(config.MapEnv(map[string]string{}), Service.Connectors)
	require.NoError(t, err)
	assert.Equal(t, 4, o.concurrency, "default WORKER_CONCURRENCY")
	assert.Equal(t, 4096, o.definitionsCache, "default WORKER_DEFINITIONS_CACHE")
	assert.Equal(t, 2*time.Minute, o.adaptEvery, "default WORKER_ADAPT_EVERY")
	assert.True(t, o.allow.IsZero(), "no exceptions to the outbound guard by default")

	o, err = readOptions(config.MapEnv(map[string]string{
		"WORKER_ID": "w7", "WORKER_CONCURRENCY": "32", "WORKER_ACK_WAIT": "5s", "WORKER_GRACE": "1m", "WORKER_DEFINITIONS_CACHE": "100000",
		"WORKER_ADAPT_EVERY": "12s", "WORKER_TYPES": "http-json, feed", "WORKER_CONNECTORS": "a,b", "UPSTREAM_ALLOW": "10.0.0.0/8",
	}), Service.Connectors)
	require.NoError(t, err)
	assert.Equal(t, "w7", o.id)
	assert.Equal(t, 32, o.concurrency)
	assert.Equal(t, 5*time.Second, o.ackWait)
	assert.Equal(t, time.Minute, o.grace)
	assert.Equal(t, 100_000, o.definitionsCache)
	assert.Equal(t, 12*time.Second, o.adaptEvery)
	assert.Equal(t, []string{"http-json", "feed"}, o.filter.Types)
	assert.Equal(t, []string{"a", "b"}, o.filter.Names)
	assert.False(t, o.allow.IsZero())

	for env, want := range map[string]string{
		"WORKER_CONCURRENCY=0":        `WORKER_CONCURRENCY="0": want a whole number from 1 to 1024`,
		"WORKER_ACK_WAIT=2":           `WORKER_ACK_WAIT="2": want a positive duration such as 30s`,
		"WORKER_GRACE=-1s":            `WORKER_GRACE="-1s": want a positive duration such as 30s`,
		"WORKER_DEFINITIONS_CACHE=0":  `WORKER_DEFINITIONS_CACHE="0": want a whole number from 1 to 1000000`,
		"WORKER_DEFINITIONS_CACHE=4k": `WORKER_DEFINITIONS_CACHE="4k": want a whole number from 1 to 1000000`,
		"WORKER_ADAPT_EVERY=2":        `WORKER_ADAPT_EVERY="2": want a positive duration such as 30s`,
		"WORKER_TYPES=github-relea":   `WORKER_TYPES: unknown connector type "github-relea" (known: [`,
		"UPSTREAM_ALLOW=not a host":   `UPSTREAM_ALLOW`,
	} {
		key, value, _ := strings.Cut(env, "=")
		_, err := readOptions(config.MapEnv(map[string]string{key: value}), Service.Connectors)
		require.Error(t, err, env)
		assert.Contains(t, err.Error(), want, env)
	}
}
