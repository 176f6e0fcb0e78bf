package usgsearthquakes

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
	ct "github.com/pollgrid/pollgrid/pkg/connectortest"
	"github.com/pollgrid/pollgrid/pkg/egress"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

const (
	fixtureAllHour     = "all_hour_2017.json"
	fixtureSignificant = "significant_week_2017.json"
)

// newPoller builds the connector through the public factory, pointed at srv,
// with the platform's upstream client (as the worker passes it in deps).
func newPoller(t *testing.T, srv *ct.Server, config map[string]any) connector.Connector {
	t.Helper()
	cfg := map[string]any{"feed": "all_hour", "base_url": srv.URL}
	for k, v := range config {
		cfg[k] = v
	}
	raw, err := json.Marshal(cfg)
	require.NoError(t, err)
	c, err := New(raw, connector.Deps{HTTP: upstream.NewClient(upstream.Options{Allow: egress.Loopback()})})
	require.NoError(t, err)
	return c
}

func itemByID(t *testing.T, items []connector.Item, id string) connector.Item {
	t.Helper()
	for _, it := range items {
		if it.ID == id {
			return it
		}
	}
	require.Failf(t, "item not found", "no item with id %q among %d items", id, len(items))
	return connector.Item{}
}

// fileFeatures reads a fixture independently of the connector's own types.
type fileFeature struct {
	ID         string `json:"id"`
	Properties struct {
		Mag     float64 `json:"mag"`
		Updated int64   `json:"updated"`
		Title   string  `json:"title"`
		URL     string  `json:"url"`
	} `json:"properties"`
}

func fileFeatures(t *testing.T, name string) []fileFeature {
	t.Helper()
	var fc struct {
		Features []fileFeature `json:"features"`
	}
	require.NoError(t, json.Unmarshal(ct.Load(t, name).Body, &fc))
	return fc.Features
}

func TestPollFixtures(t *testing.T) {
	tests := []struct {
		name      string
		feed      string
		fixture   string
		wantCount int
		// one item checked against the file
		wantID, wantVersion, wantTitle string
	}{
		{
			name: "all_hour", feed: "all_hour", fixture: fixtureAllHour, wantCount: 8,
			wantID: "nc72934355", wantVersion: "1512342889220", wantTitle: "M 1.9 - 17km ESE of Anderson, CA",
		},
		{
			name: "significant_week", feed: "significant_week", fixture: fixtureSignificant, wantCount: 4,
			wantID: "ci37824087", wantVersion: "1512989778192", wantTitle: "M 4.0 - 14km NE of Julian, CA",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := ct.Replay(t, ct.Any(ct.Load(t, tt.fixture)))
			c := newPoller(t, srv, map[string]any{"feed": tt.feed, "emit_deletes": true})

			res, err := c.Poll(t.Context(), connector.State{})
			require.NoError(t, err)

			assert.False(t, res.NotModified)
			assert.True(t, res.Complete, "a summary feed is read whole: with emit_deletes, a complete listing")
			assert.Empty(t, res.Failed)
			require.Len(t, res.Items, tt.wantCount)
			item := itemByID(t, res.Items, tt.wantID)
			assert.Equal(t, tt.wantVersion, item.Version)
			var quake Earthquake
			require.NoError(t, json.Unmarshal(item.Data, &quake))
			assert.Equal(t, tt.wantTitle, quake.Title)

			// Every item, in file order, has the file's id and updated time.
			features := fileFeatures(t, tt.fixture)
			require.Len(t, features, tt.wantCount)
			for i, f := range features {
				assert.Equal(t, f.ID, res.Items[i].ID)
				assert.Equal(t, strconv.FormatInt(f.Properties.Updated, 10), res.Items[i].Version, f.ID)
			}

			reqs := srv.Requests()
			require.Len(t, reqs, 1)
			assert.Equal(t, "/earthquakes/feed/v1.0/summary/"+tt.feed+".geojson", reqs[0].URL.Path)
			assert.Contains(t, reqs[0].Header.Get("Accept"), "application/geo+json")
			assert.Empty(t, reqs[0].Header.Get("If-None-Match"), "no validators in state, so no conditional request")
			assert.Empty(t, reqs[0].Header.Get("If-Modified-Since"))
		})
	}
}

