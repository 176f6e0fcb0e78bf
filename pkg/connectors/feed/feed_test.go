package feed

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
	ct "github.com/pollgrid/pollgrid/pkg/connectortest"
	"github.com/pollgrid/pollgrid/pkg/egress"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

const (
	fixtureGulp    = "github_releases_gulp_2015.atom.xml"
	fixtureFeedRS  = "github_releases_feed-rs_2020.atom.xml"
	fixtureLiftoff = "rss2_spec_sample_liftoff.xml"
	fixturePodcast = "giantbomb_podcast_2019.rss.xml"
	feedPath       = "/feeds/releases.atom"
)

// serveBody is an answer with a body of contentType.
func serveBody(contentType string, body []byte) ct.Response {
	return ct.Response{Header: http.Header{"Content-Type": {contentType}}, Body: body}
}

// newPoller builds the connector through the public factory, pointed at
// srv's feedPath, with the platform's upstream client.
func newPoller(t *testing.T, srv *ct.Server, config map[string]any) connector.Connector {
	t.Helper()
	cfg := map[string]any{"url": srv.URL + feedPath}
	for k, v := range config {
		cfg[k] = v
	}
	raw, err := json.Marshal(cfg)
	require.NoError(t, err)
	c, err := New(raw, connector.Deps{HTTP: upstream.NewClient(upstream.Options{Allow: egress.Loopback()})})
	require.NoError(t, err)
	return c
}

func decodeEntry(t *testing.T, item connector.Item) Entry {
	t.Helper()
	var e Entry
	require.NoError(t, json.Unmarshal(item.Data, &e))
	return e
}

