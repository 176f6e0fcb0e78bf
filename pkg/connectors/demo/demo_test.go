package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
	ct "github.com/pollgrid/pollgrid/pkg/connectortest"
)

// eight is 08:00:00 UTC, the start of a 10s period whose number is 0
// modulo 3 and modulo 5: demo-1 changes in it.
var eight = time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)

// clock is a settable time for the connectors a test builds.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// factoryAt is New with the clock c.
func factoryAt(c *clock) connector.Factory {
	return func(raw json.RawMessage, deps connector.Deps) (connector.Connector, error) {
		conn, err := New(raw, deps)
		if err != nil {
			return nil, err
		}
		conn.(*poller).now = c.Now
		return conn, nil
	}
}

func build(t *testing.T, c *clock, raw string) connector.Connector {
	t.Helper()
	conn, err := factoryAt(c)(json.RawMessage(raw), connector.Deps{})
	require.NoError(t, err)
	return conn
}

func poll(t *testing.T, conn connector.Connector, state connector.State) connector.Result {
	t.Helper()
	res, err := conn.Poll(t.Context(), state)
	require.NoError(t, err)
	return res
}

func TestItemsAtAGivenTime(t *testing.T) {
	tests := []struct {
		name     string
		config   string
		at       time.Time
		versions []string // of demo-1, demo-2, ...
	}{
		{"the start of demo-1's period", `{"items": 3}`, eight, []string{
			"2026-12-07T08:00:00.000Z", "2026-12-07T07:59:40.000Z", "2026-12-07T07:59:50.000Z"}},
		{"the end of that period", `{"items": 3}`, eight.Add(10*time.Second - time.Nanosecond), []string{
			"2026-12-07T08:00:00.000Z", "2026-12-07T07:59:40.000Z", "2026-12-07T07:59:50.000Z"}},
		{"the next period: demo-2's turn", `{"items": 3}`, eight.Add(15 * time.Second), []string{
			"2026-12-07T08:00:00.000Z", "2026-12-07T08:00:10.000Z", "2026-12-07T07:59:50.000Z"}},
		{"the defaults: 5 items, one change every 10s", `{}`, eight.Add(25 * time.Second), []string{
			"2026-12-07T08:00:00.000Z", "2026-12-07T08:00:10.000Z", "2026-12-07T08:00:20.000Z",
			"2026-12-07T07:59:40.000Z", "2026-12-07T07:59:50.000Z"}},
		{"one item changes every period", `{"items": 1, "change_every": "1m"}`, eight.Add(90 * time.Second), []string{
			"2026-12-07T08:01:00.000Z"}},
		{"a time zone other than UTC", `{"items": 2, "change_every": "1h"}`,
			time.Date(2026, 12, 7, 10, 30, 0, 0, time.FixedZone("CET", 3600)), []string{
				"2026-12-07T08:00:00.000Z", "2026-12-07T09:00:00.000Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := poll(t, build(t, &clock{now: tt.at}, tt.config), connector.State{})
			ids := make([]string, len(tt.versions))
			for i := range ids {
				ids[i] = fmt.Sprintf("demo-%d", i+1)
			}
			assert.Equal(t, ids, ct.ItemIDs(res.Items))
			assert.Equal(t, tt.versions, ct.ItemVersions(res.Items))
			for _, it := range res.Items {
				var data Reading
				require.NoError(t, json.Unmarshal(it.Data, &data))
				assert.Equal(t, it.ID, data.ID)
				assert.Equal(t, it.Version, data.ChangedAt)
				assert.True(t, data.Reading >= 0 && data.Reading <= 99.9, "reading %v", data.Reading)
			}
			assert.Empty(t, res.Failed)
			assert.False(t, res.Complete, "the demo deletes nothing")
		})
	}
}

