package httpjson

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
	ct "github.com/pollgrid/pollgrid/pkg/connectortest"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

const (
	fixtureUSGS         = "all_hour_2017.json"
	fixtureIssues1      = "list_issues_page1.json"
	fixtureIssues2      = "list_issues_page2.json"
	fixtureIssuesLast   = "list_issues_page5_last.json"
	fixture304          = "conditional_get_304_not_modified.headers.json"
	fixtureNWSPaged     = "alerts_with_pagination_2020.json"
	fixtureNWSZone      = "alerts_active_zone_ORZ004_2019.json"
	fixtureSlack1       = "conversations_history_page1.json"
	fixtureSlackLatest  = "conversations_history_latest_inclusive.json"
	fixtureDatadog1     = "events_v2_list_page1.json"
	fixtureDatadogEmpty = "events_v2_list_page3_empty.json"

	// issuesPath is the first request of the recorded GitHub scenario; its
	// Link headers then move to /repositories/515435940/issues.
	issuesPath = "/repos/octokit-fixture-org/tmp-scenario-paginate-issues-20220719043836917-izyoe/issues"
	githubAPI  = "https://api.github.com"
)

// usgsIDs are the feature ids of all_hour_2017.json, in file order, with
// their properties.updated: what the usgs-earthquakes connector publishes.
var usgsIDs = []string{"nc72934355", "nc72934350", "ci37822583", "nc72934340", "nc72934335", "nc72934325", "ci37822575", "us1000bknk"}

var usgsVersions = []string{"1512342889220", "1512342811919", "1512342465682", "1512342183111", "1512342603127", "1512341343063", "1512340509319", "1512340670040"}

// jsonAnswer is a 200 answer with a JSON body.
func jsonAnswer(body string) ct.Response { return ct.JSON(http.StatusOK, []byte(body)) }

// newConnector builds the connector through the public factory.
func newConnector(t *testing.T, srv *ct.Server, config map[string]any) connector.Connector {
	t.Helper()
	raw, err := json.Marshal(config)
	require.NoError(t, err)
	c, err := New(raw, connector.Deps{HTTP: srv.Client()})
	require.NoError(t, err)
	return c
}

// usgsConfig is the README's USGS stand-in.
func usgsConfig(url string) map[string]any {
	return map[string]any{
		"url":         url + "/earthquakes/feed/v1.0/summary/all_hour.geojson",
		"items":       ".features[]",
		"id":          ".id",
		"version":     ".properties.updated | tostring",
		"time":        ".properties.updated",
		"cursor_kind": "number",
		"data":        "{id, magnitude: .properties.mag, place: .properties.place, time: .properties.time, updated: .properties.updated, url: .properties.url}",
	}
}

// githubIssuesConfig is the README's GitHub issues stand-in.
func githubIssuesConfig(url string) map[string]any {
	return map[string]any{
		"url":            url + issuesPath + "?per_page=3&since={{cursor}}",
		"initial_cursor": "2022-07-01T00:00:00Z",
		"headers":        map[string]string{"Accept": "application/vnd.github+json", "Authorization": "Bearer ghp_test0000000000000000000000000000001"},
		"items":          ".[] | select(has(\"pull_request\") | not)",
		"id":             ".number | tostring",
		"version":        ".updated_at",
		"time":           ".updated_at",
		"cursor_kind":    "time",
		"data":           "{number, title, state, user: .user.login, labels: [.labels[].name], updated_at, url: .html_url}",
		"pagination":     map[string]any{"style": "link_header"},
	}
}

// githubPages answers the recorded scenario. Pages 3 and 4 were not kept in
// the fixtures, so page 2's rel="next" (page=3) gets the last page.
func githubPages(t *testing.T) *ct.Server {
	srv := ct.Replay(t,
		ct.GET(issuesPath, ct.Load(t, fixtureIssues1)),
		ct.GET("/repositories/515435940/issues?page=2", ct.Load(t, fixtureIssues2)),
		ct.GET("/repositories/515435940/issues?page=3", ct.Load(t, fixtureIssuesLast)))
	srv.RewriteHeaders(githubAPI)
	return srv
}

