package httpjson

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
	ct "github.com/pollgrid/pollgrid/pkg/connectortest"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

const (
	fixtureUSGS        = "all_hour_2017.json"
	fixtureIssues1     = "list_issues_page1.json"
	fixtureIssues2     = "list_issues_page2.json"
	fixtureIssuesLast  = "list_issues_page5_last.json"
	fixture304         = "conditional_get_304_not_modified.headers.json"
	fixtureNWSPaged    = "alerts_with_pagination_2020.json"
	fixtureNWSZone     = "alerts_active_zone_ORZ004_2019.json"
	fixtureSlack1      = "conversations_history_page1.json"
	fixtureSlackLatest = "conversations_history_latest_inclusive.json"

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
		"url":     url + "/earthquakes/feed/v1.0/summary/all_hour.geojson",
		"items":   ".features[]",
		"id":      ".id",
		"version": ".properties.updated | tostring",
		"time":    ".properties.updated",
		"data":    "{id, magnitude: .properties.mag, place: .properties.place, time: .properties.time, updated: .properties.updated, url: .properties.url}",
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

func TestNextURLPagination(t *testing.T) {
	nws := ct.Load(t, fixtureNWSPaged).Body
	cfg := func(url string) map[string]any {
		return map[string]any{
			"url":        url + "/alerts?start=2020-11-26T00:00:00Z",
			"items":      ".features",
			"id":         ".properties.id",
			"version":    ".properties.sent",
			"pagination": map[string]any{"style": "next_url", "next": ".pagination.next"},
		}
	}

	t.Run("follows pagination.next until it is absent", func(t *testing.T) {
		zone := ct.Load(t, fixtureNWSZone) // has no pagination
		var srv *ct.Server
		srv = ct.Serve(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Has("cursor") {
				zone.ServeHTTP(w, r)
				return
			}
			body := strings.ReplaceAll(string(nws), "https://api.weather.gov", srv.URL)
			jsonAnswer(body).ServeHTTP(w, r)
		})
		c := newConnector(t, srv, cfg(srv.URL))

		res, err := c.Poll(t.Context(), connector.State{})
		require.NoError(t, err)
		assert.Empty(t, res.Failed)
		assert.Equal(t, []string{"NWS-IDP-PROD-4559554", "NWS-IDP-PROD-3965873-3369046"}, ct.ItemIDs(res.Items))
		assert.Equal(t, []string{"2020-11-26T03:12:00-06:00", "2019-12-20T13:34:00-08:00"}, ct.ItemVersions(res.Items))
		reqs := srv.Requests()
		require.Len(t, reqs, 2)
		assert.Equal(t, "/alerts", reqs[1].URL.Path)
		assert.Equal(t, "cursor=eyJ0IjoxNjA2MzM4Mzc3LCJpIjoiTldTLUlEUC1QUk9ELUtFRVBBTElWRS0yODUxNyJ9", reqs[1].URL.RawQuery)
	})
	t.Run("a relative next is resolved against the page", func(t *testing.T) {
		srv := ct.Serve(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/page2" { // "page2" next to /alerts
				jsonAnswer(`{"features":[{"properties":{"id":"b","sent":"2"}}],"pagination":{"next":null}}`).ServeHTTP(w, r)
				return
			}
			jsonAnswer(`{"features":[{"properties":{"id":"a","sent":"1"}}],"pagination":{"next":"page2?x=1"}}`).ServeHTTP(w, r)
		})
		c := newConnector(t, srv, cfg(srv.URL))

		res, err := c.Poll(t.Context(), connector.State{})
		require.NoError(t, err)
		assert.Equal(t, []string{"a", "b"}, ct.ItemIDs(res.Items))
		reqs := srv.Requests()
		require.Len(t, reqs, 2)
		assert.Equal(t, "x=1", reqs[1].URL.RawQuery)
	})
	t.Run("a next URL on another host is refused", func(t *testing.T) {
		srv := ct.Replay(t, ct.Any(jsonAnswer(string(nws)))) // links to https://api.weather.gov
		c := newConnector(t, srv, cfg(srv.URL))

		_, err := c.Poll(t.Context(), connector.State{})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "pagination: the next page is on https://api.weather.gov, not on "+srv.URL+"; refusing to follow it")
		assert.Len(t, srv.Requests(), 1)
	})
	t.Run("a next URL that is not a string fails the poll", func(t *testing.T) {
		srv := ct.Replay(t, ct.Any(jsonAnswer(`{"features":[],"pagination":{"next":{"href":"/x"}}}`)))
		c := newConnector(t, srv, cfg(srv.URL))

		_, err := c.Poll(t.Context(), connector.State{})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "pagination.next: yields an object; want a URL string, or null when there is no next page")
	})
}

