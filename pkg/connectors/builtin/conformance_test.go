package builtin_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/connectors/builtin"
	ct "github.com/pollgrid/pollgrid/pkg/connectortest"
)

// conformance holds, for every connector type, a valid config and the
// recorded answers of one good poll (from that type's own testdata). The
// factory is the one registered in builtin.Registry(), so an entry runs as
// soon as its type is registered, and a registered type without an entry
// fails TestEveryTypeConforms: add yours here.
var conformance = map[string]ct.Spec{
	"weather-noaa": {
		Config: func(baseURL string) string {
			return fmt.Sprintf(`{"point": "33.25,-112.30", "user_agent": "(pollgrid-conformance, ops@example.com)", "base_url": %q}`, baseURL)
		},
		OK: func(t testing.TB) []ct.Route {
			return []ct.Route{ct.GET("/alerts/active?point=33.25,-112.30", ct.Load(t, "../weather-noaa/testdata/alerts_active_point_2024.json"))}
		},
		BadConfigs: []string{
			`{"user_agent": "(a, b@example.com)"}`,
			`{"area": "ca", "user_agent": "(a, b@example.com)"}`,
			`{"area": "CA"}`,
			`{"area": "CA", "user_agent": "(a, b@example.com)", "base_url": "ftp://mirror.example"}`,
			`{"area": "CA", "user_agent": "(a, b@example.com)", "unknown": 1}`,
		},
	},
	"usgs-earthquakes": {
		Config: func(baseURL string) string { return fmt.Sprintf(`{"feed": "all_hour", "base_url": %q}`, baseURL) },
		OK: func(t testing.TB) []ct.Route {
			return []ct.Route{ct.GET("/earthquakes/feed/v1.0/summary/all_hour.geojson", ct.Load(t, "../usgs-earthquakes/testdata/all_hour_2017.json"))}
		},
		BadConfigs: []string{
			`{}`,
			`{"feed": "all_year"}`,
			`{"feed": "all_hour", "base_url": "not a url"}`,
			`{"feed": "all_hour", "min_magnitude": "big"}`,
		},
	},
	"github-issues": {
		Config: func(baseURL string) string {
			return fmt.Sprintf(`{"owner": "octokit-fixture-org", "repo": "tmp-scenario-paginate-issues-20220719043836917-izyoe", "per_page": 3, "base_url": %q}`, baseURL)
		},
		OK: func(t testing.TB) []ct.Route {
			// The recording skips pages 3 and 4: page 2's next link gets the last page.
			return []ct.Route{
				ct.GET("/repos/octokit-fixture-org/tmp-scenario-paginate-issues-20220719043836917-izyoe/issues",
					ct.Load(t, "../github-issues/testdata/list_issues_page1.json")),
				ct.GET("/repositories/515435940/issues?page=2", ct.Load(t, "../github-issues/testdata/list_issues_page2.json")),
				ct.GET("/repositories/515435940/issues?page=3", ct.Load(t, "../github-issues/testdata/list_issues_page5_last.json")),
			}
		},
		Rewrite: []string{"https://api.github.com"},
		BadConfigs: []string{
			`{}`,
			`{"owner": "nats-io/nats-server", "repo": "x"}`,
			`{"owner": "o", "repo": "r", "state": "bogus"}`,
			`{"owner": "o", "repo": "r", "per_page": 101}`,
		},
	},
	"github-releases": {
		Config: func(baseURL string) string {
			// One page: the recording's next page was not recorded.
			return fmt.Sprintf(`{"owner": "api-playground", "repo": "hello-world", "max_pages": 1, "base_url": %q}`, baseURL)
		},
		OK: func(t testing.TB) []ct.Route {
			return []ct.Route{ct.GET("/repos/api-playground/hello-world/releases", ct.Load(t, "../github-releases/testdata/list_releases_2013_page1.json"))}
		},
		Rewrite: []string{"https://api.github.com"},
		BadConfigs: []string{
			`{"owner": "nats-io"}`,
			`{"owner": "o", "repo": "r", "max_pages": 0}`,
			`{"owner": "o", "repo": "r", "base_url": "https://github.com"}`,
		},
	},
	"jira-issues": {
		Config: func(baseURL string) string {
			return fmt.Sprintf(`{"base_url": %q, "email": "ops@example.com", "api_token": "conformance-token", "jql": "project = TD"}`, baseURL)
		},
		OK: func(t testing.TB) []ct.Route {
			return []ct.Route{{Method: http.MethodPost, Path: "/rest/api/3/search/jql", Responses: []ct.Response{jiraSearchPage(t)}}}
		},
		BadConfigs: []string{
			`{}`,
			`{"base_url": "https://acme.atlassian.net", "email": "ops@example.com", "api_token": "t"}`,
			`{"base_url": "acme.atlassian.net", "email": "ops@example.com", "api_token": "t", "jql": "project = OPS"}`,
		},
	},
	"slack-history": {
		Config: func(baseURL string) string {
			// One page: every recorded answer says has_more.
			return fmt.Sprintf(`{"token": "xoxb-conformance", "channel": "C1234567890", "max_pages": 1, "base_url": %q}`, baseURL)
		},
		OK: func(t testing.TB) []ct.Route {
			return []ct.Route{ct.GET("/conversations.history?channel=C1234567890", ct.Load(t, "../slack-history/testdata/conversations_history_page1.json"))}
		},
		BadConfigs: []string{
			`{"channel": "C1234567890"}`,
			`{"token": "xoxb-1"}`,
			`{"token": "xoxb-1", "channel": "C1234567890", "limit": 0}`,
		},
	},
	"datadog-events": {
		Config: func(baseURL string) string {
			return fmt.Sprintf(`{"api_key": "conformance-api-key", "app_key": "conformance-app-key", "base_url": %q}`, baseURL)
		},
		OK: func(t testing.TB) []ct.Route {
			return []ct.Route{
				ct.GET("/api/v2/events?page[cursor]="+datadogPage1After, ct.Load(t, "../datadog-events/testdata/events_v2_list_page3_empty.json")),
				ct.GET("/api/v2/events", ct.Load(t, "../datadog-events/testdata/events_v2_list_page1.json")),
			}
		},
		Rewrite: []string{"https://api.datadoghq.com"},
		BadConfigs: []string{
			`{}`,
			`{"api_key": "k"}`,
			`{"api_key": "k", "app_key": "a", "lookback": "yesterday"}`,
		},
	},
	"feed": {
		Config: func(baseURL string) string {
			return fmt.Sprintf(`{"url": %q}`, baseURL+"/feed-rs/feed-rs/releases.atom")
		},
		OK: func(t testing.TB) []ct.Route {
			return []ct.Route{ct.GET("/feed-rs/feed-rs/releases.atom", ct.Load(t, "../feed/testdata/github_releases_feed-rs_2020.atom.xml"))}
		},
		BadConfigs: []string{
			`{}`,
			`{"url": "ftp://example.com/feed.xml"}`,
			`{"url": "https://example.com/feed.xml", "max_items": 0}`,
		},
	},
	"http-json": {
		Config: func(baseURL string) string {
			return fmt.Sprintf(`{"url": %q, "items": ".features[]", "id": ".id", "version": ".properties.updated"}`,
				baseURL+"/earthquakes/feed/v1.0/summary/all_hour.geojson")
		},
		OK: func(t testing.TB) []ct.Route {
			return []ct.Route{ct.GET("/earthquakes/feed/v1.0/summary/all_hour.geojson", ct.Load(t, "../http-json/testdata/all_hour_2017.json"))}
		},
		BadConfigs: []string{
			`{}`,
			`{"url": "https://example.com/x", "items": ".features[", "id": ".id"}`,
			`{"url": "https://example.com/x", "items": ".features[]", "id": ".id", "method": "PUT"}`,
		},
	},
	"demo": {
		// No upstream: the items come from the clock. With one change a day
		// (at midnight UTC), the repeat poll, milliseconds after the good
		// one, sees the same items unless the two straddle midnight.
		Config:  func(string) string { return `{"items": 3, "change_every": "24h"}` },
		Offline: true,
		BadConfigs: []string{
			`{"items": 0}`,
			`{"items": 1001}`,
			`{"change_every": "500ms"}`,
			`{"change_every": "48h"}`,
			`{"change_every": "often"}`,
			`{"change_evry": "10s"}`,
		},
	},
}

