package connectortest_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
	ct "github.com/pollgrid/pollgrid/pkg/connectortest"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

// The smallest useful connector, shown whole in docs/adding-a-connector.md
// (TestExampleIsTheDocs keeps the two equal): the earthquakes of one USGS
// summary feed, one item each, versioned by USGS's "updated" time.

// example:start
type quakesConfig struct {
	Feed    string `json:"feed"`
	BaseURL string `json:"base_url,omitempty"`
}

// quakesSpec describes the config's fields once: Build checks configs
// against it, and the README table and the JSON Schema come from it.
var quakesSpec = connector.Spec{Summary: "The earthquakes of one USGS summary feed.", Fields: []connector.Field{
	{Name: "feed", Kind: connector.String, Required: true, Hint: `write e.g. "all_hour"`, Description: "A USGS summary feed."},
	connector.BaseURL("https://earthquake.usgs.gov", "", "The site.")}}

func (quakesConfig) Spec() connector.Spec { return quakesSpec }

func (c *quakesConfig) ApplyDefaults() { c.BaseURL = cmp.Or(c.BaseURL, "https://earthquake.usgs.gov") }

func (c quakesConfig) Validate() error {
	_, err := upstream.ParseBaseURL("config.base_url", c.BaseURL, "https://earthquake.usgs.gov")
	return err
}

func newQuakes(raw json.RawMessage, deps connector.Deps) (connector.Connector, error) {
	return connector.Build("quakes", raw, deps, func(cfg quakesConfig, deps connector.Deps) (connector.Connector, error) {
		feedURL := strings.TrimRight(cfg.BaseURL, "/") + "/earthquakes/feed/v1.0/summary/" + url.PathEscape(cfg.Feed) + ".geojson"
		return &quakes{url: feedURL, client: upstream.Client(deps)}, nil
	})
}

type quakes struct {
	url    string
	client *http.Client
}

func (q *quakes) Poll(ctx context.Context, state connector.State) (connector.Result, error) {
	answer, err := upstream.Fetch(ctx, q.client, upstream.Request{URL: q.url, Validators: state})
	if err != nil {
		return connector.Result{}, fmt.Errorf("quakes: %w", err)
	}
	if answer.NotModified {
		return connector.Result{NotModified: true, State: state}, nil
	}
	var feed struct{ Features []json.RawMessage }
	if err := upstream.DecodeJSON(answer.Body, &feed); err != nil || feed.Features == nil {
		return connector.Result{}, fmt.Errorf("quakes: %w", cmp.Or(err, errors.New(`response has no "features" array`)))
	}
	result := connector.Result{State: answer.State(state)}
	for i, raw := range feed.Features {
		var f struct {
			ID         string
			Properties struct{ Updated int64 }
		}
		if err := json.Unmarshal(raw, &f); err != nil || f.ID == "" {
			result.Fail(connector.ItemError{Err: cmp.Or(err, errors.New("no id"))}, "features", i)
			continue
		}
		result.Items = append(result.Items, connector.Item{ID: f.ID, Version: strconv.FormatInt(f.Properties.Updated, 10), Data: raw})
	}
	return result, nil
}

// example:end

const usgsAllHour = "../connectors/usgs-earthquakes/testdata/all_hour_2017.json"

// TestExampleConnector: the example keeps every rule a connector type keeps,
// and publishes the recorded feed's 8 earthquakes.
func TestExampleConnector(t *testing.T) {
	spec := ct.Spec{
		Type:    "quakes",
		Factory: newQuakes,
		Config:  func(baseURL string) string { return fmt.Sprintf(`{"feed": "all_hour", "base_url": %q}`, baseURL) },
		OK: func(t testing.TB) []ct.Route {
			return []ct.Route{ct.GET("/earthquakes/feed/v1.0/summary/all_hour.geojson", ct.Load(t, usgsAllHour))}
		},
		BadConfigs: []string{`{}`, `{"feed": "all_hour", "base_url": "earthquake.usgs.gov"}`, `{"feed": "all_hour", "unknown": 1}`},
	}
	ct.Conformance(t, spec)

	srv := ct.Replay(t, spec.OK(t)...)
	p := ct.New(t, newQuakes, "quakes", spec.Config(srv.URL)).Poll(t.Context())
	p.RequireOK(t)
	assert.Len(t, p.Signals, 8)
	assert.Contains(t, p.IDs(), "nc72934355")
}

// codeLines counts the lines of Go source that are neither blank nor a
// comment.
func codeLines(src string) int {
	lines := 0
	for line := range strings.SplitSeq(src, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "//") {
			lines++
		}
	}
	return lines
}

// TestExampleIsTheDocs keeps the code shown in docs/adding-a-connector.md
// the code tested here, the example about 40 lines of code, and the sizes
// the page quotes, the example's and the worked example's (jira_issues.go),
// true.
func TestExampleIsTheDocs(t *testing.T) {
	self, err := os.ReadFile("example_test.go")
	require.NoError(t, err)
	_, code, _ := strings.Cut(string(self), "// example:start\n")
	code, _, _ = strings.Cut(code, "// example:end\n")

	docs, err := os.ReadFile("../../docs/adding-a-connector.md")
	require.NoError(t, err)
	_, shown, ok := strings.Cut(string(docs), "<!-- the example connector, from pkg/connectortest/example_test.go -->\n```go\n")
	require.True(t, ok, "docs/adding-a-connector.md shows the example connector")
	shown, _, _ = strings.Cut(shown, "```")
	assert.Equal(t, strings.TrimSpace(code), strings.TrimSpace(shown), "copy the example between example:start and example:end into the docs")

	lines := codeLines(code)
	assert.LessOrEqual(t, lines, 50, "a simple connector stays about 40 lines")
	prose := strings.Join(strings.Fields(string(docs)), " ") // line breaks as spaces
	says := func(phrase, what string, args ...any) {
		t.Helper()
		assert.True(t, strings.Contains(prose, phrase), "docs/adding-a-connector.md must say %s: %q", fmt.Sprintf(what, args...), phrase)
	}
	says(fmt.Sprintf("complete connector, %d lines of code", lines), "the example is %d lines of code", lines)
	says(fmt.Sprintf("above the example's %d lines", lines), "the example is %d lines of code", lines)

	const jira = "../connectors/jira-issues/jira_issues.go"
	src, err := os.ReadFile(jira)
	require.NoError(t, err)
	total, ofCode := strings.Count(string(src), "\n"), codeLines(string(src))
	says(fmt.Sprintf("full connector on the same helpers: %d lines, %d of them code", total, ofCode),
		"%s is %d lines, %d of them code", jira, total, ofCode)
}