func TestLinkHeaderPagination(t *testing.T) {
	t.Run("a Link next on another host is refused", func(t *testing.T) {
		srv := ct.Serve(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", `<https://evil.example/issues?page=2>; rel="next"`)
			jsonAnswer(`[{"number":1,"updated_at":"x","labels":[]}]`).ServeHTTP(w, r)
		})
		c := newConnector(t, srv, githubIssuesConfig(srv.URL))

		_, err := c.Poll(t.Context(), connector.State{})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "the next page is on https://evil.example, not on "+srv.URL)
		assert.Len(t, srv.Requests(), 1)
	})
	t.Run("max_pages stops the poll with what it has", func(t *testing.T) {
		srv := githubPages(t)
		cfg := githubIssuesConfig(srv.URL)
		cfg["pagination"] = map[string]any{"style": "link_header", "max_pages": 2}
		c := newConnector(t, srv, cfg)

		res, err := c.Poll(t.Context(), connector.State{})
		require.NoError(t, err)
		assert.Equal(t, []string{"13", "12", "11", "10", "9", "8"}, ct.ItemIDs(res.Items))
		assert.Len(t, srv.Requests(), 2)
	})
	t.Run("a next that points back stops the poll", func(t *testing.T) {
		var srv *ct.Server
		srv = ct.Serve(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "<"+srv.URL+r.URL.RequestURI()+`>; rel="next"`)
			jsonAnswer(`[{"number":1,"updated_at":"x","labels":[]}]`).ServeHTTP(w, r)
		})
		c := newConnector(t, srv, githubIssuesConfig(srv.URL))

		res, err := c.Poll(t.Context(), connector.State{})
		require.NoError(t, err)
		assert.Equal(t, []string{"1"}, ct.ItemIDs(res.Items))
		assert.Len(t, srv.Requests(), 1)
	})
}

func TestLinkNext(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   string
	}{
		{name: "GitHub page 1", values: []string{`<https://api.github.com/repositories/1/issues?per_page=3&page=2>; rel="next", <https://api.github.com/repositories/1/issues?per_page=3&page=5>; rel="last"`},
			want: "https://api.github.com/repositories/1/issues?per_page=3&page=2"},
		{name: "next after prev", values: []string{`<https://x/?page=1>; rel="prev", <https://x/?page=3>; rel="next"`}, want: "https://x/?page=3"},
		{name: "no next", values: []string{`<https://x/?page=4>; rel="prev", <https://x/?page=1>; rel="first"`}, want: ""},
		{name: "several rel values, unquoted, any case", values: []string{`</p2>; rel=NEXT`}, want: "/p2"},
		{name: "rel list", values: []string{`</p2>; rel="last next"`}, want: "/p2"},
		{name: "quoted comma and semicolon in a title", values: []string{`</p1>; title="a, b; rel=next"; rel="prev", </p2>; rel="next"`}, want: "/p2"},
		{name: "second header line", values: []string{`</p1>; rel="prev"`, `</p2>; rel="next"`}, want: "/p2"},
		{name: "empty", values: nil, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, linkNext(tt.values))
		})
	}
}

func TestCursorPagination(t *testing.T) {
	page1, latest := ct.Load(t, fixtureSlack1), ct.Load(t, fixtureSlackLatest)
	srv := ct.Serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("cursor") {
		case "":
			page1.ServeHTTP(w, r)
		case "bmV4dF90czoxNTEyMDg1ODYxMDAwNTQz":
			latest.ServeHTTP(w, r)
		default: // Slack's documented last page: an empty next_cursor
			jsonAnswer(`{"ok":true,"messages":[],"has_more":false,"response_metadata":{"next_cursor":""}}`).ServeHTTP(w, r)
		}
	})
	c := newConnector(t, srv, map[string]any{
		"url":        srv.URL + "/api/conversations.history?channel=C123ABC456&limit=2",
		"headers":    map[string]string{"Authorization": "Bearer xoxb-test-0000000000"},
		"items":      ".messages",
		"id":         ".ts",
		"data":       "{ts, user, text}",
		"pagination": map[string]any{"style": "cursor", "next": ".response_metadata.next_cursor", "param": "cursor"},
	})

	res, err := c.Poll(t.Context(), connector.State{})
	require.NoError(t, err)
	// Slack's doc examples share a message; the platform drops the repeat.
	assert.Equal(t, []string{"1512085950.000216", "1512104434.000490", "1512085950.000216"}, ct.ItemIDs(res.Items))
	assert.Len(t, res.Items[0].Version, 64, "default version: a sha256")
	assert.JSONEq(t, `{"ts":"1512104434.000490","user":"U061F7AUR","text":"What, you want to smell my shoes better?"}`, string(res.Items[1].Data))

	reqs := srv.Requests()
	require.Len(t, reqs, 3)
	assert.Equal(t, "channel=C123ABC456&limit=2", reqs[0].URL.RawQuery)
	assert.Equal(t, "channel=C123ABC456&limit=2&cursor=bmV4dF90czoxNTEyMDg1ODYxMDAwNTQz", reqs[1].URL.RawQuery)
	assert.Equal(t, "channel=C123ABC456&limit=2&cursor=bmV4dF90czoxNTEyMzU2NTI2MDAwMTMw", reqs[2].URL.RawQuery)
}

