package datadogevents

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
	ct "github.com/pollgrid/pollgrid/pkg/connectortest"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

// The fixtures are real answers of GET /api/v2/events recorded by Datadog's
// Python client (see shared/fixtures/PROVENANCE.md): a page of 2 events with
// meta.page.after, and the empty page that ends the list.
const (
	fixturePage1 = "events_v2_list_page1.json"
	fixturePage2 = "events_v2_list_page2.json"
	fixtureEmpty = "events_v2_list_page3_empty.json"

	testAPIKey = "test-api-key"
	testAppKey = "test-app-key"

	page2After = "eyJhZnRlciI6IkFnQUFBWUdDRlRXSTJoUnZQZ0FBQUFBQUFBQVlBQUFBQUVGWlIwTkdWRmRKUVVGRVVqbERWbEZ5ZEdoZlMxOXJRZ0FBQUNRQUFBQUFNREU0TVRneU1UVXRNelU0T0MwME1EZGhMV0V5TURndE1qUmxZekE1TmpVMVptTmkifQ"
	page1After = "eyJhZnRlciI6IkFnQUFBWUdDRldoUV9BZHZQZ0FBQUFBQUFBQVlBQUFBQUVGWlIwTkdWMmhSUVVGQ1VIQk5UMjQxVURKZllVZzFTUUFBQUNRQUFBQUFNREU0TVRneU1UVXROekF5TUMwMFpXTTJMV0l3WVdJdFpEVTFZbU0zTlRZMlpUUTMifQ"
	firstID    = "AgAAAYGCFXAgIVFvPgAAAAAAAAAYAAAAAEFZR0NGWEFnQUFBeFhHdU9OeF91OEZjSwAAACQAAAAAMDE4MTgyMTUtNzAyMC00ZWM2LWIwYWItZDU1YmM3NTY2ZTQ3"
	secondID   = "AgAAAYGCFWhQ_AdvPgAAAAAAAAAYAAAAAEFZR0NGV2hRQUFCUHBNT241UDJfYUg1SQAAACQAAAAAMDE4MTgyMTUtNzAyMC00ZWM2LWIwYWItZDU1YmM3NTY2ZTQ3"
)

// servePages answers page 1 first, then the empty page for page 1's cursor.
func servePages(t *testing.T) http.HandlerFunc {
	page1, empty := ct.Load(t, fixturePage1), ct.Load(t, fixtureEmpty)
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("page[cursor]") == page1After {
			empty.ServeHTTP(w, r)
			return
		}
		page1.ServeHTTP(w, r)
	}
}

// newPoller builds the connector through the public factory, pointed at f.
func newPoller(t *testing.T, f *ct.Server, config map[string]any) connector.Connector {
	t.Helper()
	cfg := map[string]any{"base_url": f.URL, "api_key": testAPIKey, "app_key": testAppKey}
	for k, v := range config {
		cfg[k] = v
	}
	raw, err := json.Marshal(cfg)
	require.NoError(t, err)
	c, err := New(raw, connector.Deps{HTTP: f.Client()})
	require.NoError(t, err)
	return c
}

func decodeEvent(t *testing.T, item connector.Item) map[string]any {
	t.Helper()
	var data map[string]any
	require.NoError(t, json.Unmarshal(item.Data, &data))
	return data
}

func TestPollRecordedPages(t *testing.T) {
	f := ct.Serve(t, servePages(t))
	c := newPoller(t, f, nil)

	res, err := c.Poll(t.Context(), connector.State{})
	require.NoError(t, err)

	assert.Empty(t, res.Failed)
	assert.Equal(t, []string{firstID, secondID}, ct.ItemIDs(res.Items))
	assert.Equal(t, "2022-06-20T17:07:32Z", res.Items[0].Version)
	assert.Equal(t, "2022-06-20T17:07:30Z", res.Items[1].Version)
	assert.Equal(t, map[string]any{
		"id":        firstID,
		"title":     "[Synthetics] EVMGT pipeline test",
		"message":   "Synthetics test check that this event has the right content in the right format at the end of the event-pipeline output",
		"timestamp": "2022-06-20T17:07:32Z",
		"tags":      []any{"environment:staging", "source:my_apps"},
		"source":    "my_apps",
		"status":    "info",
		"priority":  "normal",
		"host":      "do ani",
		"service":   "undefined",
	}, decodeEvent(t, res.Items[0]))
	assert.Equal(t, connector.State{Cursor: "2022-06-20T17:07:32Z"}, res.State, "the newest timestamp, not the last one read")

	reqs := f.Requests()
	require.Len(t, reqs, 2, "page 1, then the empty page that ends the list")
	for _, r := range reqs {
		assert.Equal(t, "/api/v2/events", r.URL.Path)
		assert.Equal(t, testAPIKey, r.Header.Get("DD-API-KEY"))
		assert.Equal(t, testAppKey, r.Header.Get("DD-APPLICATION-KEY"))
	}
	assert.Equal(t, url.Values{"filter[from]": {"now-15m"}, "sort": {"timestamp"}, "page[limit]": {"100"}}, reqs[0].URL.Query(),
		"the first poll reads the lookback")
	assert.Equal(t, url.Values{"filter[from]": {"now-15m"}, "sort": {"timestamp"}, "page[limit]": {"100"},
		"page[cursor]": {page1After}}, reqs[1].URL.Query())
}