// Over many periods, exactly one item changes from one to the next (id,
// version and data), in turn, and nothing changes within a period.
func TestOneChangePerPeriod(t *testing.T) {
	c := &clock{now: eight}
	conn := build(t, c, `{"items": 4, "change_every": "7s"}`)
	every := int64(7 * time.Second)
	start := time.Unix(0, eight.UnixNano()/every*every) // a period's start: periods count from the Unix epoch
	byID := func(items []connector.Item) map[string]connector.Item {
		m := map[string]connector.Item{}
		for _, it := range items {
			m[it.ID] = it
		}
		return m
	}
	c.Set(start)
	prev := byID(poll(t, conn, connector.State{}).Items)
	var changed []string
	for period := 1; period <= 40; period++ {
		begin := start.Add(time.Duration(period) * 7 * time.Second)
		c.Set(begin)
		now := byID(poll(t, conn, connector.State{}).Items)
		c.Set(begin.Add(7*time.Second - time.Millisecond))
		assert.Equal(t, now, byID(poll(t, conn, connector.State{}).Items), "period %d: nothing changes within it", period)

		var diff []string
		for id, it := range now {
			if it.Version != prev[id].Version {
				diff = append(diff, id)
				assert.NotEqual(t, string(prev[id].Data), string(it.Data), "%s: a new version has new data", id)
				assert.Greater(t, it.Version, prev[id].Version, "%s: versions sort as changes happen", id)
			} else {
				assert.Equal(t, prev[id].Data, it.Data, "%s: an unchanged version has the same data", id)
			}
		}
		require.Len(t, diff, 1, "period %d: exactly one item changes", period)
		changed = append(changed, diff[0])
		prev = now
	}
	// The turns go round: four items, each changing every fourth period.
	for i := 4; i < len(changed); i++ {
		assert.Equal(t, changed[i-4], changed[i], "period %d", i+1)
	}
	assert.ElementsMatch(t, []string{"demo-1", "demo-2", "demo-3", "demo-4"}, changed[:4])
}

// Two connectors built apart (two workers) give the same items at the same
// time, byte for byte.
func TestTwoPollersAgree(t *testing.T) {
	for _, at := range []time.Time{eight, eight.Add(3 * time.Second), eight.Add(17*time.Hour + 123*time.Millisecond)} {
		cfg := `{"items": 20, "change_every": "3s"}`
		a := poll(t, build(t, &clock{now: at}, cfg), connector.State{})
		b := poll(t, build(t, &clock{now: at}, cfg), connector.State{})
		assert.Equal(t, a, b, "at %s", at)
	}
}

// What a user sees through the real universal poll: every item created,
// then one updated each period, nothing in between.
func TestSignalsOverTime(t *testing.T) {
	c := &clock{now: eight.Add(time.Second)}
	h := ct.New(t, factoryAt(c), TypeName, `{"items": 3, "change_every": "10s"}`)

	first := h.Poll(t.Context())
	first.RequireOK(t)
	first.AssertSignals(t,
		ct.Want{ID: "demo-1", Version: "2026-12-07T08:00:00.000Z", Change: ct.Created},
		ct.Want{ID: "demo-2", Version: "2026-12-07T07:59:40.000Z", Change: ct.Created},
		ct.Want{ID: "demo-3", Version: "2026-12-07T07:59:50.000Z", Change: ct.Created},
	)
	assert.JSONEq(t, `{"id": "demo-1", "reading": 94, "changed_at": "2026-12-07T08:00:00.000Z"}`, string(first.Signals[0].Data))
	assert.Equal(t, "2026-12-07T08:00:00Z", first.State.Cursor)

	c.Set(eight.Add(9 * time.Second))
	h.Poll(t.Context()).AssertNoSignals(t)

	c.Set(eight.Add(10 * time.Second))
	next := h.Poll(t.Context())
	next.RequireOK(t)
	next.AssertSignals(t, ct.Want{ID: "demo-2", Version: "2026-12-07T08:00:10.000Z", Change: ct.Updated})
	assert.Equal(t, "2026-12-07T08:00:10Z", next.State.Cursor)

	// A poll that comes late sees every item that changed meanwhile, once.
	c.Set(eight.Add(35 * time.Second))
	late := h.Poll(t.Context())
	late.RequireOK(t)
	late.AssertSignals(t,
		ct.Want{ID: "demo-3", Version: "2026-12-07T08:00:20.000Z", Change: ct.Updated},
		ct.Want{ID: "demo-1", Version: "2026-12-07T08:00:30.000Z", Change: ct.Updated},
	)
}