func TestPagePagination(t *testing.T) {
	issues := map[string]ct.Response{"1": ct.Load(t, fixtureIssues1), "2": ct.Load(t, fixtureIssues2), "3": ct.Load(t, fixtureIssuesLast)}
	handler := func(w http.ResponseWriter, r *http.Request) {
		rec, ok := issues[r.URL.Query().Get("page")]
		if !ok {
			rec = jsonAnswer(`[]`)
		}
		rec.Header = http.Header{"Content-Type": {"application/json"}} // no Link: pages by number
		rec.ServeHTTP(w, r)
	}
	tests := []struct {
		name       string
		pagination map[string]any
		wantIDs    []string
		wantPages  []string
	}{
		{name: "from 1 until a page has no items", pagination: map[string]any{"style": "page", "param": "page"},
			wantIDs: []string{"13", "12", "11", "10", "9", "8", "1"}, wantPages: []string{"1", "2", "3", "4"}},
		{name: "start 2", pagination: map[string]any{"style": "page", "param": "page", "start": 2},
			wantIDs: []string{"10", "9", "8", "1"}, wantPages: []string{"2", "3", "4"}},
		{name: "max_pages", pagination: map[string]any{"style": "page", "param": "page", "max_pages": 2},
			wantIDs: []string{"13", "12", "11", "10", "9", "8"}, wantPages: []string{"1", "2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := ct.Serve(t, handler)
			cfg := githubIssuesConfig(srv.URL)
			cfg["url"] = srv.URL + issuesPath + "?per_page=3"
			delete(cfg, "initial_cursor")
			cfg["pagination"] = tt.pagination
			c := newConnector(t, srv, cfg)

			res, err := c.Poll(t.Context(), connector.State{})
			require.NoError(t, err)
			assert.Equal(t, tt.wantIDs, ct.ItemIDs(res.Items))
			var pages []string
			for _, r := range srv.Requests() {
				assert.True(t, strings.HasPrefix(r.URL.RawQuery, "per_page=3&page="), r.URL.RawQuery)
				pages = append(pages, strings.TrimPrefix(r.URL.RawQuery, "per_page=3&page="))
			}
			assert.Equal(t, tt.wantPages, pages)
		})
	}
}

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

func TestLaterCursor(t *testing.T) {
	tests := []struct {
		name   string
		stored string
		newest any
		want   string
	}{
		{name: "nothing stored", stored: "", newest: "2024-01-01", want: "2024-01-01"},
		{name: "newer string", stored: "2024-01-01", newest: "2024-02-01", want: "2024-02-01"},
		{name: "older string", stored: "2024-03-01", newest: "2024-02-01", want: "2024-03-01"},
		{name: "numbers compare as numbers", stored: "9", newest: json.Number("10"), want: "10"},
		{name: "older number", stored: "1512342889221", newest: json.Number("1512342889220"), want: "1512342889221"},
		{name: "a stored string where numbers come now", stored: "abc", newest: json.Number("5"), want: "5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, laterCursor(tt.stored, tt.newest))
		})
	}
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
		assert.Contains(t, err.Error(), "http-json GET "+closed.URL+"/x?…: ")
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