func TestEmptyPage(t *testing.T) {
	f := ct.Replay(t, ct.Any(ct.Load(t, fixtureEmpty)))
	res, err := newPoller(t, f, nil).Poll(t.Context(), connector.State{Cursor: "2022-06-20T17:07:32Z"})
	require.NoError(t, err)
	assert.Empty(t, res.Items)
	assert.Equal(t, connector.State{Cursor: "2022-06-20T17:07:32Z"}, res.State, "nothing new: the cursor stays")
	assert.Len(t, f.Requests(), 1)
}

func TestFilterFrom(t *testing.T) {
	tests := []struct {
		name      string
		cursor    string
		config    map[string]any
		wantQuery url.Values
	}{
		{name: "cursor minus the index margin", cursor: "2022-06-20T17:07:32Z",
			wantQuery: url.Values{"filter[from]": {"2022-06-20T17:06:32Z"}, "sort": {"timestamp"}, "page[limit]": {"100"}}},
		{name: "milliseconds are dropped, rounding down", cursor: "2022-06-20T17:07:32.999Z",
			wantQuery: url.Values{"filter[from]": {"2022-06-20T17:06:32Z"}, "sort": {"timestamp"}, "page[limit]": {"100"}}},
		{name: "an offset cursor is sent in UTC", cursor: "2022-06-20T19:07:32+02:00",
			wantQuery: url.Values{"filter[from]": {"2022-06-20T17:06:32Z"}, "sort": {"timestamp"}, "page[limit]": {"100"}}},
		{name: "an unreadable cursor falls back to the lookback", cursor: "last tuesday", config: map[string]any{"lookback": "2h"},
			wantQuery: url.Values{"filter[from]": {"now-2h"}, "sort": {"timestamp"}, "page[limit]": {"100"}}},
		{name: "query and page_limit", config: map[string]any{"query": "source:github status:error", "page_limit": 1000},
			wantQuery: url.Values{"filter[from]": {"now-15m"}, "filter[query]": {"source:github status:error"},
				"sort": {"timestamp"}, "page[limit]": {"1000"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := ct.Replay(t, ct.Any(ct.Load(t, fixtureEmpty)))
			_, err := newPoller(t, f, tt.config).Poll(t.Context(), connector.State{Cursor: tt.cursor})
			require.NoError(t, err)
			require.Len(t, f.Requests(), 1)
			assert.Equal(t, tt.wantQuery, f.Requests()[0].URL.Query())
		})
	}
}

func TestCursorNeverMovesBack(t *testing.T) {
	f := ct.Serve(t, servePages(t))
	res, err := newPoller(t, f, nil).Poll(t.Context(), connector.State{Cursor: "2022-06-20T17:07:40Z"})
	require.NoError(t, err)
	assert.Len(t, res.Items, 2, "events inside the margin are read again; change detection drops them")
	assert.Equal(t, "2022-06-20T17:07:40Z", res.State.Cursor)
}

// TestCursorLoop: a meta.page.after that names a page already read fails the
// poll with an error that says so, whether it repeats at once (A, A) or
// after other pages (A, B, A). The pages are the recorded ones; only the
// loop, page 1 answered again for page 2's cursor, is made up.
func TestCursorLoop(t *testing.T) {
	page1, page2 := ct.Load(t, fixturePage1), ct.Load(t, fixturePage2)
	tests := []struct {
		name      string
		routes    []ct.Route
		wantCalls int
		wantErr   string
	}{
		{
			name: "A, B, A",
			routes: []ct.Route{
				ct.GET("/api/v2/events?page[cursor]="+page1After, page2),
				ct.GET("/api/v2/events?page[cursor]="+page2After, page1),
				ct.GET("/api/v2/events", page1),
			},
			wantCalls: 3,
			wantErr:   "datadog: meta.page.after: page 4 would be page 2 again: the next-page token points back, so the upstream's pagination loops",
		},
		{
			name: "A, A",
			routes: []ct.Route{
				ct.GET("/api/v2/events?page[cursor]="+page1After, page1),
				ct.GET("/api/v2/events", page1),
			},
			wantCalls: 2,
			wantErr:   "datadog: meta.page.after: page 3 would be page 2 again",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := ct.Replay(t, tt.routes...)
			res, err := newPoller(t, f, nil).Poll(t.Context(), connector.State{Cursor: "2022-06-20T17:00:00Z"})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
			assert.Contains(t, err.Error(), "moves no cursor")
			assert.Equal(t, connector.Result{}, res, "a failed poll returns nothing, so no cursor moves")
			assert.Len(t, f.Requests(), tt.wantCalls, "no page is asked for twice")
		})
	}
}