func TestStandsInForUSGS(t *testing.T) {
	srv := ct.Replay(t, ct.Any(ct.Load(t, fixtureUSGS)))
	c := newConnector(t, srv, usgsConfig(srv.URL))

	res, err := c.Poll(t.Context(), connector.State{})
	require.NoError(t, err)

	assert.Empty(t, res.Failed)
	assert.Equal(t, usgsIDs, ct.ItemIDs(res.Items))
	assert.Equal(t, usgsVersions, ct.ItemVersions(res.Items))
	assert.Equal(t, "1512342889220", res.State.Cursor, "the greatest properties.updated, as a number")
	assert.JSONEq(t, `{"id":"nc72934355","magnitude":1.93,"place":"17km ESE of Anderson, CA","time":1512342790490,
		"updated":1512342889220,"url":"https://earthquake.usgs.gov/earthquakes/eventpage/nc72934355"}`, string(res.Items[0].Data))

	reqs := srv.Requests()
	require.Len(t, reqs, 1)
	assert.Equal(t, http.MethodGet, reqs[0].Method)
	assert.Equal(t, "/earthquakes/feed/v1.0/summary/all_hour.geojson", reqs[0].URL.Path)
	assert.Equal(t, "application/json", reqs[0].Header.Get("Accept"))
}

func TestStandsInForGitHubIssues(t *testing.T) {
	srv := githubPages(t)
	c := newConnector(t, srv, githubIssuesConfig(srv.URL))

	res, err := c.Poll(t.Context(), connector.State{})
	require.NoError(t, err)

	assert.Empty(t, res.Failed)
	assert.Equal(t, []string{"13", "12", "11", "10", "9", "8", "1"}, ct.ItemIDs(res.Items))
	assert.Equal(t, []string{"2022-07-19T04:39:16Z", "2022-07-19T04:39:13Z", "2022-07-19T04:39:10Z",
		"2022-07-19T04:39:07Z", "2022-07-19T04:39:04Z", "2022-07-19T04:39:01Z", "2022-07-19T04:38:40Z"}, ct.ItemVersions(res.Items))
	assert.Equal(t, "2022-07-19T04:39:16Z", res.State.Cursor, "the greatest updated_at")
	assert.Equal(t, `"33b993150c346057e2d21c5333d4bc506287037296cc0ec3f450bafe9b4bdc72"`, res.State.ETag, "page 1's ETag")

	var issue map[string]any
	require.NoError(t, json.Unmarshal(res.Items[0].Data, &issue))
	assert.Equal(t, float64(13), issue["number"])
	assert.Equal(t, "https://github.com/octokit-fixture-org/tmp-scenario-paginate-issues-20220719043836917-izyoe/issues/13", issue["url"])

	reqs := srv.Requests()
	require.Len(t, reqs, 3)
	assert.Equal(t, issuesPath, reqs[0].URL.Path)
	assert.Equal(t, "per_page=3&since=2022-07-01T00%3A00%3A00Z", reqs[0].URL.RawQuery, "initial_cursor on the first poll")
	assert.Equal(t, "/repositories/515435940/issues", reqs[1].URL.Path)
	assert.Equal(t, "per_page=3&page=2", reqs[1].URL.RawQuery, "the Link URL as given")
	assert.Equal(t, "per_page=3&page=3", reqs[2].URL.RawQuery)
	for i, r := range reqs {
		assert.Equal(t, "Bearer ghp_test0000000000000000000000000000001", r.Header.Get("Authorization"), "request %d", i)
		assert.Equal(t, "application/vnd.github+json", r.Header.Get("Accept"), "request %d", i)
		assert.Empty(t, r.Header.Get("If-None-Match"), "request %d: nothing stored yet", i)
	}
}