func TestPollFixtures(t *testing.T) {
	tests := []struct {
		name        string
		fixture     string
		contentType string
		wantCount   int
		position    int // the item checked against the file
		wantID      string
		wantVersion string
		// wantData is the item's whole Data; "SRV" stands for the test server's URL.
		wantData string
	}{
		{
			name: "atom with relative links", fixture: fixtureGulp, contentType: "application/atom+xml; charset=utf-8",
			wantCount: 10, position: 0,
			wantID:      "tag:github.com,2008:Repository/11167738/v3.9.0",
			wantVersion: "2015-06-01T21:49:41Z",
			wantData: `{
				"id": "tag:github.com,2008:Repository/11167738/v3.9.0",
				"title": "v3.9.0",
				"link": "SRV/gulpjs/gulp/releases/tag/v3.9.0",
				"published": "2015-06-01T21:49:41Z",
				"updated": "2015-06-01T21:49:41Z",
				"authors": ["contra"],
				"summary": "<p>3.9.0</p>",
				"categories": [],
				"enclosures": [],
				"feed_title": "Release notes from gulp"
			}`,
		},
		{
			name: "atom last entry", fixture: fixtureGulp, contentType: "application/atom+xml",
			wantCount: 10, position: 9,
			wantID:      "tag:github.com,2008:Repository/11167738/v3.8.3",
			wantVersion: "2014-06-26T21:17:51Z",
			wantData: `{
				"id": "tag:github.com,2008:Repository/11167738/v3.8.3",
				"title": "v3.8.3",
				"link": "SRV/gulpjs/gulp/releases/tag/v3.8.3",
				"published": "2014-06-26T21:17:51Z",
				"updated": "2014-06-26T21:17:51Z",
				"authors": ["contra"],
				"summary": "<p>3.8.3</p>",
				"categories": [],
				"enclosures": [],
				"feed_title": "Release notes from gulp"
			}`,
		},
		{
			name: "atom with absolute links", fixture: fixtureFeedRS, contentType: "application/atom+xml",
			wantCount: 2, position: 1,
			wantID:      "tag:github.com,2008:Repository/90976281/0.1.3",
			wantVersion: "2017-07-07T11:47:46Z",
			wantData: `{
				"id": "tag:github.com,2008:Repository/90976281/0.1.3",
				"title": "0.1.3",
				"link": "https://github.com/feed-rs/feed-rs/releases/tag/0.1.3",
				"published": "2017-07-07T11:47:46Z",
				"updated": "2017-07-07T11:47:46Z",
				"authors": ["kumabook"],
				"summary": "<p>Update version to 0.1.3</p>",
				"categories": [],
				"enclosures": [],
				"feed_title": "Release notes from feed-rs"
			}`,
		},
		{
			name: "rss item without title or link keeps its guid", fixture: fixtureLiftoff, contentType: "application/rss+xml",
			wantCount: 4, position: 1,
			wantID:      "http://liftoff.msfc.nasa.gov/2003/05/30.html#item572",
			wantVersion: "2003-05-30T11:06:42Z",
			wantData: `{
				"id": "http://liftoff.msfc.nasa.gov/2003/05/30.html#item572",
				"published": "2003-05-30T11:06:42Z",
				"authors": [],
				"summary": "Sky watchers in Europe, Asia, and parts of Alaska and Canada will experience a <a href=\"http://science.nasa.gov/headlines/y2003/30may_solareclipse.htm\">partial eclipse of the Sun</a> on Saturday, May 31st.",
				"categories": [],
				"enclosures": [],
				"feed_title": "Liftoff News"
			}`,
		},
		{
			name: "podcast episode with its enclosure and duration", fixture: fixturePodcast, contentType: "application/rss+xml",
			wantCount: 3, position: 1,
			wantID:      "1600-2818",
			wantVersion: "2019-09-24T22:49:00Z",
			wantData: `{
				"id": "1600-2818",
				"title": "Giant Bombcast 602: Easy Chicken",
				"link": "https://www.giantbomb.com/shows/602-easy-chicken/2970-19636/free-podcast",
				"published": "2019-09-24T22:49:00Z",
				"authors": ["Giant Bomb"],
				"summary": "A zillion games came out last week and we're here to talk about like 12 of them! Let's check in on Apple Arcade's lineup, Link's Awakening, and Borderlands 3. Then let's get into the news... is Valve going to have to let you resell your games? Weird! The",
				"categories": ["GiantBomb", "Giant Bomb", "Jeff Gerstmann", "Ryan Davis", "video games", "PS3", "WiiU", "Xbox 360", "PC", "PSP", "DS"],
				"enclosures": [{
					"url": "https://dts.podtrac.com/redirect.mp3/www.giantbomb.com/podcasts/download/2818/vf_bc_092419_825-09-24-2019-3859274829.mp3",
					"type": "audio/mpeg",
					"length": 88752264
				}],
				"duration_seconds": 5547,
				"feed_title": "Giant Bombcast"
			}`,
		},
		{
			name: "rss first item", fixture: fixtureLiftoff, contentType: "text/xml",
			wantCount: 4, position: 0,
			wantID:      "http://liftoff.msfc.nasa.gov/2003/06/03.html#item573",
			wantVersion: "2003-06-03T09:39:21Z",
			wantData: `{
				"id": "http://liftoff.msfc.nasa.gov/2003/06/03.html#item573",
				"title": "Star City",
				"link": "http://liftoff.msfc.nasa.gov/news/2003/news-starcity.asp",
				"published": "2003-06-03T09:39:21Z",
				"authors": [],
				"summary": "How do Americans get ready to work with Russians aboard the International Space Station? They take a crash course in culture, language and protocol at Russia's <a href=\"http://howe.iki.rssi.ru/GCTC/gctc_e.htm\">Star City</a>.",
				"categories": [],
				"enclosures": [],
				"feed_title": "Liftoff News"
			}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := ct.Replay(t, ct.Any(serveBody(tt.contentType, ct.Load(t, tt.fixture).Body)))
			c := newPoller(t, srv, nil)

			res, err := c.Poll(t.Context(), connector.State{})
			require.NoError(t, err)

			assert.False(t, res.NotModified)
			assert.Empty(t, res.Failed)
			require.Len(t, res.Items, tt.wantCount)
			item := res.Items[tt.position]
			assert.Equal(t, tt.wantID, item.ID)
			assert.Equal(t, tt.wantVersion, item.Version)
			assert.JSONEq(t, strings.ReplaceAll(tt.wantData, "SRV", srv.URL), string(item.Data))

			reqs := srv.Requests()
			require.Len(t, reqs, 1)
			assert.Equal(t, feedPath, reqs[0].URL.Path)
			assert.Contains(t, reqs[0].Header.Get("Accept"), "application/atom+xml")
			assert.True(t, strings.HasPrefix(reqs[0].Header.Get("User-Agent"), "pollgrid/"), "default User-Agent")
			assert.Empty(t, reqs[0].Header.Get("If-None-Match"), "no validators in state, so no conditional request")
			assert.Empty(t, reqs[0].Header.Get("If-Modified-Since"))
		})
	}
}

func TestEveryFixtureItem(t *testing.T) {
	// Every id in the file, in order: the rule is guid/id verbatim.
	tests := []struct {
		fixture string
		want    []string
	}{
		{fixtureLiftoff, []string{
			"http://liftoff.msfc.nasa.gov/2003/06/03.html#item573",
			"http://liftoff.msfc.nasa.gov/2003/05/30.html#item572",
			"http://liftoff.msfc.nasa.gov/2003/05/27.html#item571",
			"http://liftoff.msfc.nasa.gov/2003/05/20.html#item570",
		}},
		{fixtureFeedRS, []string{
			"tag:github.com,2008:Repository/90976281/v0.2.0",
			"tag:github.com,2008:Repository/90976281/0.1.3",
		}},
		{fixtureGulp, []string{
			"tag:github.com,2008:Repository/11167738/v3.9.0", "tag:github.com,2008:Repository/11167738/v3.8.11",
			"tag:github.com,2008:Repository/11167738/v3.8.10", "tag:github.com,2008:Repository/11167738/v3.8.9",
			"tag:github.com,2008:Repository/11167738/v3.8.8", "tag:github.com,2008:Repository/11167738/v3.8.7",
			"tag:github.com,2008:Repository/11167738/v3.8.6", "tag:github.com,2008:Repository/11167738/v3.8.5",
			"tag:github.com,2008:Repository/11167738/v3.8.4", "tag:github.com,2008:Repository/11167738/v3.8.3",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			srv := ct.Replay(t, ct.Any(serveBody("application/xml", ct.Load(t, tt.fixture).Body)))
			c := newPoller(t, srv, nil)
			first, err := c.Poll(t.Context(), connector.State{})
			require.NoError(t, err)
			assert.Equal(t, tt.want, ct.ItemIDs(first.Items))

			second, err := c.Poll(t.Context(), connector.State{})
			require.NoError(t, err)
			assert.Equal(t, first.Items, second.Items, "the same document gives the same ids, versions and data")
		})
	}
}

// fallbackFeed exercises every id and version rule. It is served at
// /feeds/main.xml, so the relative link "posts/1" is /feeds/posts/1.
const fallbackFeed = `<?xml version="1.0"?>
<rss version="2.0"><channel><title>  Fallbacks  </title>
<item><title>No guid</title><link>posts/1</link><pubDate>Mon, 02 Jan 2006 15:04:05 GMT</pubDate></item>
<item><title>Only a title</title><pubDate>Mon, 02 Jan 2006 15:04:05 GMT</pubDate></item>
<item><guid>g3</guid><title>Undated</title><description>Body</description></item>
<item><description>nothing to name it by</description></item>
<item><guid>g3</guid><title>Again</title></item>
<item><guid>g6</guid><pubDate>sometime soon</pubDate><category>a</category><category> </category><author>x@example.com (X)</author></item>
</channel></rss>`

func TestIDAndVersionFallbacks(t *testing.T) {
	body := []byte(fallbackFeed)
	srv := ct.Serve(t, func(w http.ResponseWriter, r *http.Request) {
		serveBody("application/rss+xml", body).ServeHTTP(w, r)
	})
	raw, err := json.Marshal(map[string]any{"url": srv.URL + "/feeds/main.xml"})
	require.NoError(t, err)
	c, err := New(raw, connector.Deps{HTTP: srv.Client()})
	require.NoError(t, err)

	res, err := c.Poll(t.Context(), connector.State{})
	require.NoError(t, err)

	require.Len(t, res.Items, 4)
	tests := []struct {
		name        string
		item        connector.Item
		wantID      string
		wantVersion string
	}{
		{"no guid: the resolved link", res.Items[0], srv.URL + "/feeds/posts/1", "2006-01-02T15:04:05Z"},
		{"no guid or link: a hash of title and published", res.Items[1],
			"sha256:903b2c355d34f1b80de8931a3d97665320a41162d00b3ed74a59681add9a0443", "2006-01-02T15:04:05Z"},
		{"no dates: a hash of title, description and content", res.Items[2],
			"g3", "sha256:26702016acc916e8d209641edce56fa0c1bfc6d89a463d81243496bff2983768"},
		{"a date that does not parse is kept as text", res.Items[3], "g6", "sometime soon"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.wantID, tt.item.ID)
			assert.Equal(t, tt.wantVersion, tt.item.Version)
		})
	}

	entry := decodeEntry(t, res.Items[3])
	assert.Equal(t, "sometime soon", entry.Published)
	assert.Equal(t, []string{"a"}, entry.Categories, "blank categories are dropped")
	assert.Equal(t, []string{"X"}, entry.Authors)
	assert.Equal(t, "Fallbacks", entry.FeedTitle, "trimmed")
	assert.Equal(t, srv.URL+"/feeds/posts/1", decodeEntry(t, res.Items[0]).Link)

	require.Len(t, res.Failed, 2)
	assert.Equal(t, "items[3]", res.Failed[0].ID)
	assert.EqualError(t, res.Failed[0].Err, "entry has no guid/id, link, title or published date to identify it")
	assert.Equal(t, "g3", res.Failed[1].ID)
	assert.EqualError(t, res.Failed[1].Err, "items[4] has the same id as items[2]; only the first is kept")

	t.Run("the content hash follows the content", func(t *testing.T) {
		body = []byte(strings.Replace(fallbackFeed, "<description>Body</description>", "<description>Body changed</description>", 1))
		again, err := c.Poll(t.Context(), connector.State{})
		require.NoError(t, err)
		require.Len(t, again.Items, 4)
		assert.Equal(t, "g3", again.Items[2].ID)
		assert.Equal(t, "sha256:5741ba44c2f2c7971213e5d92c4b877a988723cb320368ede6bd4032ffbb7304", again.Items[2].Version)
		assert.Equal(t, res.Items[1].ID, again.Items[1].ID, "the title+published hash id is stable")
	})
}

func TestUpdatedWinsOverPublished(t *testing.T) {
	atom := `<feed xmlns="http://www.w3.org/2005/Atom"><title>v</title>
<entry><id>e1</id><published>2024-01-01T00:00:00+01:00</published><updated>2024-03-01T12:00:00.5+01:00</updated><title>edited</title></entry>
</feed>`
	srv := ct.Replay(t, ct.Any(serveBody("application/atom+xml", []byte(atom))))
	res, err := newPoller(t, srv, nil).Poll(t.Context(), connector.State{})
	require.NoError(t, err)
	require.Len(t, res.Items, 1)
	assert.Equal(t, "2024-03-01T11:00:00.5Z", res.Items[0].Version)
	entry := decodeEntry(t, res.Items[0])
	assert.Equal(t, "2023-12-31T23:00:00Z", entry.Published)
	assert.Equal(t, "2024-03-01T11:00:00.5Z", entry.Updated)
}

func TestRelativeLinksFollowRedirects(t *testing.T) {
	atom := `<feed xmlns="http://www.w3.org/2005/Atom"><title>r</title>
<entry><id>e1</id><updated>2024-01-02T03:04:05Z</updated><link href="tag/v1"/></entry>
<entry><id>e2</id><updated>2024-01-02T03:04:05Z</updated><link href="//cdn.example/x"/></entry>
<entry xml:base="https://example.org/blog/"><id>e3</id><updated>2024-01-02T03:04:05Z</updated><link href="post/1"/></entry>
</feed>`
	srv := ct.Serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/old.atom" {
			http.Redirect(w, r, "/new/releases.atom", http.StatusMovedPermanently)
			return
		}
		serveBody("application/atom+xml", []byte(atom)).ServeHTTP(w, r)
	})
	raw, err := json.Marshal(map[string]any{"url": srv.URL + "/old.atom"})
	require.NoError(t, err)
	c, err := New(raw, connector.Deps{HTTP: srv.Client()})
	require.NoError(t, err)

	res, err := c.Poll(t.Context(), connector.State{})
	require.NoError(t, err)
	require.Len(t, res.Items, 3)
	assert.Equal(t, srv.URL+"/new/tag/v1", decodeEntry(t, res.Items[0]).Link, "resolved against where the document was found")
	assert.Equal(t, "http://cdn.example/x", decodeEntry(t, res.Items[1]).Link)
	assert.Equal(t, "https://example.org/blog/post/1", decodeEntry(t, res.Items[2]).Link, "xml:base wins")
}

func TestMaxItemsAndSummary(t *testing.T) {
	t.Run("max_items keeps the first entries", func(t *testing.T) {
		srv := ct.Replay(t, ct.Any(serveBody("application/atom+xml", ct.Load(t, fixtureGulp).Body)))
		res, err := newPoller(t, srv, map[string]any{"max_items": 3, "emit_deletes": true}).Poll(t.Context(), connector.State{})
		require.NoError(t, err)
		assert.False(t, res.Complete, "entries past max_items were not read: their absence says nothing")
		assert.Equal(t, []string{
			"tag:github.com,2008:Repository/11167738/v3.9.0",
			"tag:github.com,2008:Repository/11167738/v3.8.11",
			"tag:github.com,2008:Repository/11167738/v3.8.10",
		}, ct.ItemIDs(res.Items))
	})

	t.Run("with emit_deletes, a feed read whole is a complete listing", func(t *testing.T) {
		srv := ct.Replay(t, ct.Any(serveBody("application/atom+xml", ct.Load(t, fixtureGulp).Body)))
		res, err := newPoller(t, srv, map[string]any{"emit_deletes": true}).Poll(t.Context(), connector.State{})
		require.NoError(t, err)
		assert.True(t, res.Complete)
		res, err = newPoller(t, srv, nil).Poll(t.Context(), connector.State{})
		require.NoError(t, err)
		assert.False(t, res.Complete, "only when asked for")
	})

	tests := []struct {
		name        string
		description string
		want        string
	}{
		{"trimmed", "\n\t  short  \n", "short"},
		{"exactly the cap is kept", strings.Repeat("é", MaxSummaryRunes), strings.Repeat("é", MaxSummaryRunes)},
		{"longer is cut to the cap", strings.Repeat("é", MaxSummaryRunes+500), strings.Repeat("é", MaxSummaryRunes-1) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rss := `<rss version="2.0"><channel><title>s</title><item><guid>s1</guid><description><![CDATA[` +
				tt.description + `]]></description></item></channel></rss>`
			srv := ct.Replay(t, ct.Any(serveBody("application/rss+xml", []byte(rss))))
			res, err := newPoller(t, srv, nil).Poll(t.Context(), connector.State{})
			require.NoError(t, err)
			require.Len(t, res.Items, 1)
			summary := decodeEntry(t, res.Items[0]).Summary
			assert.Equal(t, tt.want, summary)
			assert.LessOrEqual(t, len([]rune(summary)), MaxSummaryRunes)
		})
	}
}

func TestConditionalRequests(t *testing.T) {
	const etag = `W/"a1b2c3"`
	const lastModified = "Mon, 01 Jun 2015 21:49:41 GMT"
	body := ct.Load(t, fixtureGulp).Body

	t.Run("304 keeps the state", func(t *testing.T) {
		srv := ct.Serve(t, func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("If-None-Match") == etag {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			serveBody("application/atom+xml", body).ServeHTTP(w, r)
		})
		state := connector.State{Cursor: "kept", ETag: etag, LastModified: lastModified}

		res, err := newPoller(t, srv, nil).Poll(t.Context(), state)
		require.NoError(t, err)

		assert.True(t, res.NotModified)
		assert.Equal(t, state, res.State)
		assert.Empty(t, res.Items)
		reqs := srv.Requests()
		require.Len(t, reqs, 1)
		assert.Equal(t, etag, reqs[0].Header.Get("If-None-Match"))
		assert.Equal(t, lastModified, reqs[0].Header.Get("If-Modified-Since"))
	})

	t.Run("200 captures ETag and Last-Modified and keeps the cursor", func(t *testing.T) {
		srv := ct.Replay(t, ct.Any(serveBody("application/atom+xml", body).
			WithHeader("ETag", etag).WithHeader("Last-Modified", lastModified)))
		res, err := newPoller(t, srv, nil).Poll(t.Context(), connector.State{Cursor: "kept", ETag: `"stale"`})
		require.NoError(t, err)

		assert.False(t, res.NotModified)
		assert.Equal(t, connector.State{Cursor: "kept", ETag: etag, LastModified: lastModified}, res.State)
		assert.Len(t, res.Items, 10)
	})

	t.Run("200 without validators clears the old ones", func(t *testing.T) {
		srv := ct.Replay(t, ct.Any(serveBody("application/atom+xml", body)))
		res, err := newPoller(t, srv, nil).Poll(t.Context(), connector.State{Cursor: "kept", ETag: `"stale"`, LastModified: lastModified})
		require.NoError(t, err)
		assert.Equal(t, connector.State{Cursor: "kept"}, res.State)
	})
}

func TestFailedPolls(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		contentType string
		body        string
		wantErr     string // the whole error text
		wantStatus  int
	}{
		{
			name:   "500 names the status and the upstream's message",
			status: http.StatusInternalServerError, contentType: "text/plain",
			body:       "upstream feed generator\n crashed",
			wantErr:    "feed: upstream answered 500 Internal Server Error: upstream feed generator crashed",
			wantStatus: http.StatusInternalServerError,
		},
		{
			name:   "410 for a feed that is gone",
			status: http.StatusGone, contentType: "text/plain",
			body:       "This feed has moved away",
			wantErr:    "feed: upstream answered 410 Gone: This feed has moved away",
			wantStatus: http.StatusGone,
		},
		{
			name:   "an HTML page",
			status: http.StatusOK, contentType: "text/html",
			body:    "<!DOCTYPE html><html><body>Log in</body></html>",
			wantErr: `feed: response is not RSS or Atom: failed to detect feed type (starts "<!DOCTYPE html><html><body>Log in</body></html>") (Content-Type "text/html")`,
		},
		{
			name:   "plain garbage",
			status: http.StatusOK, contentType: "application/octet-stream",
			body:    "\x00\x01garbage",
			wantErr: `feed: response is not RSS or Atom: failed to detect feed type (starts "\x00\x01garbage") (Content-Type "application/octet-stream")`,
		},
		{
			name:   "truncated RSS",
			status: http.StatusOK, contentType: "application/rss+xml",
			body:    "<rss><channel><item>",
			wantErr: `feed: response is not RSS or Atom: XML syntax error on line 1: unexpected EOF (starts "<rss><channel><item>") (Content-Type "application/rss+xml")`,
		},
		{
			name:   "a JSON error from an API",
			status: http.StatusOK, contentType: "application/json",
			body:    `{"error":"token expired"}`,
			wantErr: `feed: response is not RSS or Atom: it is JSON, and JSON Feed is not supported (starts "{\"error\":\"token expired\"}") (Content-Type "application/json")`,
		},
		{
			name:   "empty body",
			status: http.StatusOK, contentType: "application/rss+xml",
			body:    "  \n",
			wantErr: `feed: response is not RSS or Atom: the body is empty (Content-Type "application/rss+xml")`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := ct.Replay(t, ct.Any(ct.Response{
				Status: tt.status,
				Header: http.Header{"Content-Type": {tt.contentType}, "Etag": {`"new"`}},
				Body:   []byte(tt.body),
			}))
			res, err := newPoller(t, srv, nil).Poll(t.Context(), connector.State{ETag: `"old"`})
			require.Error(t, err)
			assert.Equal(t, tt.wantErr, err.Error())
			assert.Empty(t, res.Items)
			assert.Equal(t, connector.State{}, res.State, "a failed poll returns no state to store")
			statusErr, isStatus := errors.AsType[*upstream.StatusError](err)
			if tt.wantStatus != 0 {
				require.True(t, isStatus, "an *upstream.StatusError in the chain")
				assert.Equal(t, tt.wantStatus, statusErr.StatusCode)
			} else {
				assert.False(t, isStatus)
			}
		})
	}
}

func TestSecretsStayOutOfErrors(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	closedURL := srv.URL
	srv.Close() // nothing listens there now: the request fails to connect

	raw, err := json.Marshal(map[string]any{"url": "http://me:s3cret@" + strings.TrimPrefix(closedURL, "http://") + "/private.rss?token=s3cret&tag=go"})
	require.NoError(t, err)
	c, err := New(raw, connector.Deps{HTTP: upstream.NewClient(upstream.Options{Allow: egress.Loopback()})})
	require.NoError(t, err)

	_, err = c.Poll(t.Context(), connector.State{})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "s3cret")
	assert.Contains(t, err.Error(), `feed: Get http://me:xxxxx@`)
	assert.Contains(t, err.Error(), "/private.rss?token=xxxxx&tag=xxxxx")

	_, err = New(json.RawMessage(`{"url":"ftp://me:s3cret@example.com/f.rss?token=s3cret"}`), connector.Deps{})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "s3cret")
	assert.Contains(t, err.Error(), `config.url: "ftp://me:xxxxx@example.com/f.rss?token=xxxxx" is not an absolute http(s) URL`)
}

func TestUserAgent(t *testing.T) {
	srv := ct.Replay(t, ct.Any(serveBody("application/rss+xml", ct.Load(t, fixtureLiftoff).Body)))
	_, err := newPoller(t, srv, map[string]any{"user_agent": "my-reader/1.0 (ops@example.com)"}).Poll(t.Context(), connector.State{})
	require.NoError(t, err)
	reqs := srv.Requests()
	require.Len(t, reqs, 1)
	assert.Equal(t, "my-reader/1.0 (ops@example.com)", reqs[0].Header.Get("User-Agent"))
}

func TestCancelAbortsThePoll(t *testing.T) {
	srv := ct.Hang(t, nil)
	err := srv.CancelPoll(t, newPoller(t, srv.Server, nil))
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled)
	assert.True(t, strings.HasPrefix(err.Error(), "feed: "), err.Error())
}

