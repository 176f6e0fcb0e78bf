package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/services/scheduler/schedulerd"
	"github.com/pollgrid/pollgrid/services/worker/workerd"
	"github.com/pollgrid/pollgrid/test/harness"
)

// A snapshot API (every poll answers the whole listing) with emit_deletes:
// an item that leaves the listing is published once as deleted, carrying its
// last known data, on SIGNALS through real NATS and Redis.
func TestDeletedItemsArePublishedOnce(t *testing.T) {
	var listing atomic.Value
	listing.Store(`{"items": [{"id": "a", "rev": 1, "name": "alpha"}, {"id": "b", "rev": 1, "name": "beta"}]}`)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(listing.Load().(string)))
	}))
	t.Cleanup(upstream.Close)

	ns := harness.NATS(t)
	redis := redistest.Start(t)
	_, js := harness.Connect(t, ns.ClientURL())
	file := harness.WriteFile(t, "connectors.json", `{"connectors": [{"name": "snapshot", "type": "http-json", "interval": "1s",
		"config": {"url": "`+upstream.URL+`/items", "items": ".items", "id": ".id", "version": ".rev | tostring",
			"data": "{id, name}", "emit_deletes": true}}]}`)
	env := func() map[string]string {
		return map[string]string{"NATS_URL": ns.ClientURL(), "REDIS_URL": redis.URL(), "CONNECTORS_FILE": file, "LOG_LEVEL": "warn"}
	}
	harness.Start(t, workerd.Service, env())
	harness.Start(t, schedulerd.Service, env())

	ctx := context.Background()
	cons, err := js.OrderedConsumer(ctx, bus.SignalsStream, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	var got []jetstream.Msg
	next := func(d time.Duration) bool {
		msg, err := cons.Next(jetstream.FetchMaxWait(d))
		if err != nil {
			return false
		}
		got = append(got, msg)
		return true
	}
	for len(got) < 2 {
		require.True(t, next(30*time.Second), "the two items were never created")
	}

	listing.Store(`{"items": [{"id": "a", "rev": 1, "name": "alpha"}]}`)
	require.True(t, next(30*time.Second), "b's deletion never came")
	deleted := got[2]
	assert.Equal(t, "pollgrid.http-json.deleted", deleted.Headers().Get("ce-type"))
	gone, err := bus.DecodeSignal(deleted.Data())
	require.NoError(t, err)
	assert.EqualValues(t, 2, gone.GetSequence(), "b's second change")
	assert.Equal(t, bus.SignalID(gone), deleted.Headers().Get("ce-id"))
	var body struct {
		ItemID  string          `json:"item_id"`
		Version string          `json:"version"`
		Change  string          `json:"change"`
		Data    json.RawMessage `json:"data"`
	}
	require.NoError(t, json.Unmarshal(deleted.Data(), &body))
	assert.Equal(t, "b", body.ItemID)
	assert.Equal(t, "1", body.Version)
	assert.Equal(t, bus.ChangeDeleted, body.Change)
	assert.JSONEq(t, `{"id": "b", "name": "beta"}`, string(body.Data), "its last known data")

	// Polls go on every second: b stays gone, and is deleted only once.
	assert.False(t, next(3500*time.Millisecond), "nothing more: b was deleted once")
}
