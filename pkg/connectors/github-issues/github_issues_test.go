package githubissues

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/connectors/internal/githubapi"
	ct "github.com/pollgrid/pollgrid/pkg/connectortest"
)

const (
	testToken = "ghp_TESTSECRET0001"
	// The recorded repository; per_page 3 as recorded.
	owner     = "octokit-fixture-org"
	repo      = "tmp-scenario-paginate-issues-20220719043836917-izyoe"
	listPath  = "/repos/" + owner + "/" + repo + "/issues"
	movedPath = "/repositories/515435940/issues" // where GitHub's Link URLs go
	firstQ    = "state=all&sort=updated&direction=asc&per_page=3"

	fixturePage1 = "list_issues_page1.json"
	fixturePage2 = "list_issues_page2.json"
	fixtureLast  = "list_issues_page5_last.json"
	fixture422   = "error_422_validation.json"
	fixture304   = "conditional_get_304_not_modified.headers.json"

	// maxUpdated is the latest updated_at in the three recorded pages (#13).
	maxUpdated = "2022-07-19T04:39:16Z"
)

// pages answers like the recording: page 1 at the list URL, page 2 at its
// Link. Pages 3 and 4 were not kept in the fixtures, so page 2's rel="next"
// (page=3) is answered with the recorded last page (page 5, no rel="next").
func pages(t *testing.T) *ct.Server {
	srv := ct.Replay(t,
		ct.GET(listPath, ct.Load(t, fixturePage1)),
		ct.GET(movedPath+"?page=2", ct.Load(t, fixturePage2)),
		ct.GET(movedPath+"?page=3", ct.Load(t, fixtureLast)))
	srv.RewriteHeaders(githubapi.DefaultBaseURL)
	return srv
}

// serveIssues answers every request with these issues and page 1's headers
// without its Link.
func serveIssues(t *testing.T, issues ...any) *ct.Server {
	body, err := json.Marshal(issues)
	require.NoError(t, err)
	return ct.Replay(t, ct.Any(ct.Load(t, fixturePage1).WithoutHeader("Link").WithBody(body)))
}

// recordedIssues returns every recorded issue as maps, to alter, in file order
// (#13, 12, 11, 10, 9, 8, 1).
func recordedIssues(t *testing.T) []map[string]any {
	var all []map[string]any
	for _, name := range []string{fixturePage1, fixturePage2, fixtureLast} {
		var page []map[string]any
		require.NoError(t, json.Unmarshal(ct.Load(t, name).Body, &page))
		all = append(all, page...)
	}
	return all
}

func newPoller(t *testing.T, srv *ct.Server, config map[string]any) connector.Connector {
	t.Helper()
	cfg := map[string]any{"owner": owner, "repo": repo, "base_url": srv.URL, "token": testToken, "per_page": 3}
	for k, v := range config {
		if v == nil {
			delete(cfg, k)
			continue
		}
		cfg[k] = v
	}
	raw, err := json.Marshal(cfg)
	require.NoError(t, err)
	c, err := New(raw, connector.Deps{HTTP: srv.Client()})
	require.NoError(t, err)
	return c
}

func TestPollFollowsLinkExactly(t *testing.T) {
	tests := []struct {
		name       string
		maxPages   int
		wantIDs    []string
		wantPaths  []string
		wantQuery  []string
		wantCursor string
	}{
		{
			name:       "until a page has no rel=next",
			maxPages:   10,
			wantIDs:    []string{"13", "12", "11", "10", "9", "8", "1"},
			wantPaths:  []string{listPath, movedPath, movedPath},
			wantQuery:  []string{firstQ, "per_page=3&page=2", "per_page=3&page=3"},
			wantCursor: maxUpdated,
		},
		{
			name:       "max_pages stops early",
			maxPages:   2,
			wantIDs:    []string{"13", "12", "11", "10", "9", "8"},
			wantPaths:  []string{listPath, movedPath},
			wantQuery:  []string{firstQ, "per_page=3&page=2"},
			wantCursor: maxUpdated,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := pages(t)
			res, err := newPoller(t, srv, map[string]any{"max_pages": tt.maxPages}).Poll(t.Context(), connector.State{})
			require.NoError(t, err)

			assert.False(t, res.NotModified)
			assert.Empty(t, res.Failed)
			assert.Equal(t, tt.wantIDs, ct.ItemIDs(res.Items))
			assert.Equal(t, "2022-07-19T04:39:16Z", res.Items[0].Version)
			assert.Equal(t, connector.State{
				Cursor: tt.wantCursor,
				ETag:   `"33b993150c346057e2d21c5333d4bc506287037296cc0ec3f450bafe9b4bdc72"`, // page 1's
			}, res.State)

			reqs := srv.Requests()
			require.Len(t, reqs, len(tt.wantPaths))
			for i, r := range reqs {
				assert.Equal(t, tt.wantPaths[i], r.URL.Path)
				assert.Equal(t, tt.wantQuery[i], r.URL.RawQuery, "request %d: the Link URL as given", i)
				assert.Equal(t, "Bearer "+testToken, r.Header.Get("Authorization"))
				assert.Equal(t, "application/vnd.github+json", r.Header.Get("Accept"))
				assert.Equal(t, "2022-11-28", r.Header.Get("X-GitHub-Api-Version"))
			}
		})
	}
}