func TestCancelWhileReadingTheBody(t *testing.T) {
	srv := ct.Hang(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/rss+xml")
		_, _ = w.Write([]byte(`<rss version="2.0"><channel>`)) // the rest of the body never comes
	})
	err := srv.CancelPoll(t, newPoller(t, srv.Server, nil))
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled)
	assert.True(t, strings.HasPrefix(err.Error(), "feed: "), err.Error())
}

func TestNilHTTPFallsBackToTheUpstreamClient(t *testing.T) {
	srv := ct.Replay(t, ct.Any(serveBody("application/rss+xml", ct.Load(t, fixtureLiftoff).Body)))
	c, err := New(json.RawMessage(`{"url":"`+srv.URL+`/rss","allow_hosts":["127.0.0.1"]}`), connector.Deps{})
	require.NoError(t, err)
	res, err := c.Poll(t.Context(), connector.State{})
	require.NoError(t, err)
	assert.Len(t, res.Items, 4)
	assert.True(t, strings.HasPrefix(srv.Requests()[0].Header.Get("User-Agent"), "pollgrid/"))
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name     string
		raw      string
		wantErr  []string // every one must appear in the error
		wantURL  string
		wantMax  int
		wantUser string
	}{
		// valid
		{name: "defaults", raw: `{"url":"https://github.com/gulpjs/gulp/releases.atom"}`,
			wantURL: "https://github.com/gulpjs/gulp/releases.atom", wantMax: 200},
		{name: "everything set", raw: `{"url":"http://example.com/rss?tag=go","user_agent":"reader (ops@example.com)","max_items":10000}`,
			wantURL: "http://example.com/rss?tag=go", wantMax: 10000, wantUser: "reader (ops@example.com)"},

		// url
		{name: "url missing", raw: `{}`,
			wantErr: []string{`config.url: required: write an absolute http(s) URL, e.g. "https://github.com/gulpjs/gulp/releases.atom"`}},
		{name: "empty config", raw: ``,
			wantErr: []string{"config.url: required"}},
		{name: "url blank", raw: `{"url":"  "}`,
			wantErr: []string{"config.url: required"}},
		{name: "url relative", raw: `{"url":"example.com/feed.xml"}`,
			wantErr: []string{`config.url: "example.com/feed.xml" is not an absolute http(s) URL (write e.g. "https://github.com/gulpjs/gulp/releases.atom")`}},
		{name: "url feed scheme", raw: `{"url":"feed://example.com/rss"}`,
			wantErr: []string{`config.url: "feed://example.com/rss" is not an absolute http(s) URL`}},
		{name: "url unparsable", raw: `{"url":"http://[::1"}`,
			wantErr: []string{`config.url: cannot be parsed as a URL (write an absolute http(s) URL, e.g. "https://github.com/gulpjs/gulp/releases.atom")`}},
		{name: "url with a fragment", raw: `{"url":"https://example.com/feed.xml#top"}`,
			wantErr: []string{`config.url: "https://example.com/feed.xml" has a #fragment, which is never sent (remove it)`}},

		// user_agent
		{name: "user_agent with a newline", raw: `{"url":"https://example.com/rss","user_agent":"a\r\nX-Evil: 1"}`,
			wantErr: []string{`config.user_agent: must be one line without control characters`}},

		// max_items
		{name: "max_items 0", raw: `{"url":"https://example.com/rss","max_items":0}`,
			wantErr: []string{"config.max_items: 0 is out of range (write a number from 1 to 10000; default 200)"}},
		{name: "max_items too many", raw: `{"url":"https://example.com/rss","max_items":10001}`,
			wantErr: []string{"config.max_items: 10001 is out of range"}},

		// decoding
		{name: "unknown field", raw: `{"url":"https://example.com/rss","base_url":"https://example.com"}`,
			wantErr: []string{`config.base_url: unknown field (known: url, user_agent, max_items, emit_deletes, allow_hosts)`}},
		{name: "wrong type", raw: `{"url":"https://example.com/rss","max_items":"5"}`,
			wantErr: []string{"config.max_items: must be a whole number, not a string"}},
		{name: "several problems at once", raw: `{"url":"nope","user_agent":"\u0007","max_items":-1}`,
			wantErr: []string{"config.url:", "config.user_agent:", "config.max_items:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.wantErr) > 0 {
				ct.ConfigError(t, New, tt.raw, tt.wantErr...)
				return
			}
			c, err := New(json.RawMessage(tt.raw), connector.Deps{})
			require.NoError(t, err)
			p, ok := c.(*feedPoller)
			require.True(t, ok)
			assert.Equal(t, tt.wantURL, p.url)
			assert.Equal(t, tt.wantMax, p.maxItems)
			assert.Equal(t, tt.wantUser, p.userAgent)
		})
	}
}