func TestPageLimits(t *testing.T) {
	tests := []struct {
		name      string
		maxPages  int
		empty     bool
		after     func(page int) string
		wantCalls int
	}{
		{name: "stops at max_pages", maxPages: 3, after: func(page int) string { return "cursor-" + string(rune('a'+page)) }, wantCalls: 3},
		{name: "no after ends the poll", maxPages: 10, after: func(int) string { return "" }, wantCalls: 1},
		{name: "an empty page ends the poll even with an after", maxPages: 10, empty: true,
			after: func(page int) string { return "cursor-" + string(rune('a'+page)) }, wantCalls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body map[string]any
			require.NoError(t, json.Unmarshal(ct.Load(t, fixturePage1).Body, &body))
			page := 0 // the requests of one Poll are sequential
			f := ct.Serve(t, func(w http.ResponseWriter, r *http.Request) {
				body["meta"] = map[string]any{"page": map[string]any{"after": tt.after(page)}}
				if tt.empty {
					body["data"] = []any{}
				}
				page++
				encoded, err := json.Marshal(body)
				if err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				ct.JSON(http.StatusOK, encoded).ServeHTTP(w, r)
			})
			res, err := newPoller(t, f, map[string]any{"max_pages": tt.maxPages}).Poll(t.Context(), connector.State{})
			require.NoError(t, err)
			assert.Len(t, f.Requests(), tt.wantCalls)
			if !tt.empty {
				assert.Len(t, res.Items, 2*tt.wantCalls, "two events per page read")
			}
		})
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		body       string
		wantErr    string
		wantStatus int
	}{
		{name: "403 with Datadog's errors", status: 403, body: `{"errors":["Forbidden"]}`,
			wantErr:    "datadog: upstream answered 403 Forbidden: Forbidden (check config.api_key and config.app_key, that the application key has events_read, and that config.base_url is your Datadog site)",
			wantStatus: 403},
		{name: "400 with two messages", status: 400, body: `{"errors":["Invalid filter[from]","page[limit] too large"]}`,
			wantErr: "datadog: upstream answered 400 Bad Request: Invalid filter[from]; page[limit] too large", wantStatus: 400},
		{name: "429 without a body", status: 429,
			wantErr: "datadog: upstream answered 429 Too Many Requests", wantStatus: 429},
		{name: "502 HTML page is reduced to its text", status: 502,
			body:    "<html><head><title>502 Bad Gateway</title></head>\n<body><center><h1>502 Bad Gateway</h1></center><hr><center>cloudflare</center></body></html>",
			wantErr: `datadog: upstream answered 502 Bad Gateway: an HTML page: "cloudflare"`, wantStatus: 502},
		{name: "200 without data", status: 200, body: `{"meta":{}}`,
			wantErr: `datadog: response has no "data" array (is base_url your site's API?)`},
		{name: "200 that is not JSON", status: 200, body: `<!doctype html>`,
			wantErr: `datadog: response is not the JSON expected: invalid character '<' looking for beginning of value (starts "<!doctype html>")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := ct.Replay(t, ct.Any(ct.JSON(tt.status, []byte(tt.body))))
			res, err := newPoller(t, f, nil).Poll(t.Context(), connector.State{Cursor: "2022-06-20T17:07:32Z"})
			require.Error(t, err)
			assert.Equal(t, connector.Result{}, res, "a failed poll returns nothing, so no cursor moves")
			assert.EqualError(t, err, tt.wantErr)
			assert.NotContains(t, err.Error(), testAPIKey)
			assert.NotContains(t, err.Error(), testAppKey)
			statusErr, isStatus := errors.AsType[*upstream.StatusError](err)
			if tt.wantStatus != 0 {
				require.True(t, isStatus)
				assert.Equal(t, tt.wantStatus, statusErr.StatusCode)
			} else {
				assert.False(t, isStatus)
			}
		})
	}
}

func TestEvents(t *testing.T) {
	long := strings.Repeat("ü", maxMessageRunes+1)
	tests := []struct {
		name        string
		event       map[string]any
		wantVersion string
		want        map[string]any
	}{
		{
			name: "timestamp from the inner milliseconds when the outer is missing",
			event: map[string]any{"id": "e1", "type": "event", "attributes": map[string]any{
				"attributes": map[string]any{"timestamp": 1655744852123, "title": "t", "alert_type": "error", "source_type_name": "GitHub"}}},
			wantVersion: "2022-06-20T17:07:32.123Z",
			want: map[string]any{"id": "e1", "title": "t", "timestamp": "2022-06-20T17:07:32.123Z", "tags": []any{},
				"alert_type": "error", "source": "GitHub"},
		},
		{
			name: "long message is cut at 4000 characters, url kept",
			event: map[string]any{"id": "e2", "attributes": map[string]any{"message": long, "timestamp": "2022-06-20T17:07:33Z",
				"attributes": map[string]any{"url": "https://app.datadoghq.com/event/event?id=1"}}},
			wantVersion: "2022-06-20T17:07:33Z",
			want: map[string]any{"id": "e2", "timestamp": "2022-06-20T17:07:33Z", "tags": []any{},
				"message": strings.Repeat("ü", maxMessageRunes), "message_truncated": true,
				"url": "https://app.datadoghq.com/event/event?id=1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := json.Marshal(map[string]any{"data": []any{tt.event}})
			require.NoError(t, err)
			f := ct.Replay(t, ct.Any(ct.JSON(http.StatusOK, body)))
			res, err := newPoller(t, f, nil).Poll(t.Context(), connector.State{})
			require.NoError(t, err)
			require.Len(t, res.Items, 1)
			assert.Equal(t, tt.wantVersion, res.Items[0].Version)
			assert.Equal(t, tt.want, decodeEvent(t, res.Items[0]))
			assert.Equal(t, tt.wantVersion, res.State.Cursor)
		})
	}
}

func TestBadEvents(t *testing.T) {
	tests := []struct {
		name       string
		event      any
		wantFailed string
		wantErr    string
	}{
		{name: "no id", event: map[string]any{"attributes": map[string]any{"timestamp": "2022-06-20T17:07:32Z"}},
			wantFailed: "data[2]", wantErr: "event has no id"},
		{name: "not an object", event: []int{1}, wantFailed: "data[2]", wantErr: "not a Datadog event"},
		{name: "no timestamp", event: map[string]any{"id": "e3", "attributes": map[string]any{}},
			wantFailed: "e3", wantErr: "event has no timestamp"},
		{name: "timestamp that is not RFC 3339", event: map[string]any{"id": "e4", "attributes": map[string]any{"timestamp": "20 June"}},
			wantFailed: "e4", wantErr: `timestamp "20 June" is not RFC 3339`},
		{name: "field of the wrong type keeps the id", event: map[string]any{"id": "e5", "attributes": map[string]any{"tags": "a,b"}},
			wantFailed: "e5", wantErr: "not a Datadog event: json: cannot unmarshal string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body map[string]any
			require.NoError(t, json.Unmarshal(ct.Load(t, fixturePage1).Body, &body))
			body["data"] = append(body["data"].([]any), tt.event)
			delete(body, "meta")
			encoded, err := json.Marshal(body)
			require.NoError(t, err)
			f := ct.Replay(t, ct.Any(ct.JSON(http.StatusOK, encoded)))

			res, err := newPoller(t, f, nil).Poll(t.Context(), connector.State{})
			require.NoError(t, err, "one bad event never fails the poll")
			assert.Equal(t, []string{firstID, secondID}, ct.ItemIDs(res.Items))
			require.Len(t, res.Failed, 1)
			assert.Equal(t, tt.wantFailed, res.Failed[0].ID)
			assert.ErrorContains(t, res.Failed[0].Err, tt.wantErr)
		})
	}
}

func TestCancelAbortsThePoll(t *testing.T) {
	srv := ct.Hang(t, nil)
	err := srv.CancelPoll(t, newPoller(t, srv.Server, nil))
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled)
	assert.True(t, strings.HasPrefix(err.Error(), "datadog: "), err.Error())
}

func TestNilHTTPClientFallsBack(t *testing.T) {
	f := ct.Serve(t, servePages(t))
	raw := []byte(`{"base_url":"` + f.URL + `","api_key":"k","app_key":"a","allow_hosts":["127.0.0.1"]}`)
	c, err := New(raw, connector.Deps{})
	require.NoError(t, err)
	res, err := c.Poll(t.Context(), connector.State{})
	require.NoError(t, err)
	assert.Len(t, res.Items, 2)
	assert.Contains(t, f.Requests()[0].Header.Get("User-Agent"), "pollgrid/")
}

func TestConfig(t *testing.T) {
	const keys = `"api_key":"s3cret-api","app_key":"s3cret-app"`
	tests := []struct {
		name    string
		raw     string
		wantErr []string
		// for a valid config
		wantURL, wantLookback string
		wantLimit, wantPages  int
	}{
		{name: "defaults", raw: `{` + keys + `}`,
			wantURL: "https://api.datadoghq.com/api/v2/events", wantLookback: "15m", wantLimit: 100, wantPages: 10},
		{name: "EU site and limits", raw: `{` + keys + `,"base_url":"https://api.datadoghq.eu/","lookback":"1d","page_limit":1000,"max_pages":100}`,
			wantURL: "https://api.datadoghq.eu/api/v2/events", wantLookback: "1d", wantLimit: 1000, wantPages: 100},

		{name: "empty config", raw: ``, wantErr: []string{
			`config.api_key: required: write "${DD_API_KEY}" and set that variable`,
			`config.app_key: required: write "${DD_APP_KEY}" and set that variable`,
		}},
		{name: "missing app_key", raw: `{"api_key":"s3cret-api"}`, wantErr: []string{"config.app_key: required"}},
		{name: "key with a newline is not echoed", raw: `{"api_key":"s3cret-api\n","app_key":"s3cret-app"}`,
			wantErr: []string{"config.api_key: contains whitespace or control characters"}},
		{name: "the web app host", raw: `{` + keys + `,"base_url":"https://app.datadoghq.eu"}`,
			wantErr: []string{`config.base_url: "https://app.datadoghq.eu" is the web app; write the API host "https://api.datadoghq.eu"`}},
		{name: "base_url without scheme", raw: `{` + keys + `,"base_url":"api.datadoghq.com"}`,
			wantErr: []string{`config.base_url: "api.datadoghq.com" is not an absolute http(s) URL`}},
		{name: "Go duration as lookback", raw: `{` + keys + `,"lookback":"1h30m"}`,
			wantErr: []string{`config.lookback: "1h30m" is not a Datadog relative time (write a number and one unit of s, m, h, d or w, e.g. "90m"; default "15m")`}},
		{name: "page_limit out of range", raw: `{` + keys + `,"page_limit":1001}`,
			wantErr: []string{"config.page_limit: 1001 is out of range (write a number from 1 to 1000; default 100)"}},
		{name: "max_pages out of range", raw: `{` + keys + `,"max_pages":101}`,
			wantErr: []string{"config.max_pages: 101 is out of range (write a number from 1 to 100; default 10)"}},
		{name: "unknown field", raw: `{` + keys + `,"site":"datadoghq.eu"}`,
			wantErr: []string{`config.site: unknown field (known: api_key, app_key, base_url, query, lookback, page_limit, max_pages, allow_hosts)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.wantErr) > 0 {
				err := ct.ConfigError(t, New, tt.raw, tt.wantErr...)
				assert.NotContains(t, err.Error(), "s3cret", "no secret in config errors")
				return
			}
			c, err := New(json.RawMessage(tt.raw), connector.Deps{})
			require.NoError(t, err)
			p := c.(*eventPoller)
			assert.Equal(t, tt.wantURL, p.eventsURL)
			assert.Equal(t, tt.wantLookback, p.lookback)
			assert.Equal(t, tt.wantLimit, p.pageLimit)
			assert.Equal(t, tt.wantPages, p.maxPages)
		})
	}
}