func TestCursor(t *testing.T) {
	t.Run("the second poll sends since=<max updated_at>", func(t *testing.T) {
		srv := pages(t)
		c := newPoller(t, srv, nil)
		first, err := c.Poll(t.Context(), connector.State{})
		require.NoError(t, err)
		require.Equal(t, maxUpdated, first.State.Cursor)

		second, err := c.Poll(t.Context(), first.State)
		require.NoError(t, err)
		reqs := srv.Requests()
		require.Len(t, reqs, 6)
		assert.Equal(t, firstQ, reqs[0].URL.RawQuery, "first poll: no since")
		assert.Equal(t, firstQ+"&since="+maxUpdated, reqs[3].URL.RawQuery)
		assert.Equal(t, maxUpdated, second.State.Cursor)
	})

	issues := recordedIssues(t)
	pr := issues[0] // #13, the latest, as a pull request
	pr["pull_request"] = map[string]any{"url": "https://api.github.com/repos/o/r/pulls/13"}
	broken := recordedIssues(t)[0] // #13 again, with a field of the wrong type
	broken["title"] = 13

	tests := []struct {
		name       string
		config     map[string]any
		state      string
		serve      []any
		wantSince  string // "" for none
		wantCursor string
	}{
		{name: "config since starts the first poll", config: map[string]any{"since": "2022-07-19T04:39:00Z"},
			serve: []any{issues[1]}, wantSince: "2022-07-19T04:39:00Z", wantCursor: "2022-07-19T04:39:13Z"},
		{name: "config since with an offset is sent in UTC", config: map[string]any{"since": "2022-07-19T06:39:00+02:00"},
			serve: []any{}, wantSince: "2022-07-19T04:39:00Z", wantCursor: ""},
		{name: "the stored cursor wins over config since", config: map[string]any{"since": "2020-01-01T00:00:00Z"},
			state: "2022-07-19T04:39:10Z", serve: []any{issues[2], issues[1]}, wantSince: "2022-07-19T04:39:10Z", wantCursor: "2022-07-19T04:39:13Z"},
		{name: "no issues: the cursor stays", state: "2022-07-19T04:39:10Z",
			serve: []any{}, wantSince: "2022-07-19T04:39:10Z", wantCursor: "2022-07-19T04:39:10Z"},
		{name: "only the issue at the cursor (since is inclusive): the cursor stays", state: "2022-07-19T04:39:10Z",
			serve: []any{issues[2]}, wantSince: "2022-07-19T04:39:10Z", wantCursor: "2022-07-19T04:39:10Z"},
		{name: "no issues and no cursor: still none",
			serve: []any{}, wantCursor: ""},
		{name: "a skipped pull request moves the cursor", state: "2022-07-19T04:39:10Z",
			serve: []any{issues[1], pr}, wantSince: "2022-07-19T04:39:10Z", wantCursor: "2022-07-19T04:39:16Z"},
		{name: "a failed issue moves the cursor", state: "2022-07-19T04:39:10Z",
			serve: []any{issues[1], broken}, wantSince: "2022-07-19T04:39:10Z", wantCursor: "2022-07-19T04:39:16Z"},
		{name: "a stored cursor that is not a time falls back to config since", config: map[string]any{"since": "2022-07-19T04:39:00Z"},
			state: "page-7", serve: []any{issues[1]}, wantSince: "2022-07-19T04:39:00Z", wantCursor: "2022-07-19T04:39:13Z"},
		{name: "a stored cursor that is not a time, no config since", state: "page-7",
			serve: []any{}, wantCursor: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serveIssues(t, tt.serve...)
			res, err := newPoller(t, srv, tt.config).Poll(t.Context(), connector.State{Cursor: tt.state})
			require.NoError(t, err)
			assert.Equal(t, tt.wantCursor, res.State.Cursor)
			reqs := srv.Requests()
			require.Len(t, reqs, 1)
			wantQuery := firstQ
			if tt.wantSince != "" {
				wantQuery += "&since=" + tt.wantSince
			}
			assert.Equal(t, wantQuery, reqs[0].URL.RawQuery)
		})
	}
}