// A worker whose clock is behind the one that polled last publishes
// nothing, rather than an item's previous version: the cursor holds the
// newest period published.
func TestAClockBehindGoesNotBack(t *testing.T) {
	c := &clock{now: eight.Add(10 * time.Second)}
	h := ct.New(t, factoryAt(c), TypeName, `{"items": 3}`)
	h.Poll(t.Context()).RequireOK(t)

	c.Set(eight.Add(9 * time.Second)) // another worker, a second behind
	behind := h.Poll(t.Context())
	behind.RequireOK(t)
	behind.AssertNoSignals(t)
	assert.Equal(t, "2026-12-07T08:00:10Z", behind.State.Cursor, "the cursor stays")

	c.Set(eight.Add(20 * time.Second))
	h.Poll(t.Context()).AssertSignals(t, ct.Want{ID: "demo-3", Version: "2026-12-07T08:00:20.000Z", Change: ct.Updated})
}

func TestCursor(t *testing.T) {
	conn := build(t, &clock{now: eight.Add(12 * time.Second)}, `{"items": 3}`)
	tests := []struct {
		name, cursor, want string
	}{
		{"none", "", "2026-12-07T08:00:10Z"},
		{"behind the clock", "2026-12-07T07:00:00Z", "2026-12-07T08:00:10Z"},
		{"ahead of the clock", "2026-12-07T08:00:40Z", "2026-12-07T08:00:40Z"},
		{"unreadable: the clock alone", "period 7", "2026-12-07T08:00:10Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := poll(t, conn, connector.State{Cursor: tt.cursor, ETag: `"kept"`})
			assert.Equal(t, tt.want, res.State.Cursor)
			assert.Equal(t, `"kept"`, res.State.ETag, "the rest of the state is passed through")
		})
	}
}

func TestCancelledPoll(t *testing.T) {
	conn := build(t, &clock{now: eight}, `{}`)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	res, err := conn.Poll(ctx, connector.State{})
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, "demo: context canceled", err.Error())
	assert.Empty(t, res.Items)
}

func TestConfig(t *testing.T) {
	valid := []struct{ name, raw string }{
		{"empty", `{}`},
		{"null", `null`},
		{"the bounds", `{"items": 1000, "change_every": "24h"}`},
		{"the other bounds", `{"items": 1, "change_every": "1s"}`},
		{"allow_hosts, which changes nothing", `{"allow_hosts": ["10.0.0.0/8"]}`},
	}
	for _, tt := range valid {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := New(json.RawMessage(tt.raw), connector.Deps{})
			require.NoError(t, err)
			assert.NotNil(t, conn)
		})
	}

	conn, err := New(json.RawMessage(`{}`), connector.Deps{})
	require.NoError(t, err)
	assert.Equal(t, 5, conn.(*poller).items, "default items")
	assert.Equal(t, 10*time.Second, conn.(*poller).every, "default change_every")

	invalid := []struct {
		name, raw string
		want      []string
	}{
		{"no items", `{"items": 0}`, []string{"config.items: 0 is out of range (write a number from 1 to 1000; default 5)"}},
		{"too many items", `{"items": 1001}`, []string{"config.items: 1001 is out of range"}},
		{"items as a string", `{"items": "5"}`, []string{"config.items: must be a whole number, not a string"}},
		{"too often", `{"change_every": "500ms"}`,
			[]string{`config.change_every: "500ms" is out of range (write a duration from "1s" to "24h"; default "10s")`}},
		{"too seldom", `{"change_every": "25h"}`, []string{`config.change_every: "25h" is out of range`}},
		{"negative", `{"change_every": "-10s"}`, []string{`config.change_every: "-10s" is out of range`}},
		{"not a duration", `{"change_every": "10"}`, []string{`config.change_every: "10" is not a duration (write a Go duration such as "30s"`}},
		{"a number of seconds", `{"change_every": 10}`, []string{`config.change_every: must be a duration such as "30s", not a number`}},
		{"a misspelt field", `{"change_evry": "10s"}`, []string{`config.change_evry: unknown field (did you mean "change_every"?)`}},
		{"every problem at once", `{"items": 0, "change_every": "1ms"}`,
			[]string{"config.items: 0 is out of range", `config.change_every: "1ms" is out of range`}},
	}
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			err := ct.ConfigError(t, New, tt.raw, tt.want...)
			if tt.name == "not a duration" {
				assert.NotContains(t, err.Error(), "out of range", "a bad duration is reported once")
			}
		})
	}
}
