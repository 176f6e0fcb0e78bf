package httpjson

import (
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
	ct "github.com/pollgrid/pollgrid/pkg/connectortest"
)

// datadogConfig stands in for the datadog-events connector on Datadog's
// recorded answer: a relative initial cursor, kind time, a one-minute margin.
func datadogConfig(srvURL string) map[string]any {
	return map[string]any{
		"url":            srvURL + "/api/v2/events?filter[from]={{cursor}}&sort=timestamp",
		"initial_cursor": "now-15m",
		"headers":        map[string]string{"DD-API-KEY": "${DD_API_KEY}", "DD-APPLICATION-KEY": "${DD_APP_KEY}"},
		"items":          ".data",
		"id":             ".id",
		"version":        ".attributes.timestamp",
		"time":           ".attributes.timestamp",
		"cursor_kind":    "time",
		"cursor_margin":  "1m",
		"pagination":     map[string]any{"style": "cursor", "next": ".meta.page.after", "param": "page[cursor]"},
	}
}

// TestRelativeCursorMoves: Datadog's "now-15m" compared as a string is
// later than every RFC 3339 time ('n' > '2'), so the cursor never moved.
// Compared as a time it is the poll's start less 15 minutes, and the newest
// event replaces it; the next request starts a margin before that event.
func TestRelativeCursorMoves(t *testing.T) {
	srv := ct.Replay(t,
		ct.GET("/api/v2/events?page[cursor]="+datadogAfter, ct.Load(t, fixtureDatadogEmpty)),
		ct.GET("/api/v2/events", ct.Load(t, fixtureDatadog1)))
	c := newConnector(t, srv, datadogConfig(srv.URL))
	// The recording's own time: its events are 3 minutes old.
	c.(*poller).now = func() time.Time { return time.Date(2022, 6, 20, 17, 10, 0, 0, time.UTC) }

	first, err := c.Poll(t.Context(), connector.State{})
	require.NoError(t, err)
	assert.Len(t, first.Items, 2)
	assert.Equal(t, "2022-06-20T17:07:32Z", first.State.Cursor, "the newest event's time replaces now-15m")

	second, err := c.Poll(t.Context(), first.State)
	require.NoError(t, err)
	assert.Equal(t, "2022-06-20T17:07:32Z", second.State.Cursor, "the same events again: the cursor stays")

	reqs := srv.Requests()
	require.Len(t, reqs, 4)
	assert.Equal(t, "now-15m", reqs[0].URL.Query().Get("filter[from]"), "a relative cursor is sent as it is")
	assert.Equal(t, "2022-06-20T17:06:32Z", reqs[2].URL.Query().Get("filter[from]"), "the stored cursor less the one-minute margin")
}

func TestCursorRule(t *testing.T) {
	now := time.Date(2022, 6, 20, 17, 10, 0, 0, time.UTC)
	read := func(t *testing.T, r cursorRule, text string) mark {
		t.Helper()
		m, err := r.readCursor(text, now)
		require.NoError(t, err)
		return m
	}
	t.Run("times compare as instants, whatever the offset", func(t *testing.T) {
		r := cursorRule{kind: CursorTime}
		assert.False(t, r.after(read(t, r, "2024-01-01T01:00:00+01:00"), read(t, r, "2024-01-01T00:00:00Z")), "the same instant")
		assert.True(t, r.after(read(t, r, "2024-01-01T00:00:01Z"), read(t, r, "2024-01-01T01:00:00+01:00")))
		assert.True(t, r.after(read(t, r, "2022-06-20T17:07:32Z"), read(t, r, "now-15m")))
		assert.False(t, r.after(read(t, r, "2022-06-20T16:50:00Z"), read(t, r, "now-15m")))
	})
	t.Run("numbers compare by value, with every digit", func(t *testing.T) {
		r := cursorRule{kind: CursorNumber}
		assert.True(t, r.after(read(t, r, "10"), read(t, r, "9")))
		assert.False(t, r.after(read(t, r, "1e1"), read(t, r, "10")))
		assert.True(t, r.after(read(t, r, "12345678901234567891"), read(t, r, "12345678901234567890")))
	})
	t.Run("strings compare byte by byte", func(t *testing.T) {
		r := cursorRule{kind: CursorString}
		assert.True(t, r.after(read(t, r, "9"), read(t, r, "10")))
	})
	t.Run("the margin is taken off what is sent", func(t *testing.T) {
		assert.Equal(t, "2022-06-20T17:07:32Z", cursorRule{kind: CursorTime, timeMargin: time.Minute}.request("2022-06-20T18:08:32+01:00"))
		assert.Equal(t, "now-15m", cursorRule{kind: CursorTime, timeMargin: time.Minute}.request("now-15m"))
		margin, _ := readNumber("60")
		assert.Equal(t, "1512085890.000216", cursorRule{kind: CursorNumber, numberMargin: margin}.request("1512085950.000216"))
		margin, _ = readNumber("60000")
		assert.Equal(t, "1512342829220", cursorRule{kind: CursorNumber, numberMargin: margin}.request("1512342889220"))
		assert.Equal(t, "abc", cursorRule{kind: CursorString}.request("abc"))
	})
	t.Run("the next cursor never moves back", func(t *testing.T) {
		r := cursorRule{kind: CursorTime}
		next, err := r.next("2024-03-01T00:00:00Z", read(t, r, "2024-02-01T00:00:00Z"), now)
		require.NoError(t, err)
		assert.Equal(t, "2024-03-01T00:00:00Z", next)
		next, err = r.next("not a time", read(t, r, "2024-02-01T00:00:00Z"), now)
		assert.Error(t, err, "a cursor of another kind is reported")
		assert.Equal(t, "2024-02-01T00:00:00Z", next, "and gives way")
	})
}