func BenchmarkParse(b *testing.B) {
	body := ct.Load(b, fixtureGulp).Body // the largest fixture
	base, err := url.Parse("https://github.com/gulpjs/gulp/releases.atom")
	require.NoError(b, err)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		parsed, err := parse(body)
		if err != nil {
			b.Fatal(err)
		}
		items, _ := toItems(parsed.Items, parsed.Title, base)
		if len(items) != 10 {
			b.Fatalf("parse: %d items", len(items))
		}
	}
}

func TestEnclosures(t *testing.T) {
	rss := `<?xml version="1.0"?><rss version="2.0" xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd"><channel><title>t</title>
<item><guid>a</guid><itunes:duration>1:02:03</itunes:duration><enclosure url="/audio/a.mp3" length="12" type="audio/mpeg"/></item>
<item><guid>b</guid><itunes:duration>62:03</itunes:duration><enclosure url="https://cdn.example/b.mp4" length="unknown" type="video/mp4"/></item>
<item><guid>c</guid><itunes:duration>soon</itunes:duration></item>
</channel></rss>`
	atom := `<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>
<entry><id>d</id><updated>2024-01-01T00:00:00Z</updated><link rel="enclosure" href="https://cdn.example/d.ogg" type="audio/ogg" length="99"/></entry>
</feed>`
	tests := []struct {
		name, body string
		want       []string // each item's enclosures and duration, as JSON
	}{
		{name: "rss", body: rss, want: []string{
			`{"enclosures":[{"url":"SRV/audio/a.mp3","type":"audio/mpeg","length":12}],"duration_seconds":3723}`,
			`{"enclosures":[{"url":"https://cdn.example/b.mp4","type":"video/mp4"}],"duration_seconds":3723}`,
			`{"enclosures":[]}`,
		}},
		{name: "atom", body: atom, want: []string{
			`{"enclosures":[{"url":"https://cdn.example/d.ogg","type":"audio/ogg","length":99}]}`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := ct.Replay(t, ct.Any(ct.Response{Body: []byte(tt.body)}))
			res, err := newPoller(t, srv, nil).Poll(t.Context(), connector.State{})
			require.NoError(t, err)
			require.Len(t, res.Items, len(tt.want))
			for i, want := range tt.want {
				e := decodeEntry(t, res.Items[i])
				got, err := json.Marshal(struct {
					Enclosures      []Enclosure `json:"enclosures"`
					DurationSeconds *int64      `json:"duration_seconds,omitempty"`
				}{e.Enclosures, e.DurationSeconds})
				require.NoError(t, err)
				assert.JSONEq(t, strings.ReplaceAll(want, "SRV", srv.URL), string(got), "item %d", i)
			}
		})
	}
}