func TestConditionalRequests(t *testing.T) {
	state := connector.State{Cursor: "2022-07-19T04:39:16Z", ETag: `"8600bedcb7fed1d8065e1693e05529ce"`, LastModified: "Thu, 22 Aug 2013 02:09:11 GMT"}

	t.Run("304 is NotModified and keeps the state", func(t *testing.T) {
		srv := ct.Replay(t, ct.Any(ct.Load(t, fixture304)))
		c := newConnector(t, srv, githubIssuesConfig(srv.URL))

		res, err := c.Poll(t.Context(), state)
		require.NoError(t, err)
		assert.True(t, res.NotModified)
		assert.Empty(t, res.Items)
		assert.Equal(t, state, res.State)

		reqs := srv.Requests()
		require.Len(t, reqs, 1)
		assert.Equal(t, state.ETag, reqs[0].Header.Get("If-None-Match"))
		assert.Equal(t, state.LastModified, reqs[0].Header.Get("If-Modified-Since"))
	})
	t.Run("only the first page is conditional", func(t *testing.T) {
		srv := githubPages(t)
		c := newConnector(t, srv, githubIssuesConfig(srv.URL))

		res, err := c.Poll(t.Context(), state)
		require.NoError(t, err)
		assert.False(t, res.NotModified)
		assert.Len(t, res.Items, 7)
		reqs := srv.Requests()
		require.Len(t, reqs, 3)
		assert.Equal(t, state.ETag, reqs[0].Header.Get("If-None-Match"))
		for _, r := range reqs[1:] {
			assert.Empty(t, r.Header.Get("If-None-Match"))
			assert.Empty(t, r.Header.Get("If-Modified-Since"))
		}
	})
	t.Run("conditional false sends and keeps no validators", func(t *testing.T) {
		srv := ct.Replay(t, ct.Any(ct.Load(t, fixtureUSGS)))
		cfg := usgsConfig(srv.URL)
		cfg["conditional"] = false
		c := newConnector(t, srv, cfg)

		res, err := c.Poll(t.Context(), state)
		require.NoError(t, err)
		assert.Len(t, res.Items, 8)
		assert.Empty(t, res.State.ETag)
		assert.Empty(t, res.State.LastModified)
		reqs := srv.Requests()
		require.Len(t, reqs, 1)
		assert.Empty(t, reqs[0].Header.Get("If-None-Match"))
		assert.Empty(t, reqs[0].Header.Get("If-Modified-Since"))
	})
	t.Run("a 304 to a request that was not conditional fails the poll", func(t *testing.T) {
		srv := ct.Replay(t, ct.Any(ct.Load(t, fixture304)))
		c := newConnector(t, srv, githubIssuesConfig(srv.URL))

		_, err := c.Poll(t.Context(), connector.State{})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "upstream answered 304 Not Modified to a request that was not conditional")
	})
}

func TestPOSTWithTemplatedBody(t *testing.T) {
	srv := ct.Replay(t, ct.Any(ct.Load(t, fixtureUSGS)))
	cfg := usgsConfig(srv.URL)
	cfg["method"] = "POST"
	cfg["body"] = `{"query":{"updated_after":"{{cursor}}"},"limit":100}`
	c := newConnector(t, srv, cfg)

	res, err := c.Poll(t.Context(), connector.State{Cursor: `1512340000000 "quoted"`})
	require.NoError(t, err)
	assert.Len(t, res.Items, 8)

	reqs := srv.Requests()
	require.Len(t, reqs, 1)
	assert.Equal(t, http.MethodPost, reqs[0].Method)
	assert.Equal(t, "application/json", reqs[0].Header.Get("Content-Type"))
	assert.Equal(t, `{"query":{"updated_after":"1512340000000 \"quoted\""},"limit":100}`, string(reqs[0].Body),
		"the cursor is escaped for a JSON string")
	assert.True(t, json.Valid(reqs[0].Body))
	assert.Empty(t, reqs[0].Header.Get("If-None-Match"), "a POST is never conditional")
}