func TestIssueData(t *testing.T) {
	t.Run("recorded issue #13", func(t *testing.T) {
		srv := pages(t)
		res, err := newPoller(t, srv, nil).Poll(t.Context(), connector.State{})
		require.NoError(t, err)
		require.NotEmpty(t, res.Items)
		assert.Equal(t, "13", res.Items[0].ID)
		assert.JSONEq(t, `{
			"number": 13,
			"title": "Test issue 13",
			"state": "open",
			"html_url": "https://github.com/octokit-fixture-org/tmp-scenario-paginate-issues-20220719043836917-izyoe/issues/13",
			"user": "octokit-fixture-user-a",
			"labels": [],
			"assignees": [],
			"comments": 0,
			"created_at": "2022-07-19T04:39:16Z",
			"updated_at": "2022-07-19T04:39:16Z",
			"is_pull_request": false
		}`, string(res.Items[0].Data))
	})

	t.Run("labels, assignees, closed, pull request kept when asked", func(t *testing.T) {
		// No recorded issue has labels, assignees or a close: added here in
		// GitHub's documented shape.
		is := recordedIssues(t)[0]
		is["state"], is["closed_at"], is["comments"] = "closed", "2022-07-20T08:00:00Z", 2
		is["labels"] = []any{map[string]any{"id": 1, "name": "bug", "color": "d73a4a"}, "ui"}
		is["assignees"] = []any{map[string]any{"login": "alice"}, map[string]any{"login": "bob"}}
		is["pull_request"] = map[string]any{"url": "https://api.github.com/repos/o/r/pulls/13"}
		srv := serveIssues(t, is)
		res, err := newPoller(t, srv, map[string]any{"include_pull_requests": true}).Poll(t.Context(), connector.State{})
		require.NoError(t, err)
		require.Len(t, res.Items, 1)
		var got Issue
		require.NoError(t, json.Unmarshal(res.Items[0].Data, &got))
		assert.Equal(t, []string{"bug", "ui"}, got.Labels)
		assert.Equal(t, []string{"alice", "bob"}, got.Assignees)
		assert.Equal(t, "closed", got.State)
		assert.Equal(t, "2022-07-20T08:00:00Z", got.ClosedAt)
		assert.Equal(t, int64(2), got.Comments)
		assert.True(t, got.IsPullRequest)
	})
}

func TestPullRequestsAreSkippedNotFailed(t *testing.T) {
	issues := recordedIssues(t)
	issues[1]["pull_request"] = map[string]any{"url": "https://api.github.com/repos/o/r/pulls/12"}
	issues[2]["pull_request"] = nil // a null key is not a pull request
	srv := serveIssues(t, issues[0], issues[1], issues[2])
	res, err := newPoller(t, srv, nil).Poll(t.Context(), connector.State{})
	require.NoError(t, err)
	assert.Equal(t, []string{"13", "11"}, ct.ItemIDs(res.Items))
	assert.Empty(t, res.Failed)
}

func TestBadIssuesFailAlone(t *testing.T) {
	issues := recordedIssues(t)
	noNumber := issues[0]
	delete(noNumber, "number")
	wrongType := issues[1]
	wrongType["title"] = 12
	noUpdated := issues[2]
	noUpdated["updated_at"] = nil
	older, newer := issues[3], recordedIssues(t)[3] // #10 twice: updated mid-poll
	newer["updated_at"] = "2022-07-19T05:00:00Z"

	srv := serveIssues(t, noNumber, wrongType, noUpdated, "not an object", older, newer, issues[4])
	res, err := newPoller(t, srv, nil).Poll(t.Context(), connector.State{})
	require.NoError(t, err, "bad issues never fail the poll")
	assert.Equal(t, []string{"10", "9"}, ct.ItemIDs(res.Items))
	assert.Equal(t, "2022-07-19T05:00:00Z", res.Items[0].Version, "an issue seen twice keeps its newer version")
	assert.Equal(t, "2022-07-19T05:00:00Z", res.State.Cursor)
	require.Len(t, res.Failed, 4)
	for i, want := range []struct{ id, err string }{
		{"issues[0]", "issue has no number"},
		{"12", "not a GitHub issue: json: cannot unmarshal number"},
		{"11", "issue has no RFC 3339 updated_at"},
		{"issues[3]", "not a GitHub issue"},
	} {
		assert.Equal(t, want.id, res.Failed[i].ID)
		assert.ErrorContains(t, res.Failed[i].Err, want.err)
	}
}