func TestCursorItemErrors(t *testing.T) {
	tests := []struct {
		kind, body, want string
	}{
		{CursorTime, `[{"id":"a","t":1512342889220}]`, `items[0]: time: yields a number (1512342889220); cursor_kind is "time" (write cursor_kind "number")`},
		{CursorTime, `[{"id":"a","t":"yesterday"}]`, `items[0]: time: "yesterday" is not an RFC 3339 time`},
		{CursorTime, `[{"id":"a","t":"now-5m"}]`, `items[0]: time: yields "now-5m", a relative time; an item's time must be absolute`},
		{CursorNumber, `[{"id":"a","t":"soon"}]`, `items[0]: time: "soon" is not a number (cursor_kind is "number")`},
		{CursorString, `[{"id":"a","t":5}]`, `items[0]: time: yields a number (5); cursor_kind is "string"`},
	}
	for _, tt := range tests {
		t.Run(tt.kind+" "+tt.body, func(t *testing.T) {
			srv := ct.Replay(t, ct.Any(jsonAnswer(tt.body)))
			c := newConnector(t, srv, map[string]any{"url": srv.URL + "/x", "items": ".", "id": ".id", "time": ".t", "cursor_kind": tt.kind})
			res, err := c.Poll(t.Context(), connector.State{})
			require.NoError(t, err)
			require.Len(t, res.Failed, 1)
			assert.Contains(t, res.Failed[0].Err.Error(), tt.want)
		})
	}
}

// datadogAfter is meta.page.after of the recorded page 1, as a query value.
var datadogAfter = url.QueryEscape("eyJhZnRlciI6IkFnQUFBWUdDRldoUV9BZHZQZ0FBQUFBQUFBQVlBQUFBQUVGWlIwTkdWMmhSUVVGQ1VIQk5UMjQxVURKZllVZzFTUUFBQUNRQUFBQUFNREU0TVRneU1UVXROekF5TUMwMFpXTTJMV0l3WVdJdFpEVTFZbU0zTlRZMlpUUTMifQ")

func TestCursorTemplating(t *testing.T) {
	answers := []ct.Response{ct.Load(t, fixtureIssues1), ct.Load(t, fixtureIssuesLast), jsonAnswer(`[]`)}
	var mu sync.Mutex
	srv := ct.Serve(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		rec := answers[0]
		if len(answers) > 1 {
			answers = answers[1:]
		}
		mu.Unlock()
		rec.Header = http.Header{"Content-Type": {"application/json"}}
		rec.ServeHTTP(w, r)
	})
	cfg := githubIssuesConfig(srv.URL)
	cfg["url"] = srv.URL + issuesPath + "?state=all&since={{cursor}}&sort=updated"
	cfg["initial_cursor"] = "2022-07-01T00:00:00Z"
	cfg["pagination"] = map[string]any{"style": "none"}
	c := newConnector(t, srv, cfg)

	first, err := c.Poll(t.Context(), connector.State{})
	require.NoError(t, err)
	assert.Equal(t, "2022-07-19T04:39:16Z", first.State.Cursor)

	second, err := c.Poll(t.Context(), first.State)
	require.NoError(t, err)
	assert.Equal(t, []string{"1"}, ct.ItemIDs(second.Items))
	assert.Equal(t, "2022-07-19T04:39:16Z", second.State.Cursor, "an older item never moves the cursor back")

	third, err := c.Poll(t.Context(), second.State)
	require.NoError(t, err)
	assert.Empty(t, third.Items)
	assert.Equal(t, "2022-07-19T04:39:16Z", third.State.Cursor, "no items: the cursor stays")

	reqs := srv.Requests()
	require.Len(t, reqs, 3)
	assert.Equal(t, "state=all&since=2022-07-01T00%3A00%3A00Z&sort=updated", reqs[0].URL.RawQuery, "initial_cursor on the first poll")
	assert.Equal(t, "state=all&since=2022-07-19T04%3A39%3A16Z&sort=updated", reqs[1].URL.RawQuery, "the stored cursor, query-escaped")
}

func TestInitialCursorIsAFloor(t *testing.T) {
	srv := ct.Replay(t, ct.Any(jsonAnswer(string(ct.Load(t, fixtureIssuesLast).Body)))) // updated 04:38:40
	cfg := githubIssuesConfig(srv.URL)
	cfg["initial_cursor"] = "2022-07-19T04:39:00Z"
	c := newConnector(t, srv, cfg)

	res, err := c.Poll(t.Context(), connector.State{})
	require.NoError(t, err)
	assert.Equal(t, []string{"1"}, ct.ItemIDs(res.Items))
	assert.Equal(t, "2022-07-19T04:39:00Z", res.State.Cursor)
}