func TestHeadersAndSecrets(t *testing.T) {
	const token = "s3cr3t-0123456789abcdef"
	const apiKey = "key-9876543210"
	cfg := func(url string) map[string]any {
		c := usgsConfig(url)
		c["headers"] = map[string]string{"Authorization": "Bearer " + token, "X-Api-Key": apiKey, "User-Agent": "(pollgrid-test, ops@example.com)"}
		return c
	}

	t.Run("headers go on the request", func(t *testing.T) {
		srv := ct.Replay(t, ct.Any(ct.Load(t, fixtureUSGS)))
		c := newConnector(t, srv, cfg(srv.URL))
		_, err := c.Poll(t.Context(), connector.State{})
		require.NoError(t, err)
		reqs := srv.Requests()
		require.Len(t, reqs, 1)
		assert.Equal(t, "Bearer "+token, reqs[0].Header.Get("Authorization"))
		assert.Equal(t, apiKey, reqs[0].Header.Get("X-Api-Key"))
		assert.Equal(t, "(pollgrid-test, ops@example.com)", reqs[0].Header.Get("User-Agent"))
	})
	t.Run("an upstream that echoes the secret does not put it in the error", func(t *testing.T) {
		srv := ct.Serve(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"message":"Bad credentials: ` + r.Header.Get("Authorization") + ` / ` + r.Header.Get("X-Api-Key") + `"}`))
		})
		c := newConnector(t, srv, cfg(srv.URL+"/x?api_key=querysecret123"))
		_, err := c.Poll(t.Context(), connector.State{})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "upstream answered 401 Unauthorized")
		assert.Contains(t, err.Error(), "Bad credentials: [redacted] / [redacted]")
		assert.NotContains(t, err.Error(), token)
		assert.NotContains(t, err.Error(), apiKey)
		assert.NotContains(t, err.Error(), "querysecret123", "the query is left out of error texts")
		statusErr, ok := errors.AsType[*upstream.StatusError](err)
		require.True(t, ok, "the StatusError stays in the chain")
		assert.Equal(t, http.StatusUnauthorized, statusErr.StatusCode)
	})
	t.Run("a transport error does not show the URL's query", func(t *testing.T) {
		closed := ct.Replay(t, ct.Any(ct.Load(t, fixtureUSGS)))
		closed.Close()
		c := newConnector(t, closed, cfg(closed.URL+"/x?api_key=querysecret123"))
		_, err := c.Poll(t.Context(), connector.State{})
		require.Error(t, err)
		assert.NotContains(t, err.Error(), "querysecret123")
		assert.Contains(t, err.Error(), "http-json GET "+closed.URL+"/x?api_key=xxxxx: ")
	})
	t.Run("config errors never show header values", func(t *testing.T) {
		raw, err := json.Marshal(map[string]any{
			"url": "https://api.example.com/items", "items": ".", "id": ".id",
			"headers": map[string]string{"Authorization": "Bearer " + token + "\r\nX-Evil: 1", "X-Empty": " ", "Bad Name": token},
		})
		require.NoError(t, err)
		_, err = New(raw, connector.Deps{})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "config.headers.Authorization: the value must be one line")
		assert.Contains(t, err.Error(), "config.headers.X-Empty: empty (is the ${VAR} it names set in the environment?)")
		assert.Contains(t, err.Error(), `config.headers: "Bad Name" is not a header name`)
		assert.NotContains(t, err.Error(), token)
	})
	t.Run("jq cannot read the environment", func(t *testing.T) {
		t.Setenv("HTTPJSON_TEST_SECRET", token)
		srv := ct.Replay(t, ct.Any(jsonAnswer(`[{"id":1}]`)))
		c := newConnector(t, srv, map[string]any{
			"url": srv.URL, "items": ".", "id": ".id",
			"data": `{env: env.HTTPJSON_TEST_SECRET, ENV: $ENV.HTTPJSON_TEST_SECRET}`,
		})
		res, err := c.Poll(t.Context(), connector.State{})
		require.NoError(t, err)
		require.Len(t, res.Items, 1)
		assert.JSONEq(t, `{"env":null,"ENV":null}`, string(res.Items[0].Data))
	})
}

func TestFailedPolls(t *testing.T) {
	tests := []struct {
		name    string
		answer  ct.Response
		config  map[string]any
		wantErr []string
		status  int
	}{
		{name: "500", answer: ct.JSON(500, []byte(`{"message":"Server Error"}`)),
			wantErr: []string{"http-json GET ", "/earthquakes/feed/v1.0/summary/all_hour.geojson: upstream answered 500 Internal Server Error: {\"message\":\"Server Error\"}"},
			status:  500},
		{name: "not JSON", answer: ct.Response{Status: 200, Header: http.Header{"Content-Type": {"text/html"}}, Body: []byte("<html><body>maintenance</body></html>")},
			wantErr: []string{"response is not the JSON expected", `(Content-Type "text/html")`}},
		{name: "items yields null", answer: jsonAnswer(`{"data":[]}`), config: map[string]any{"items": ".features"},
			wantErr: []string{"items: output 0 is null, not an array or an object (check the expression against the response"}},
		{name: "items yields a number", answer: ct.Load(t, fixtureUSGS), config: map[string]any{"items": ".metadata.count"},
			wantErr: []string{"items: output 0 is a number, not an array or an object"}},
		{name: "items jq error", answer: ct.Load(t, fixtureUSGS), config: map[string]any{"items": ".metadata.title | .x"},
			wantErr: []string{`items: jq: expected an object but got: string ("USGS All Earthquakes, Pa ...")`}},
		{name: "a stream with a scalar", answer: jsonAnswer(`{"features":[{"id":"a"},3]}`),
			wantErr: []string{"items: output 1 is a number", `e.g. ".features" instead of ".features[]"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := ct.Replay(t, ct.Any(tt.answer))
			cfg := usgsConfig(srv.URL)
			for k, v := range tt.config {
				cfg[k] = v
			}
			c := newConnector(t, srv, cfg)
			res, err := c.Poll(t.Context(), connector.State{Cursor: "1"})
			require.Error(t, err)
			assert.Empty(t, res.Items)
			assert.Empty(t, res.State.Cursor, "a failed poll returns no state")
			for _, want := range tt.wantErr {
				assert.Contains(t, err.Error(), want)
			}
			if tt.status != 0 {
				statusErr, ok := errors.AsType[*upstream.StatusError](err)
				require.True(t, ok)
				assert.Equal(t, tt.status, statusErr.StatusCode)
			}
		})
	}
}