func TestNotModified(t *testing.T) {
	rec304 := ct.Load(t, fixture304)
	state := connector.State{Cursor: maxUpdated, ETag: `"8600bedcb7fed1d8065e1693e05529ce"`, LastModified: "Thu, 22 Aug 2013 02:09:11 GMT"}
	srv := ct.Serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") == state.ETag {
			rec304.ServeHTTP(w, r)
			return
		}
		http.Error(w, "want a conditional request", http.StatusBadRequest)
	})
	res, err := newPoller(t, srv, nil).Poll(t.Context(), state)
	require.NoError(t, err)
	assert.True(t, res.NotModified)
	assert.Equal(t, state, res.State, "a 304 moves nothing")
	reqs := srv.Requests()
	require.Len(t, reqs, 1)
	assert.Equal(t, state.LastModified, reqs[0].Header.Get("If-Modified-Since"))
	assert.Equal(t, firstQ+"&since="+maxUpdated, reqs[0].URL.RawQuery)
}

func TestErrors(t *testing.T) {
	rec422 := ct.Load(t, fixture422)
	// No rate-limited answer was recorded: the 422's headers with the limit
	// at 0, and GitHub's documented message.
	rateLimited := rec422.WithHeader("X-RateLimit-Remaining", "0").
		WithBody([]byte(`{"message":"API rate limit exceeded for user ID 31898046.","documentation_url":"https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"}`))
	rateLimited.Status = http.StatusForbidden
	prefix := "list issues of " + owner + "/" + repo + ": "

	tests := []struct {
		name string
		rec  ct.Response
		want string
	}{
		{name: "422 error_422_validation", rec: rec422,
			want: prefix + "github: 422 Unprocessable Entity: Validation Failed"},
		{name: "403 rate limit exhausted", rec: rateLimited,
			want: prefix + "github: 403 Forbidden: API rate limit exceeded for user ID 31898046. (rate limit exhausted until 2022-07-19T05:36:39Z)"},
		{name: "401 bad credentials", rec: rec422.WithBody([]byte(`{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest"}`)),
			want: prefix + "github: 401 Unauthorized: Bad credentials (GitHub refused config.token: check that it is valid and not expired)"},
		{name: "200 that is not a list", rec: ct.Load(t, fixtureLast).WithBody([]byte(`{"message":"oops"}`)),
			want: prefix + "github: response is not a list of issues: response is not the JSON expected"},
	}
	tests[2].rec.Status = http.StatusUnauthorized
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := ct.Replay(t, ct.Any(tt.rec))
			srv.RewriteHeaders(githubapi.DefaultBaseURL)
			res, err := newPoller(t, srv, nil).Poll(t.Context(), connector.State{Cursor: maxUpdated})
			require.Error(t, err)
			assert.Equal(t, connector.Result{}, res, "a failed poll moves no cursor")
			assert.True(t, strings.HasPrefix(err.Error(), tt.want), "got  %s\nwant %s", err, tt.want)
			assert.Equal(t, "Bearer "+testToken, srv.Requests()[0].Header.Get("Authorization"))
			assert.NotContains(t, err.Error(), testToken, "the token is a header, never error text")
		})
	}
}

func TestForeignNextLinkIsRefused(t *testing.T) {
	foreign := ct.Serve(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`[]`)) })
	// The recorded Link, pointed at another host:port of the same scheme.
	page1 := ct.Load(t, fixturePage1)
	page1 = page1.WithHeader("Link", strings.ReplaceAll(page1.Header.Get("Link"), githubapi.DefaultBaseURL, foreign.URL))
	srv := ct.Replay(t, ct.Any(page1))

	res, err := newPoller(t, srv, nil).Poll(t.Context(), connector.State{Cursor: "2022-07-19T00:00:00Z"})
	require.Error(t, err)
	assert.Equal(t, connector.Result{}, res, "a refused page fails the whole poll; the cursor stays")
	assert.Equal(t, fmt.Sprintf(`list issues of %s/%s: github: Link rel="next": next page %q leaves %s; refusing to follow it (set config.base_url to the host the upstream links to)`,
		owner, repo, foreign.URL+movedPath+"?per_page=xxxxx&page=xxxxx", srv.URL), err.Error())
	assert.NotContains(t, err.Error(), testToken)
	assert.Len(t, srv.Requests(), 1)
	assert.Empty(t, foreign.Requests(), "the foreign host never sees the token")
}