func TestItems(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		config     map[string]any
		wantIDs    []string
		wantFailed map[string]string // ItemError.ID → part of its error
		wantCursor string
	}{
		{
			name:   "ids that are not usable fail alone, named by position",
			body:   `{"data":[{"id":"a"},{"id":null},{"id":""},{"id":{"x":1}},{"no":1},{"id":3.5},{"id":12345678901234567890},{"id":[1,2]},{"id":true}]}`,
			config: map[string]any{"items": ".data", "id": ".id"},
			// Numbers keep every digit (no float64 rounding).
			wantIDs: []string{"a", "3.5", "12345678901234567890"},
			wantFailed: map[string]string{
				"items[1]": "id: yields null; want a non-empty string or a number",
				"items[2]": "id: yields an empty string",
				"items[3]": "id: yields an object; want a non-empty string or a number",
				"items[4]": "id: yields null",
				"items[7]": "id: yields an array",
				"items[8]": "id: yields a boolean (true)",
			},
		},
		{
			name:       "a jq runtime error fails that item only",
			body:       `{"data":[{"id":1,"name":"a"},{"id":2,"name":5},{"id":3,"name":"c"}]}`,
			config:     map[string]any{"items": ".data", "id": ".id", "data": "{id, name: (.name | ascii_upcase)}"},
			wantIDs:    []string{"1", "3"},
			wantFailed: map[string]string{"2": "items[1]: data: jq: ascii_upcase cannot be applied to: number (5)"},
		},
		{
			name:       "an id jq error is named by position",
			body:       `[{"id":"a"},{"id":7}]`,
			config:     map[string]any{"items": ".", "id": `.id | ascii_downcase`},
			wantIDs:    []string{"a"},
			wantFailed: map[string]string{"items[1]": "id: jq: ascii_downcase cannot be applied to: number (7)"},
		},
		{
			name:       "error() in a version fails the item",
			body:       `[{"id":"a","v":1},{"id":"b"}]`,
			config:     map[string]any{"items": ".", "id": ".id", "version": `.v // error("no v")`},
			wantIDs:    []string{"a"},
			wantFailed: map[string]string{"b": "items[1]: version: jq: error: no v"},
		},
		{
			name:       "an expression with two values fails the item",
			body:       `[{"id":"a","tags":["x"]},{"id":"b","tags":["x","y"]}]`,
			config:     map[string]any{"items": ".", "id": ".id", "version": ".tags[]"},
			wantIDs:    []string{"a"},
			wantFailed: map[string]string{"b": "items[1]: version: yields more than one value"},
		},
		{
			name:       "a stream of objects",
			body:       `{"a":[{"id":"x"}],"b":{"id":"y"}}`,
			config:     map[string]any{"items": ".a[], .b", "id": ".id"},
			wantIDs:    []string{"x", "y"},
			wantFailed: map[string]string{},
		},
		{
			name:       "time: the greatest string; null times are left out; a non-scalar time fails",
			body:       `[{"id":"a","t":"2024-01-02"},{"id":"b","t":null},{"id":"c","t":"2024-03-01"},{"id":"d","t":{"x":1}}]`,
			config:     map[string]any{"items": ".", "id": ".id", "time": ".t"},
			wantIDs:    []string{"a", "b", "c"},
			wantFailed: map[string]string{"d": "items[3]: time: yields an object; want a sortable string or number"},
			wantCursor: "2024-03-01",
		},
		{
			name:       "time: numbers compare as numbers",
			body:       `[{"id":"a","t":9},{"id":"b","t":10},{"id":"c","t":1e1}]`,
			config:     map[string]any{"items": ".", "id": ".id", "time": ".t"},
			wantIDs:    []string{"a", "b", "c"},
			wantFailed: map[string]string{},
			wantCursor: "10",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := ct.Replay(t, ct.Any(jsonAnswer(tt.body)))
			cfg := map[string]any{"url": srv.URL + "/items"}
			for k, v := range tt.config {
				cfg[k] = v
			}
			c := newConnector(t, srv, cfg)

			res, err := c.Poll(t.Context(), connector.State{})
			require.NoError(t, err)
			assert.Equal(t, tt.wantIDs, ct.ItemIDs(res.Items))
			failed := map[string]string{}
			for _, f := range res.Failed {
				failed[f.ID] = f.Err.Error()
			}
			require.Len(t, failed, len(tt.wantFailed), "failed: %v", failed)
			for id, want := range tt.wantFailed {
				assert.Contains(t, failed[id], want, "item %s", id)
			}
			assert.Equal(t, tt.wantCursor, res.State.Cursor)
		})
	}
}

