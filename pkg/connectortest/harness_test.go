package connectortest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
	weathernoaa "github.com/pollgrid/pollgrid/pkg/connectors/weather-noaa"
)

const (
	heatWarning = "urn:oid:2.49.0.1.840.0.505a7220d91b00eb1d75a3fb4f339f825496a522.004.1"
	airQuality  = "urn:oid:2.49.0.1.840.0.32b8fe5b1e8094248fdbb7a32619581ec4e1df14.001.1"
)

func noaaConfig(baseURL, selector string) string {
	return fmt.Sprintf(`{%s, "user_agent": "(connectortest, ops@example.com)", "base_url": %q}`, selector, baseURL)
}

// withSent returns the recorded response with one alert's sent time changed.
// NWS never does this (an update is a new alert id); it is here to make the
// harness publish an "updated" signal.
func withSent(t *testing.T, resp Response, id, sent string) Response {
	t.Helper()
	var doc map[string]any
	require.NoError(t, json.Unmarshal(resp.Body, &doc))
	changed := false
	for _, f := range doc["features"].([]any) {
		props := f.(map[string]any)["properties"].(map[string]any)
		if props["id"] == id {
			props["sent"] = sent
			changed = true
		}
	}
	require.True(t, changed, "no feature %s", id)
	body, err := json.Marshal(doc)
	require.NoError(t, err)
	resp.Body = body
	return resp
}

func etag(resp Response, value string) Response {
	resp.Header = resp.Header.Clone()
	resp.Header.Set("ETag", value)
	return resp
}

func TestHarnessWeatherNOAA(t *testing.T) {
	recorded := Load(t, "alerts_active_point_2024.json")
	updated := withSent(t, recorded, airQuality, "2024-07-18T14:05:00-07:00")
	srv := Replay(t, GET("/alerts/active?point=33.25,-112.30",
		etag(recorded, `"v1"`),
		Response{Status: http.StatusNotModified, Header: http.Header{"ETag": {`"v1"`}}},
		etag(recorded, `"v1"`), // a server that ignores If-None-Match
		etag(updated, `"v2"`),
	))
	h := New(t, weathernoaa.New, weathernoaa.TypeName, noaaConfig(srv.URL, `"point": "33.25,-112.30"`))

	first := h.Poll(t.Context())
	first.RequireOK(t)
	first.AssertSignals(t,
		Want{ID: heatWarning, Version: "2024-07-18T12:47:00-07:00", Change: Created},
		Want{ID: airQuality, Version: "2024-07-18T08:13:00-07:00", Change: Created},
	)
	assert.Empty(t, first.Failed)
	assert.Equal(t, `"v1"`, first.State.ETag)
	assert.False(t, first.State.LastSuccess.IsZero())
	var data map[string]any
	require.NoError(t, json.Unmarshal(first.Signals[0].Data, &data))
	assert.Equal(t, first.Signals[0].ID, data["id"])

	notModified := h.Poll(t.Context())
	notModified.RequireOK(t)
	assert.True(t, notModified.NotModified)
	notModified.AssertNoSignals(t)
	assert.Equal(t, `"v1"`, notModified.State.ETag, "a 304 keeps the ETag")

	same := h.Poll(t.Context())
	same.RequireOK(t)
	same.AssertNoSignals(t)

	changed := h.Poll(t.Context())
	changed.RequireOK(t)
	changed.AssertSignals(t, Want{ID: airQuality, Version: "2024-07-18T14:05:00-07:00", Change: Updated})
	assert.Equal(t, []string{airQuality}, changed.IDs())
	assert.Equal(t, `"v2"`, changed.State.ETag)

	reqs := srv.Requests()
	require.Len(t, reqs, 4)
	assert.Empty(t, reqs[0].Header.Get("If-None-Match"), "nothing stored yet")
	for _, r := range reqs[1:] {
		assert.Equal(t, `"v1"`, r.Header.Get("If-None-Match"), "the stored ETag is sent")
	}
}

func TestHarnessFollowsRewrittenPagination(t *testing.T) {
	srv := Replay(t,
		GET("/alerts/active?area=WI", Load(t, "alerts_with_pagination_2020.json")),
		GET("/alerts?cursor=eyJ0IjoxNjA2MzM4Mzc3LCJpIjoiTldTLUlEUC1QUk9ELUtFRVBBTElWRS0yODUxNyJ9",
			Load(t, "alerts_active_zone_ORZ004_2019.json")),
	)
	srv.Rewrite("https://api.weather.gov")
	h := New(t, weathernoaa.New, weathernoaa.TypeName, noaaConfig(srv.URL, `"area": "WI"`))

	p := h.Poll(t.Context())
	p.RequireOK(t)
	p.AssertSignals(t,
		Want{ID: "NWS-IDP-PROD-4559554", Version: "2020-11-26T03:12:00-06:00", Change: Created},
		Want{ID: "NWS-IDP-PROD-3965873-3369046", Version: "2019-12-20T13:34:00-08:00", Change: Created},
	)
	require.Len(t, srv.Requests(), 2)
	assert.Equal(t, "/alerts", srv.Requests()[1].URL.Path)
}