func TestCancelAbortsThePoll(t *testing.T) {
	srv := ct.Hang(t, nil)
	err := srv.CancelPoll(t, newConnector(t, srv.Server, usgsConfig(srv.URL)))
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled)
	assert.True(t, strings.HasPrefix(err.Error(), "http-json GET "), err.Error())
}

func TestCancelStopsJQ(t *testing.T) {
	srv := ct.Replay(t, ct.Any(jsonAnswer(`[{"id":1}]`)))
	// An items expression that never ends: only the context stops it.
	c := newConnector(t, srv, map[string]any{"url": srv.URL, "items": "until(false; .)", "id": ".id"})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Poll(ctx, connector.State{})
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestNilHTTPClientFallsBackToUpstreamClient(t *testing.T) {
	srv := ct.Replay(t, ct.Any(ct.Load(t, fixtureUSGS)))
	cfg := usgsConfig(srv.URL)
	cfg["allow_hosts"] = []string{"127.0.0.1"}
	raw, err := json.Marshal(cfg)
	require.NoError(t, err)
	c, err := New(raw, connector.Deps{})
	require.NoError(t, err)
	res, err := c.Poll(t.Context(), connector.State{})
	require.NoError(t, err)
	assert.Len(t, res.Items, 8)
	reqs := srv.Requests()
	require.Len(t, reqs, 1)
	assert.True(t, strings.HasPrefix(reqs[0].Header.Get("User-Agent"), "pollgrid/"), reqs[0].Header.Get("User-Agent"))
}

func BenchmarkPoll(b *testing.B) {
	body := ct.Load(b, fixtureUSGS).Body
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	b.Cleanup(srv.Close)
	raw, err := json.Marshal(usgsConfig(srv.URL))
	require.NoError(b, err)
	c, err := New(raw, connector.Deps{HTTP: srv.Client()})
	require.NoError(b, err)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		res, err := c.Poll(b.Context(), connector.State{})
		if err != nil || len(res.Items) != 8 {
			b.Fatalf("poll: %d items, %v", len(res.Items), err)
		}
	}
}

func TestConnectorsWithTheSameHeadersShareThem(t *testing.T) {
	build := func(url string) *poller {
		c, err := New(json.RawMessage(`{"url": "`+url+`", "items": ".", "id": ".id", "headers": {"X-Team": "wx"}}`), connector.Deps{})
		require.NoError(t, err)
		return c.(*poller)
	}
	a, b := build("https://api.example.com/a"), build("https://api.example.com/b")
	assert.Same(t, a.headers, b.headers, "one header set for connectors that send the same headers")
	assert.Equal(t, "wx", a.headers.Get("X-Team"))
	assert.Equal(t, "application/json", a.headers.Get("Accept"))
}