func TestEarthquakeData(t *testing.T) {
	tests := []struct {
		name    string
		fixture string
		id      string
		want    string // the whole Data object
	}{
		{
			name:    "reviewed event with felt reports and an alert",
			fixture: fixtureSignificant,
			id:      "ci37824087",
			want: `{
				"id": "ci37824087",
				"magnitude": 3.96,
				"mag_type": "mw",
				"place": "14km NE of Julian, CA",
				"time": "2017-12-07T00:33:15.330Z",
				"updated": "2017-12-11T10:56:18.192Z",
				"url": "https://earthquake.usgs.gov/earthquakes/eventpage/ci37824087",
				"detail": "https://earthquake.usgs.gov/earthquakes/feed/v1.0/detail/ci37824087.geojson",
				"status": "reviewed",
				"tsunami": false,
				"alert": "green",
				"felt": 4006,
				"significance": 681,
				"type": "earthquake",
				"title": "M 4.0 - 14km NE of Julian, CA",
				"longitude": -116.4791667,
				"latitude": 33.1478333,
				"depth_km": 11.14
			}`,
		},
		{
			name:    "tsunami flag",
			fixture: fixtureSignificant,
			id:      "us2000c1zn",
			want: `{
				"id": "us2000c1zn",
				"magnitude": 6.4,
				"mag_type": "mww",
				"place": "50km WNW of Fais, Micronesia",
				"time": "2017-12-08T09:51:10.300Z",
				"updated": "2017-12-08T15:16:03.040Z",
				"url": "https://earthquake.usgs.gov/earthquakes/eventpage/us2000c1zn",
				"detail": "https://earthquake.usgs.gov/earthquakes/feed/v1.0/detail/us2000c1zn.geojson",
				"status": "reviewed",
				"tsunami": true,
				"alert": "green",
				"significance": 630,
				"type": "earthquake",
				"title": "M 6.4 - 50km WNW of Fais, Micronesia",
				"longitude": 140.1315,
				"latitude": 10.009,
				"depth_km": 20.27
			}`,
		},
		{
			name:    "automatic event: null alert and felt are left out",
			fixture: fixtureAllHour,
			id:      "nc72934355",
			want: `{
				"id": "nc72934355",
				"magnitude": 1.93,
				"mag_type": "md",
				"place": "17km ESE of Anderson, CA",
				"time": "2017-12-03T23:13:10.490Z",
				"updated": "2017-12-03T23:14:49.220Z",
				"url": "https://earthquake.usgs.gov/earthquakes/eventpage/nc72934355",
				"detail": "https://earthquake.usgs.gov/earthquakes/feed/v1.0/detail/nc72934355.geojson",
				"status": "automatic",
				"tsunami": false,
				"significance": 57,
				"type": "earthquake",
				"title": "M 1.9 - 17km ESE of Anderson, CA",
				"longitude": -122.1271667,
				"latitude": 40.3699989,
				"depth_km": 7.93
			}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parsed, err := parseFeed(ct.Load(t, tt.fixture).Body, nil)
			require.NoError(t, err)
			item := itemByID(t, parsed.items, tt.id)
			assert.JSONEq(t, tt.want, string(item.Data))
		})
	}
}

func TestMinMagnitude(t *testing.T) {
	tests := []struct {
		name    string
		fixture string
		min     float64
		wantIDs []string
	}{
		{
			name: "all_hour at 1.3", fixture: fixtureAllHour, min: 1.3,
			wantIDs: []string{"nc72934355", "nc72934350", "nc72934335", "ci37822575", "us1000bknk"},
		},
		{
			name: "the bound itself is kept", fixture: fixtureAllHour, min: 1.39,
			wantIDs: []string{"nc72934355", "nc72934350", "ci37822575", "us1000bknk"},
		},
		{
			name: "significant_week at 4", fixture: fixtureSignificant, min: 4,
			wantIDs: []string{"us2000c1zn", "us2000c1wt", "us1000bm9m"},
		},
		{
			name: "above everything", fixture: fixtureSignificant, min: 7,
			wantIDs: []string{},
		},
		{
			name: "negative keeps everything", fixture: fixtureAllHour, min: -1,
			wantIDs: []string{"nc72934355", "nc72934350", "ci37822583", "nc72934340", "nc72934335", "nc72934325", "ci37822575", "us1000bknk"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := ct.Replay(t, ct.Any(ct.Load(t, tt.fixture)))
			res, err := newPoller(t, srv, map[string]any{"min_magnitude": tt.min}).Poll(t.Context(), connector.State{})
			require.NoError(t, err)
			assert.Equal(t, tt.wantIDs, ct.ItemIDs(res.Items))
			assert.Empty(t, res.Failed)
		})
	}

	t.Run("an earthquake without a magnitude is left out when filtering", func(t *testing.T) {
		body := `{"type":"FeatureCollection","features":[
			{"type":"Feature","id":"a","properties":{"mag":null,"updated":1}},
			{"type":"Feature","id":"b","properties":{"mag":2,"updated":2}}]}`
		parsed, err := parseFeed([]byte(body), new(1.0))
		require.NoError(t, err)
		assert.Equal(t, []string{"b"}, ct.ItemIDs(parsed.items))
		assert.Equal(t, 1, parsed.skipped)

		parsed, err = parseFeed([]byte(body), nil)
		require.NoError(t, err)
		assert.Equal(t, []string{"a", "b"}, ct.ItemIDs(parsed.items), "without min_magnitude it is kept")
		assert.JSONEq(t, `{"id":"a","magnitude":null,"updated":"1970-01-01T00:00:00.001Z","tsunami":false}`, string(parsed.items[0].Data))
	})
}

func TestConditionalRequests(t *testing.T) {
	const etag = `"5a2f1c3e-17c2"`
	const lastModified = "Sun, 03 Dec 2017 23:15:50 GMT"
	body := ct.Load(t, fixtureAllHour).Body

	t.Run("304 keeps the state", func(t *testing.T) {
		srv := ct.Serve(t, func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("If-None-Match") == etag {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			ct.JSON(http.StatusOK, body).ServeHTTP(w, r)
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
		srv := ct.Replay(t, ct.Any(ct.JSON(http.StatusOK, body).WithHeader("ETag", etag).WithHeader("Last-Modified", lastModified)))
		res, err := newPoller(t, srv, nil).Poll(t.Context(), connector.State{Cursor: "kept", ETag: `"stale"`})
		require.NoError(t, err)

		assert.False(t, res.NotModified)
		assert.Equal(t, connector.State{Cursor: "kept", ETag: etag, LastModified: lastModified}, res.State)
		assert.Len(t, res.Items, 8)
	})

	t.Run("200 without validators clears the old ones", func(t *testing.T) {
		srv := ct.Replay(t, ct.Any(ct.JSON(http.StatusOK, body)))
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
			body:       "Internal error\n  feed generation failed",
			wantErr:    "usgs all_hour: upstream answered 500 Internal Server Error: Internal error feed generation failed",
			wantStatus: http.StatusInternalServerError,
		},
		{
			name:   "404 for a feed USGS retired",
			status: http.StatusNotFound, contentType: "text/html",
			body:       "<html><body><h1>Page Not Found</h1></body></html>",
			wantErr:    `usgs all_hour: upstream answered 404 Not Found: an HTML page: "Page Not Found"`,
			wantStatus: http.StatusNotFound,
		},
		{
			name:   "garbage body",
			status: http.StatusOK, contentType: "text/html",
			body:    "<html>maintenance</html>",
			wantErr: `usgs all_hour: response is not the JSON expected: invalid character '<' looking for beginning of value (starts "<html>maintenance</html>") (Content-Type "text/html")`,
		},
		{
			name:   "JSON that is not a FeatureCollection",
			status: http.StatusOK, contentType: "application/json",
			body:    `{"type":"Feature","id":"nc1"}`,
			wantErr: `usgs all_hour: response is not a GeoJSON FeatureCollection (type "Feature") (Content-Type "application/json")`,
		},
		{
			name:   "FeatureCollection without features",
			status: http.StatusOK, contentType: "application/json",
			body:    `{"type":"FeatureCollection","metadata":{"count":0}}`,
			wantErr: `usgs all_hour: response is not a GeoJSON FeatureCollection (no "features" array) (Content-Type "application/json")`,
		},
		{
			name:   "features of the wrong type",
			status: http.StatusOK, contentType: "application/json",
			body:    `{"type":"FeatureCollection","features":{}}`,
			wantErr: `usgs all_hour: response is not the JSON expected: json: cannot unmarshal object into Go struct field featureCollection.features of type []json.RawMessage`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := ct.Replay(t, ct.Any(ct.Response{Status: tt.status, Header: http.Header{"Content-Type": {tt.contentType}}, Body: []byte(tt.body)}))
			res, err := newPoller(t, srv, nil).Poll(t.Context(), connector.State{ETag: `"old"`})
			require.Error(t, err)
			assert.Empty(t, res.Items)
			assert.Equal(t, connector.State{}, res.State, "a failed poll returns no state to store")
			if strings.HasSuffix(tt.wantErr, "[]json.RawMessage") {
				assert.True(t, strings.HasPrefix(err.Error(), tt.wantErr), err.Error())
			} else {
				assert.Equal(t, tt.wantErr, err.Error())
			}
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

func TestBadFeatures(t *testing.T) {
	tests := []struct {
		name       string
		feature    string
		wantFailed string
		wantErr    string
	}{
		{
			name:       "no id",
			feature:    `{"type":"Feature","properties":{"mag":2,"updated":1512342889220}}`,
			wantFailed: "features[1]",
			wantErr:    "earthquake has no feature id",
		},
		{
			name:       "no updated",
			feature:    `{"type":"Feature","id":"nc1","properties":{"mag":2,"updated":null}}`,
			wantFailed: "nc1",
			wantErr:    "earthquake has no properties.updated, so its revisions cannot be told apart",
		},
		{
			name:       "neither",
			feature:    `{"type":"Feature","properties":{"mag":2}}`,
			wantFailed: "features[1]",
			wantErr:    "earthquake has neither an id nor properties.updated",
		},
		{
			name:       "updated of the wrong type keeps the id",
			feature:    `{"type":"Feature","id":"nc2","properties":{"updated":"yesterday"}}`,
			wantFailed: "nc2",
			wantErr:    "not a USGS earthquake feature: json: cannot unmarshal string",
		},
		{
			name:       "not an object",
			feature:    `"oops"`,
			wantFailed: "features[1]",
			wantErr:    "not a USGS earthquake feature",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fc map[string]any
			require.NoError(t, json.Unmarshal(ct.Load(t, fixtureSignificant).Body, &fc))
			features := fc["features"].([]any)
			var bad any
			require.NoError(t, json.Unmarshal([]byte(tt.feature), &bad))
			// features[1] is the bad one, between good ones.
			fc["features"] = append([]any{features[0], bad}, features[1:]...)
			body, err := json.Marshal(fc)
			require.NoError(t, err)

			srv := ct.Replay(t, ct.Any(ct.JSON(http.StatusOK, body)))
			res, err := newPoller(t, srv, nil).Poll(t.Context(), connector.State{})
			require.NoError(t, err, "one bad feature never fails the poll")

			assert.Equal(t, []string{"us2000c1zn", "us2000c1wt", "ci37824087", "us1000bm9m"}, ct.ItemIDs(res.Items))
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
	assert.True(t, strings.HasPrefix(err.Error(), "usgs all_hour: "), err.Error())
}

// countingTransport proves which client a request went through.
type countingTransport struct {
	mu    sync.Mutex
	calls int
	next  http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.calls++
	c.mu.Unlock()
	return c.next.RoundTrip(r)
}

func TestHTTPClient(t *testing.T) {
	srv := ct.Replay(t, ct.Any(ct.Load(t, fixtureSignificant)))
	raw := json.RawMessage(`{"feed":"significant_week","base_url":"` + srv.URL + `"}`)

	t.Run("deps.HTTP is used", func(t *testing.T) {
		transport := &countingTransport{next: srv.Client().Transport}
		c, err := New(raw, connector.Deps{HTTP: &http.Client{Transport: transport}})
		require.NoError(t, err)
		_, err = c.Poll(t.Context(), connector.State{})
		require.NoError(t, err)
		assert.Equal(t, 1, transport.calls)
	})
	t.Run("nil deps.HTTP falls back to the upstream client", func(t *testing.T) {
		raw := json.RawMessage(`{"feed":"significant_week","base_url":"` + srv.URL + `","allow_hosts":["127.0.0.1"]}`)
		c, err := New(raw, connector.Deps{})
		require.NoError(t, err)
		res, err := c.Poll(t.Context(), connector.State{})
		require.NoError(t, err)
		assert.Len(t, res.Items, 4)
		reqs := srv.Requests()
		assert.True(t, strings.HasPrefix(reqs[len(reqs)-1].Header.Get("User-Agent"), "pollgrid/"),
			"the upstream client names pollgrid in its User-Agent")
	})
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		wantErr []string // every one must appear in the error
		wantURL string   // for a valid config: the request URL
		wantMin *float64
	}{
		// valid
		{name: "defaults", raw: `{"feed":"all_hour"}`,
			wantURL: "https://earthquake.usgs.gov/earthquakes/feed/v1.0/summary/all_hour.geojson"},
		{name: "significant_week", raw: `{"feed":"significant_week"}`,
			wantURL: "https://earthquake.usgs.gov/earthquakes/feed/v1.0/summary/significant_week.geojson"},
		{name: "4.5_month with min_magnitude", raw: `{"feed":"4.5_month","min_magnitude":5.5}`,
			wantURL: "https://earthquake.usgs.gov/earthquakes/feed/v1.0/summary/4.5_month.geojson", wantMin: new(5.5)},
		{name: "2.5_day", raw: `{"feed":"2.5_day"}`,
			wantURL: "https://earthquake.usgs.gov/earthquakes/feed/v1.0/summary/2.5_day.geojson"},
		{name: "1.0_week, min_magnitude 0", raw: `{"feed":"1.0_week","min_magnitude":0}`,
			wantURL: "https://earthquake.usgs.gov/earthquakes/feed/v1.0/summary/1.0_week.geojson", wantMin: new(0.0)},
		{name: "base_url with a path and a trailing slash", raw: `{"feed":"all_day","base_url":"http://mirror.example:8080/usgs/"}`,
			wantURL: "http://mirror.example:8080/usgs/earthquakes/feed/v1.0/summary/all_day.geojson"},
		{name: "empty base_url means the default", raw: `{"feed":"all_day","base_url":""}`,
			wantURL: "https://earthquake.usgs.gov/earthquakes/feed/v1.0/summary/all_day.geojson"},

		// feed
		{name: "feed missing", raw: `{}`,
			wantErr: []string{`config.feed: required: write <level>_<period> with level one of significant, 4.5, 2.5, 1.0, all and period one of hour, day, week, month, e.g. "all_hour" or "significant_week"`}},
		{name: "empty config", raw: ``,
			wantErr: []string{"config.feed: required"}},
		{name: "unknown level", raw: `{"feed":"3.0_day"}`,
			wantErr: []string{`config.feed: "3.0_day" is not a USGS summary feed name (write <level>_<period> with level one of significant, 4.5, 2.5, 1.0, all`}},
		{name: "unknown period", raw: `{"feed":"all_year"}`,
			wantErr: []string{`config.feed: "all_year" is not a USGS summary feed name (write <level>_<period>`}},
		{name: "integer level", raw: `{"feed":"1_day"}`,
			wantErr: []string{`config.feed: "1_day" is not a USGS summary feed name`}},
		{name: "upper case", raw: `{"feed":"Significant_Week"}`,
			wantErr: []string{`config.feed: "Significant_Week" is not a USGS summary feed name (write "significant_week")`}},
		{name: "file name", raw: `{"feed":"all_hour.geojson"}`,
			wantErr: []string{`config.feed: "all_hour.geojson" is not a USGS summary feed name (write "all_hour")`}},
		{name: "whole URL", raw: `{"feed":"https://earthquake.usgs.gov/earthquakes/feed/v1.0/summary/4.5_week.geojson"}`,
			wantErr: []string{`is not a USGS summary feed name (write "4.5_week")`}},

		// min_magnitude
		{name: "min_magnitude too large", raw: `{"feed":"all_day","min_magnitude":45}`,
			wantErr: []string{"config.min_magnitude: 45 is out of range (write a number from -10 to 10, e.g. 2.5)"}},
		{name: "min_magnitude too small", raw: `{"feed":"all_day","min_magnitude":-11}`,
			wantErr: []string{"config.min_magnitude: -11 is out of range"}},
		{name: "min_magnitude as a string", raw: `{"feed":"all_day","min_magnitude":"4.5"}`,
			wantErr: []string{"config.min_magnitude: must be a number, not a string"}},

		// base_url
		{name: "base_url relative", raw: `{"feed":"all_day","base_url":"earthquake.usgs.gov"}`,
			wantErr: []string{`config.base_url: "earthquake.usgs.gov" is not an absolute http(s) URL (write e.g. "https://earthquake.usgs.gov")`}},
		{name: "base_url unparsable", raw: `{"feed":"all_day","base_url":"http://[::1"}`,
			wantErr: []string{`config.base_url: cannot be parsed as a URL`}},
		{name: "base_url with query", raw: `{"feed":"all_day","base_url":"https://earthquake.usgs.gov?x=1"}`,
			wantErr: []string{`config.base_url: "https://earthquake.usgs.gov?x=xxxxx" must not carry a query (write the API root, e.g. "https://earthquake.usgs.gov")`}},
		{name: "base_url password is redacted", raw: `{"feed":"all_day","base_url":"ftp://me:s3cret@mirror.example"}`,
			wantErr: []string{`config.base_url: "ftp://me:xxxxx@mirror.example" is not an absolute http(s) URL`}},

		// decoding
		{name: "unknown field", raw: `{"feed":"all_day","minmag":2}`,
			wantErr: []string{`config.minmag: unknown field (known: feed, min_magnitude, emit_deletes, base_url, allow_hosts)`}},
		{name: "several problems at once", raw: `{"feed":"everything","min_magnitude":99,"base_url":"nope"}`,
			wantErr: []string{"config.feed:", "config.min_magnitude:", "config.base_url:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.wantErr) > 0 {
				err := ct.ConfigError(t, New, tt.raw, tt.wantErr...)
				assert.NotContains(t, err.Error(), "s3cret")
				return
			}
			c, err := New(json.RawMessage(tt.raw), connector.Deps{})
			require.NoError(t, err)
			p, ok := c.(*feedPoller)
			require.True(t, ok)
			assert.Equal(t, tt.wantURL, p.feedURL)
			assert.Equal(t, tt.wantMin, p.minMagnitude)
		})
	}
}

func BenchmarkParse(b *testing.B) {
	body := ct.Load(b, fixtureAllHour).Body
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		parsed, err := parseFeed(body, nil)
		if err != nil || len(parsed.items) != 8 {
			b.Fatalf("parse: %d items, %v", len(parsed.items), err)
		}
	}
}