func TestDefaultVersion(t *testing.T) {
	original := ct.Load(t, fixtureUSGS).Body
	// The same features, keys in another order and re-indented.
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(original))
	dec.UseNumber()
	require.NoError(t, dec.Decode(&doc))
	reformatted, err := json.MarshalIndent(doc, "", "    ")
	require.NoError(t, err)
	// The first earthquake revised.
	revised := bytes.Replace(original, []byte(`"mag":1.93,`), []byte(`"mag":2.01,`), 1)
	require.NotEqual(t, original, revised)

	poll := func(body []byte) []string {
		srv := ct.Replay(t, ct.Any(jsonAnswer(string(body))))
		c := newConnector(t, srv, map[string]any{"url": srv.URL, "items": ".features[]", "id": ".id"})
		res, err := c.Poll(t.Context(), connector.State{})
		require.NoError(t, err)
		require.Equal(t, usgsIDs, ct.ItemIDs(res.Items))
		return ct.ItemVersions(res.Items)
	}
	base := poll(original)
	for _, v := range base {
		assert.Regexp(t, `^[0-9a-f]{64}$`, v)
	}
	assert.Equal(t, base, poll(reformatted), "key order and whitespace do not change a version")
	changed := poll(revised)
	assert.NotEqual(t, base[0], changed[0], "a changed item gets a new version")
	assert.Equal(t, base[1:], changed[1:], "the others keep theirs")
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
	raw, err := json.Marshal(usgsConfig(srv.URL))
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