func TestCancelAbortsThePoll(t *testing.T) {
	srv := ct.Hang(t, nil)
	err := srv.CancelPoll(t, newPoller(t, srv.Server, nil))
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled)
	assert.True(t, strings.HasPrefix(err.Error(), "list issues of "+owner+"/"+repo+": github: "), err.Error())
}

func TestConfig(t *testing.T) {
	or := `"owner":"nats-io","repo":"nats-server"`
	tests := []struct {
		name    string
		raw     string
		wantErr []string
		// for a valid config
		wantURL   string
		wantMax   int
		wantSince time.Time
		wantPRs   bool
	}{
		{name: "defaults", raw: `{` + or + `}`,
			wantURL: "https://api.github.com/repos/nats-io/nats-server/issues?state=all&sort=updated&direction=asc&per_page=30", wantMax: 10},
		{name: "everything set", raw: `{` + or + `,"token":"ghp_x","base_url":"https://ghe.example/api/v3","state":"open","labels":["bug","ui polish","a&b"],` +
			`"include_pull_requests":true,"per_page":100,"max_pages":50,"since":"2024-01-01T00:00:00Z"}`,
			wantURL: "https://ghe.example/api/v3/repos/nats-io/nats-server/issues?state=open&sort=updated&direction=asc&per_page=100&labels=bug,ui+polish,a%26b",
			wantMax: 50, wantSince: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), wantPRs: true},
		{name: "empty config lists every problem", raw: ``,
			wantErr: []string{"config.owner: required", "config.repo: required"}},
		{name: "state in capitals", raw: `{` + or + `,"state":"Open"}`,
			wantErr: []string{`config.state: "Open" is not a valid state (write "open"; default "all")`}},
		{name: "unknown state", raw: `{` + or + `,"state":"merged"}`,
			wantErr: []string{`config.state: "merged" is not a valid state (write "open", "closed" or "all"; default "all")`}},
		{name: "labels: empty and with a comma", raw: `{` + or + `,"labels":["ok"," ","bug,ui"]}`,
			wantErr: []string{"config.labels[1]: empty (write a label name, or leave the label out)",
				`config.labels[2]: "bug,ui" contains a comma, which GitHub reads as two labels (write one label per list entry: ["bug", "ui"])`}},
		{name: "labels as a string", raw: `{` + or + `,"labels":"bug,ui"}`,
			wantErr: []string{`config.labels: must be a list of strings, like ["a", "b"], not a string`}},
		{name: "since not RFC 3339", raw: `{` + or + `,"since":"2024-01-01"}`,
			wantErr: []string{`config.since: "2024-01-01" is not an RFC 3339 time (write e.g. "2024-01-01T00:00:00Z")`}},
		{name: "several problems at once", raw: `{"owner":"","repo":"a/b/c","token":"ghp_TESTSECRET0001 x","state":"x","per_page":0,"max_pages":101,"since":"now"}`,
			wantErr: []string{"config.owner:", "config.repo:", "config.token:", "config.state:", "config.per_page:",
				"config.max_pages: 101 is out of range (write a number from 1 to 100; default 10)", "config.since:"}},
		{name: "unknown field", raw: `{` + or + `,"include_prs":true}`,
			wantErr: []string{`config.include_prs: unknown field (known: owner, repo, token, base_url, per_page, max_pages, state, labels, include_pull_requests, since, allow_hosts)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.wantErr) > 0 {
				err := ct.ConfigError(t, New, tt.raw, tt.wantErr...)
				assert.NotContains(t, err.Error(), testToken)
				return
			}
			c, err := New(json.RawMessage(tt.raw), connector.Deps{})
			require.NoError(t, err)
			p, ok := c.(*issuePoller)
			require.True(t, ok)
			assert.Equal(t, tt.wantURL, p.listURL)
			assert.Equal(t, tt.wantMax, p.maxPages)
			assert.True(t, tt.wantSince.Equal(p.since), "since %v, want %v", p.since, tt.wantSince)
			assert.Equal(t, tt.wantPRs, p.includePullRequests)
		})
	}
}