// datadogPage1After is the cursor (meta.page.after) of the recorded page 1.
const datadogPage1After = "eyJhZnRlciI6IkFnQUFBWUdDRldoUV9BZHZQZ0FBQUFBQUFBQVlBQUFBQUVGWlIwTkdWMmhSUVVGQ1VIQk5UMjQxVURKZllVZzFTUUFBQUNRQUFBQUFNREU0TVRneU1UVXROekF5TUMwMFpXTTJMV0l3WVdJdFpEVTFZbU0zTlRZMlpUUTMifQ"

// jiraSearchPage is the recorded Jira Cloud search answer with each issue's
// "updated" set to its "created": the recording asked for summary, created
// and status only, and the connector versions issues by "updated".
func jiraSearchPage(t testing.TB) ct.Response {
	resp := ct.Load(t, "../jira-issues/testdata/search_v3_cloud_2024.json")
	var page map[string]any
	if err := json.Unmarshal(resp.Body, &page); err != nil {
		t.Fatalf("jira fixture: %v", err)
	}
	for _, issue := range page["issues"].([]any) {
		fields := issue.(map[string]any)["fields"].(map[string]any)
		fields["updated"] = fields["created"]
	}
	body, err := json.Marshal(page)
	if err != nil {
		t.Fatalf("jira fixture: %v", err)
	}
	resp.Body = body
	return resp
}

// TestEveryTypeConforms runs the connector conformance suite on every
// registered type.
func TestEveryTypeConforms(t *testing.T) {
	registry := builtin.Registry()
	for _, typeName := range registry.Types() {
		if _, ok := conformance[typeName]; !ok {
			t.Errorf("type %q is registered but has no conformance entry: add one to the table in conformance_test.go "+
				"(a valid config for a base URL, the recorded routes of one good poll, bad configs)", typeName)
		}
	}
	names := make([]string, 0, len(conformance))
	for name := range conformance {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, typeName := range names {
		t.Run(typeName, func(t *testing.T) {
			if !registry.Known(typeName) {
				t.Skipf("%s is not registered in builtin.Registry() yet", typeName)
			}
			spec := conformance[typeName]
			spec.Type = typeName
			spec.Factory = func(raw json.RawMessage, deps connector.Deps) (connector.Connector, error) {
				return registry.New(typeName, raw, deps)
			}
			ct.Conformance(t, spec)
		})
	}
}