func TestConfig(t *testing.T) {
	base := `"url":"https://api.example.com/v1/items","items":".data","id":".id"`
	tests := []struct {
		name    string
		raw     string
		wantErr []string // every one must appear in the error
	}{
		// valid
		{name: "minimal", raw: `{` + base + `}`},
		{name: "everything", raw: `{"url":"https://api.example.com/v1/items?since={{cursor}}","method":"POST","body":"{\"after\":\"{{cursor}}\"}",
			"headers":{"Authorization":"Bearer abc"},"initial_cursor":"0","items":".data","id":".id","version":".rev","time":".updated",
			"data":"{id}","pagination":{"style":"cursor","next":".next","param":"cursor","max_pages":100},"conditional":false}`},
		{name: "page style", raw: `{` + base + `,"pagination":{"style":"page","param":"p","start":0}}`},

		// url
		{name: "url missing", raw: `{"items":".","id":".id"}`,
			wantErr: []string{`config.url: required: the absolute http(s) URL to poll`}},
		{name: "url relative", raw: `{"url":"api.example.com/items","items":".","id":".id"}`,
			wantErr: []string{`config.url: "api.example.com/items" is not an absolute http(s) URL`}},
		{name: "url ftp, password and query hidden", raw: `{"url":"ftp://me:pw1234@h.example/x?key=k9k9k9","items":".","id":".id"}`,
			wantErr: []string{`config.url: "ftp://me:xxxxx@h.example/x?…" is not an absolute http(s) URL`}},
		{name: "url unparsable", raw: `{"url":"http://[::1","items":".","id":".id"}`,
			wantErr: []string{"config.url: cannot be parsed as a URL"}},
		{name: "placeholder typo", raw: `{"url":"https://h.example/x?since={{ cursor }}","items":".","id":".id"}`,
			wantErr: []string{"config.url: {{ cursor }} is not a placeholder (the only one is {{cursor}}, written without spaces)"}},

		// method and body
		{name: "method lowercase", raw: `{` + base + `,"method":"get"}`,
			wantErr: []string{`config.method: "get" is not supported (write "GET" or "POST")`}},
		{name: "body with GET", raw: `{` + base + `,"body":"{}"}`,
			wantErr: []string{`config.body: only sent with POST (set "method": "POST", or remove body)`}},
		{name: "initial_cursor without placeholder", raw: `{` + base + `,"initial_cursor":"x"}`,
			wantErr: []string{"config.initial_cursor: has no effect: neither url nor body contains {{cursor}}"}},

		// jq
		{name: "items missing", raw: `{"url":"https://h.example","id":".id"}`,
			wantErr: []string{`config.items: required: a jq expression (e.g. ".features[]" or ".data")`}},
		{name: "id missing", raw: `{"url":"https://h.example","items":"."}`,
			wantErr: []string{`config.id: required: a jq expression (e.g. ".id")`}},
		{name: "items does not parse", raw: `{"url":"https://h.example","items":".features[","id":".id"}`,
			wantErr: []string{`config.items: jq ".features[": unexpected EOF`}},
		{name: "id calls an unknown function", raw: `{"url":"https://h.example","items":".","id":".id | nosuch"}`,
			wantErr: []string{`config.id: jq ".id | nosuch": function not defined: nosuch/0`}},
		{name: "version with an unknown variable", raw: `{` + base + `,"version":"$cursor"}`,
			wantErr: []string{`config.version: jq "$cursor": variable not defined: $cursor`}},
		{name: "time and data bad", raw: `{` + base + `,"time":".a |","data":"{"}`,
			wantErr: []string{`config.time: jq ".a |": unexpected EOF`, `config.data: jq "{": unexpected EOF`}},

		// pagination
		{name: "unknown style", raw: `{` + base + `,"pagination":{"style":"links"}}`,
			wantErr: []string{`config.pagination.style: "links" is not a style (write one of none, link_header, next_url, cursor, page)`}},
		{name: "next_url without next", raw: `{` + base + `,"pagination":{"style":"next_url"}}`,
			wantErr: []string{`config.pagination.next: required: a jq expression (e.g. ".pagination.next")`}},
		{name: "next does not parse", raw: `{` + base + `,"pagination":{"style":"cursor","next":".a[","param":"c"}}`,
			wantErr: []string{`config.pagination.next: jq ".a[": unexpected EOF`}},
		{name: "cursor without param", raw: `{` + base + `,"pagination":{"style":"cursor","next":".n"}}`,
			wantErr: []string{"config.pagination.param: required with style cursor"}},
		{name: "fields of another style", raw: `{` + base + `,"pagination":{"style":"link_header","next":".n","param":"p","start":1}}`,
			wantErr: []string{"config.pagination.next: only used with style next_url or cursor", "config.pagination.param: only used with style cursor or page",
				"config.pagination.start: only used with style page"}},
		{name: "max_pages out of range", raw: `{` + base + `,"pagination":{"style":"link_header","max_pages":101}}`,
			wantErr: []string{"config.pagination.max_pages: 101 is out of range (write a number from 1 to 100; default 10)"}},
		{name: "max_pages without a style", raw: `{` + base + `,"pagination":{"max_pages":3}}`,
			wantErr: []string{"config.pagination.max_pages: has no effect without a pagination style"}},
		{name: "negative start", raw: `{` + base + `,"pagination":{"style":"page","param":"p","start":-1}}`,
			wantErr: []string{"config.pagination.start: -1 is negative"}},

		// decoding
		{name: "unknown field", raw: `{` + base + `,"base_url":"https://h.example"}`,
			wantErr: []string{`decode config: json: unknown field "base_url"`}},
		{name: "empty config lists every problem", raw: ``,
			wantErr: []string{"config.url: required", "config.items: required", "config.id: required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.wantErr) == 0 {
				c, err := New(json.RawMessage(tt.raw), connector.Deps{})
				require.NoError(t, err)
				assert.NotNil(t, c)
				return
			}
			err := ct.ConfigError(t, New, tt.raw, tt.wantErr...)
			assert.NotContains(t, err.Error(), "pw1234")
			assert.NotContains(t, err.Error(), "k9k9k9")
		})
	}
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

// TestREADMEConfigs keeps the README's stand-in entries valid and equal to
// the configs the stand-in tests run (apart from the host and the secret).
func TestREADMEConfigs(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	var entries []map[string]json.RawMessage
	for _, block := range strings.Split(string(readme), "```json")[1:] {
		block, _, _ = strings.Cut(block, "```")
		var entry map[string]json.RawMessage
		if json.Unmarshal([]byte(block), &entry) == nil && string(entry["type"]) == `"http-json"` {
			entries = append(entries, entry)
		}
	}
	require.Len(t, entries, 2, "the USGS and GitHub issues entries")
	for i, want := range []map[string]any{usgsConfig("https://x"), githubIssuesConfig("https://x")} {
		_, err := New(entries[i]["config"], connector.Deps{})
		require.NoError(t, err, "README entry %d", i)
		var got map[string]any
		require.NoError(t, json.Unmarshal(entries[i]["config"], &got))
		for _, field := range []string{"items", "id", "version", "time", "data", "initial_cursor"} {
			assert.Equal(t, want[field], got[field], "README entry %d, %s", i, field)
		}
		wantPagination, _ := json.Marshal(want["pagination"])
		gotPagination, _ := json.Marshal(got["pagination"])
		assert.JSONEq(t, string(wantPagination), string(gotPagination), "README entry %d pagination", i)
	}
}
