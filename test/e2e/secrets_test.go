package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/history"
	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/pkg/service"
	"github.com/pollgrid/pollgrid/pkg/store"
	"github.com/pollgrid/pollgrid/services/aggregator/aggregatord"
	"github.com/pollgrid/pollgrid/services/scheduler/schedulerd"
	"github.com/pollgrid/pollgrid/services/worker/workerd"
	"github.com/pollgrid/pollgrid/test/harness"
)

// Guarantee 7: a secret written as ${VAR} reaches the upstream, and nothing
// else — not the logs, the poll errors, the aggregator's metrics or Redis —
// even when the upstream echoes it back in an error.
func TestSecretsNeverLeak(t *testing.T) {
	const secret = "ua-s3cr3t-7f9a2c"
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A hostile (or careless) upstream quoting the request back.
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"title": "Forbidden", "detail": "User-Agent `+r.UserAgent()+` is blocked; see `+
			`https://example.com/help?token=`+secret+`"}`)
	}))
	t.Cleanup(upstream.Close)

	ns := harness.NATS(t)
	redis := redistest.Start(t)
	file := harness.WriteFile(t, "connectors.json", `{"connectors": [{"name": "leaky", "type": "weather-noaa",
		"interval": "1s", "timeout": "900ms", "retries": {"max": 0},
		"config": {"area": "AZ", "user_agent": "(pollgrid ${UA_SECRET})", "base_url": "`+upstream.URL+`"}}]}`)
	env := map[string]string{
		"NATS_URL": ns.ClientURL(), "REDIS_URL": redis.URL(), "CONNECTORS_FILE": file,
		"UA_SECRET": secret, "LOG_LEVEL": "debug", "WORKER_ACK_WAIT": "3s",
	}
	logs := &harness.SyncBuffer{}
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
	agg := harness.Start(t, aggregatord.Service, with(nil), service.WithLogOutput(logs))
	harness.Start(t, workerd.Service, with(nil), service.WithLogOutput(logs))
	harness.Start(t, schedulerd.Service, with(nil), service.WithLogOutput(logs))

	var body string
	require.Eventually(t, func() bool {
		resp, err := http.Get(agg.HTTP + "/metrics/connectors/leaky")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		// At least two failures: reports arrive in batches, so the count
		// may go from 1 to 3 between two reads.
		var m struct {
			Failures int `json:"failures"`
		}
		return resp.StatusCode == http.StatusOK && json.Unmarshal(b, &m) == nil && m.Failures >= 2
	}, 30*time.Second, 100*time.Millisecond)

	assert.Contains(t, body, "403", "the failure is reported")
	assert.Contains(t, body, "[REDACTED]", "the echoed secret was masked")
	assert.NotContains(t, body, secret, "metrics API")
	assert.Contains(t, logs.String(), "poll failed")
	assert.NotContains(t, logs.String(), secret, "logs")

	// Nothing in Redis holds it either.
	rdb := redis.Client(t)
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	require.NotEmpty(t, keys)
	for _, k := range keys {
		// Read values by type: DUMP may compress them.
		var values []string
		switch typ := rdb.Type(ctx, k).Val(); typ {
		case "string":
			values = []string{rdb.Get(ctx, k).Val()}
		case "hash":
			for f, v := range rdb.HGetAll(ctx, k).Val() {
				values = append(values, f, v)
			}
		case "list":
			values = rdb.LRange(ctx, k, 0, -1).Val()
		case "set":
			values = rdb.SMembers(ctx, k).Val()
		case "zset":
			values = rdb.ZRange(ctx, k, 0, -1).Val()
		default:
			t.Fatalf("key %s has unexpected type %s", k, typ)
		}
		assert.NotContains(t, strings.Join(values, "\n"), secret, "redis key %s", k)
	}
	recent, err := history.New(rdb, store.NewKeys("")).Recent(ctx, "leaky", 0)
	require.NoError(t, err)
	require.NotEmpty(t, recent)
	assert.Contains(t, recent[len(recent)-1].GetError(), "[REDACTED]", "the stored recent reports have the masked error")
}
