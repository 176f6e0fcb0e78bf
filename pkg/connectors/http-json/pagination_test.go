package httpjson

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
	ct "github.com/pollgrid/pollgrid/pkg/connectortest"
)

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
		assert.Contains(t, err.Error(), `pagination: pagination.next: next page "https://api.weather.gov/alerts?cursor=xxxxx" leaves `+srv.URL+"; refusing to follow it")
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
			jsonAnswer(`[{"number":1,"updated_at":"2022-07-19T04:39:16Z","labels":[]}]`).ServeHTTP(w, r)
		})
		c := newConnector(t, srv, githubIssuesConfig(srv.URL))

		_, err := c.Poll(t.Context(), connector.State{})
		require.Error(t, err)
		assert.Contains(t, err.Error(), `pagination: Link rel="next": next page "https://evil.example/issues?page=xxxxx" leaves `+srv.URL+"; refusing to follow it (set config.url to the host the upstream links to)")
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
			jsonAnswer(`[{"number":1,"updated_at":"2022-07-19T04:39:16Z","labels":[]}]`).ServeHTTP(w, r)
		})
		c := newConnector(t, srv, githubIssuesConfig(srv.URL))

		res, err := c.Poll(t.Context(), connector.State{})
		require.NoError(t, err)
		assert.Equal(t, []string{"1"}, ct.ItemIDs(res.Items))
		assert.Len(t, srv.Requests(), 1)
	})
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

// With emit_deletes, a poll that read every page says its listing is
// complete; one cut at max_pages does not (what it did not read is not gone).
func TestCompleteListing(t *testing.T) {
	srv := ct.Serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/page2" {
			jsonAnswer(`{"features":[{"id":"b"}],"next":null}`).ServeHTTP(w, r)
			return
		}
		jsonAnswer(`{"features":[{"id":"a"}],"next":"page2"}`).ServeHTTP(w, r)
	})
	cfg := func(emitDeletes bool, maxPages int) map[string]any {
		return map[string]any{
			"url": srv.URL + "/items", "items": ".features", "id": ".id", "emit_deletes": emitDeletes,
			"pagination": map[string]any{"style": "next_url", "next": ".next", "max_pages": maxPages},
		}
	}
	for _, tt := range []struct {
		name         string
		emitDeletes  bool
		maxPages     int
		wantComplete bool
	}{
		{"every page read", true, 5, true},
		{"cut at max_pages", true, 1, false},
		{"not asked for", false, 5, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, err := newConnector(t, srv, cfg(tt.emitDeletes, tt.maxPages)).Poll(t.Context(), connector.State{})
			require.NoError(t, err)
			assert.Equal(t, tt.wantComplete, res.Complete)
		})
	}
}