func TestHarnessCommitsFailures(t *testing.T) {
	srv := Replay(t, Any(Response{
		Status: http.StatusInternalServerError,
		Header: http.Header{"Content-Type": {"application/problem+json"}},
		Body:   []byte(`{"title": "Unexpected Problem", "detail": "An unexpected problem has occurred."}`),
	}))
	h := New(t, weathernoaa.New, weathernoaa.TypeName, noaaConfig(srv.URL, `"area": "AZ"`))

	for i := 1; i <= 2; i++ {
		p := h.Poll(t.Context())
		require.Error(t, p.Err)
		p.AssertNoSignals(t)
		assert.Equal(t, i, p.State.ConsecutiveFailures)
		assert.Contains(t, p.State.LastError, "500 Internal Server Error: Unexpected Problem")
		assert.True(t, p.State.LastSuccess.IsZero())
	}

	srv.Set(Any(Load(t, "alerts_active_point_2024.json")))
	p := h.Poll(t.Context())
	p.RequireOK(t)
	p.AssertSignals(t, Want{ID: heatWarning, Change: Created}, Want{ID: airQuality, Change: Created})
	assert.Zero(t, p.State.ConsecutiveFailures)
	assert.Empty(t, p.State.LastError)
}

type connectorFunc func(ctx context.Context, s connector.State) (connector.Result, error)

func (f connectorFunc) Poll(ctx context.Context, s connector.State) (connector.Result, error) {
	return f(ctx, s)
}

func factoryOf(c connector.Connector) connector.Factory {
	return func(json.RawMessage, connector.Deps) (connector.Connector, error) { return c, nil }
}

func TestHarnessReportsPanicsAndBadItems(t *testing.T) {
	var p Poll
	rec := runWith(t, func(rt testing.TB) {
		h := New(rt, factoryOf(connectorFunc(func(context.Context, connector.State) (connector.Result, error) {
			var body []byte
			_ = body[0]
			return connector.Result{}, nil
		})), "panicky", `{}`)
		p = h.Poll(t.Context())
	})
	assert.Contains(t, rec.messages(), "panicky panicked in Poll: runtime error: index out of range")
	assert.Error(t, p.Err)

	h := New(t, factoryOf(connectorFunc(func(context.Context, connector.State) (connector.Result, error) {
		return connector.Result{Items: []connector.Item{
			{ID: "a", Version: "1", Data: json.RawMessage(`{"n":1}`)},
			{ID: "b", Version: ""},
			{ID: "a", Version: "2"},
		}}, nil
	})), "items", `{}`)
	p = h.Poll(t.Context())
	p.RequireOK(t)
	p.AssertSignals(t, Want{ID: "a", Version: "1", Change: Created})
	require.Len(t, p.Failed, 2)
	assert.Equal(t, "b", p.Failed[0].ID)
	assert.EqualError(t, p.Failed[1].Err, "item id repeated in one poll")
}

func TestAssertionsFail(t *testing.T) {
	p := Poll{Signals: []Signal{{ID: "a", Version: "1", Change: Created}, {ID: "b", Version: "1", Change: Updated}}}
	tests := []struct {
		name   string
		assert func(t testing.TB)
		want   string
	}{
		{"missing signal", func(t testing.TB) { p.AssertSignals(t, Want{ID: "a"}) }, "missing:    none\n  unexpected: b@1 (updated)"},
		{"wrong version", func(t testing.TB) { p.AssertSignals(t, Want{ID: "a", Version: "2"}, Want{ID: "b"}) }, "missing:    a@2 (created)\n  unexpected: a@1 (created)"},
		{"wrong change", func(t testing.TB) { p.AssertSignals(t, Want{ID: "a"}, Want{ID: "b", Change: Created}) }, "missing:    b@1 (created)\n  unexpected: b@1 (updated)"},
		{"unexpected signals", func(t testing.TB) { p.AssertNoSignals(t) }, "the poll published 2 signal(s), want none: a@1 (created), b@1 (updated)"},
		{"signal not published", func(t testing.TB) { p.AssertSignals(t, Want{ID: "a"}, Want{ID: "b"}, Want{ID: "c", Version: "9"}) }, "missing:    c@9 ()\n  unexpected: none"},
		{"failed poll", func(t testing.TB) { Poll{Err: fmt.Errorf("boom")}.RequireOK(t) }, "poll failed: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := runWith(t, tt.assert)
			assert.Contains(t, rec.messages(), tt.want)
		})
	}
	rec := runWith(t, func(rt testing.TB) {
		p.AssertSignals(rt, Want{ID: "b", Version: "1", Change: Updated}, Want{ID: "a"})
		p.RequireOK(rt)
	})
	assert.False(t, rec.Failed(), rec.messages())
}
