package jiraissues

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
	ct "github.com/pollgrid/pollgrid/pkg/connectortest"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

// The fixtures are real answers of the removed /rest/api/3/search (Cloud,
// 2024) and /rest/api/2/search (the old docs sample). No recorded answer of
// /rest/api/3/search/jql with a known source exists, so the tests take the
// real "issues" arrays and wrap them in the documented shape of the new
// endpoint, {issues, nextPageToken, isLast}. See testdata/ and
// shared/fixtures/PROVENANCE.md.
const (
	fixtureCloud   = "search_v3_cloud_2024.json"   // 7 issues: summary, created, status
	fixtureDocs    = "search_v2_docs_example.json" // 2 issues: summary, issuetype
	fixtureRemoved = "search_get_removed_410.json"

	testEmail = "ops@example.com"
	testToken = "test-api-token"
)

// fixtureIssues returns the issues of a recorded search answer. With
// withUpdated, each issue gets fields.updated = its fields.created (or a
// fixed time when it has none): the recordings asked for a few fields only,
// and this connector always asks for "updated".
func fixtureIssues(t testing.TB, name string, withUpdated bool) []map[string]any {
	t.Helper()
	var answer struct {
		Issues []map[string]any `json:"issues"`
	}
	require.NoError(t, json.Unmarshal(ct.Load(t, name).Body, &answer))
	require.NotEmpty(t, answer.Issues)
	if withUpdated {
		for _, issue := range answer.Issues {
			fields := issue["fields"].(map[string]any)
			fields["updated"] = "2013-05-01T10:00:00.000+0200"
			if created, ok := fields["created"].(string); ok {
				fields["updated"] = created
			}
		}
	}
	return answer.Issues
}

// pageBody is one answer of /rest/api/3/search/jql.
func pageBody(t testing.TB, issues []map[string]any, nextPageToken string, isLast bool) []byte {
	t.Helper()
	page := map[string]any{"issues": issues, "isLast": isLast}
	if nextPageToken != "" {
		page["nextPageToken"] = nextPageToken
	}
	body, err := json.Marshal(page)
	require.NoError(t, err)
	return body
}

// seenRequest is what the fake Jira was asked.
type seenRequest struct {
	Method, Path string
	Header       http.Header
	Body         map[string]any
}

// seen lists what f was asked, each JSON body decoded.
func seen(f *ct.Server) []seenRequest {
	var out []seenRequest
	for _, r := range f.Requests() {
		var body map[string]any
		_ = json.NewDecoder(bytes.NewReader(r.Body)).Decode(&body)
		out = append(out, seenRequest{Method: r.Method, Path: r.URL.Path, Header: r.Header, Body: body})
	}
	return out
}

// serveSearch answers every request with answer's response to its JSON body.
func serveSearch(t *testing.T, answer func(body map[string]any) ct.Response) *ct.Server {
	t.Helper()
	return ct.Serve(t, func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		answer(body).ServeHTTP(w, r)
	})
}

// newPoller builds the connector through the public factory, pointed at f.
func newPoller(t *testing.T, f *ct.Server, config map[string]any) *issuePoller {
	t.Helper()
	cfg := map[string]any{"base_url": f.URL, "email": testEmail, "api_token": testToken, "jql": "project = TD"}
	for k, v := range config {
		cfg[k] = v
	}
	raw, err := json.Marshal(cfg)
	require.NoError(t, err)
	c, err := New(raw, connector.Deps{HTTP: f.Client()})
	require.NoError(t, err)
	return c.(*issuePoller)
}

func decodeIssue(t *testing.T, item connector.Item) map[string]any {
	t.Helper()
	var data map[string]any
	require.NoError(t, json.Unmarshal(item.Data, &data))
	return data
}

func TestPollTwoPagesOfCloudIssues(t *testing.T) {
	issues := fixtureIssues(t, fixtureCloud, true)
	f := serveSearch(t, func(body map[string]any) ct.Response {
		if body["nextPageToken"] == "token-2" {
			return ct.JSON(200, pageBody(t, issues[4:], "", true))
		}
		return ct.JSON(200, pageBody(t, issues[:4], "token-2", false))
	})
	p := newPoller(t, f, nil)

	res, err := p.Poll(t.Context(), connector.State{})
	require.NoError(t, err)

	assert.Empty(t, res.Failed)
	keys := []string{}
	for _, item := range res.Items {
		keys = append(keys, item.ID)
	}
	assert.Equal(t, []string{"TD-3482", "TD-3481", "TT-13567", "TD-3480", "TT-13566", "TD-3479", "TT-13565"}, keys)
	assert.Equal(t, "2024-11-13T20:27:56.526+0000", res.Items[0].Version, "the version is fields.updated as Jira sent it")
	assert.Equal(t, map[string]any{
		"key":     "TD-3482",
		"id":      "45156",
		"summary": "Allow 'Artnight' to rollback to v5.5.0",
		"status":  "Done",
		"created": "2024-11-13T20:27:56.526Z",
		"updated": "2024-11-13T20:27:56.526Z",
		"url":     f.URL + "/browse/TD-3482",
	}, decodeIssue(t, res.Items[0]))
	assert.Equal(t, "In Dev", decodeIssue(t, res.Items[4])["status"])
	assert.Equal(t, connector.State{Cursor: "2024-11-13T20:27:56.526Z"}, res.State, "cursor is the newest updated seen")

	reqs := seen(f)
	require.Len(t, reqs, 2)
	for _, r := range reqs {
		assert.Equal(t, http.MethodPost, r.Method)
		assert.Equal(t, "/rest/api/3/search/jql", r.Path)
		assert.Equal(t, "Basic "+base64.StdEncoding.EncodeToString([]byte(testEmail+":"+testToken)), r.Header.Get("Authorization"))
		assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
		assert.Equal(t, "(project = TD) ORDER BY updated ASC", r.Body["jql"], "no cursor yet: no time window")
		assert.Equal(t, []any{"summary", "status", "updated", "created", "assignee", "issuetype", "priority"}, r.Body["fields"])
		assert.Equal(t, float64(50), r.Body["maxResults"])
	}
	assert.NotContains(t, reqs[0].Body, "nextPageToken", "the first page sends no token")
	assert.NotContains(t, reqs[0].Body, "startAt", "search/jql answers 400 to startAt")
	assert.Equal(t, "token-2", reqs[1].Body["nextPageToken"])
}

func TestDocsExampleIssues(t *testing.T) {
	f := ct.Replay(t, ct.Any(ct.JSON(200, pageBody(t, fixtureIssues(t, fixtureDocs, true), "", true))))
	p := newPoller(t, f, map[string]any{"fields": []string{"summary", "issuetype", "timetracking"}})

	res, err := p.Poll(t.Context(), connector.State{})
	require.NoError(t, err)

	require.Len(t, res.Items, 2)
	assert.Empty(t, res.Failed)
	assert.Equal(t, map[string]any{
		"key":          "BULK-62",
		"id":           "10230",
		"summary":      "testing",
		"issue_type":   "Sub-task",
		"updated":      "2013-05-01T10:00:00+02:00",
		"url":          f.URL + "/browse/BULK-62",
		"other_fields": map[string]any{"timetracking": nil, "customfield_10071": nil},
	}, decodeIssue(t, res.Items[0]))
	assert.Equal(t, "Task", decodeIssue(t, res.Items[1])["issue_type"])
	assert.Equal(t, "2013-05-01T08:00:00Z", res.State.Cursor)
	assert.Equal(t, []any{"summary", "issuetype", "timetracking", "updated"}, seen(f)[0].Body["fields"],
		`"updated" is added to the configured fields`)
}

func TestRecordedIssuesWithoutUpdatedAreItemErrors(t *testing.T) {
	// As recorded, the issues have no fields.updated: each one fails on its
	// own, named by its key, and the poll itself succeeds.
	tests := []struct {
		name     string
		fixture  string
		wantKeys []string
	}{
		{name: "cloud", fixture: fixtureCloud,
			wantKeys: []string{"TD-3482", "TD-3481", "TT-13567", "TD-3480", "TT-13566", "TD-3479", "TT-13565"}},
		{name: "docs", fixture: fixtureDocs, wantKeys: []string{"BULK-62", "BULK-47"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := ct.Replay(t, ct.Any(ct.JSON(200, pageBody(t, fixtureIssues(t, tt.fixture, false), "", true))))
			res, err := newPoller(t, f, nil).Poll(t.Context(), connector.State{Cursor: "2024-01-01T00:00:00Z"})
			require.NoError(t, err)
			assert.Empty(t, res.Items)
			keys := []string{}
			for _, failed := range res.Failed {
				keys = append(keys, failed.ID)
				assert.EqualError(t, failed.Err, "issue has no fields.updated, so its versions cannot be told apart")
			}
			assert.Equal(t, tt.wantKeys, keys)
			assert.Equal(t, "2024-01-01T00:00:00Z", res.State.Cursor, "nothing read, so the cursor stays")
		})
	}
}

func TestSearchWindow(t *testing.T) {
	now := time.Date(2024, 11, 13, 21, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		cursor  string
		wantJQL string
	}{
		{name: "first poll has no window", cursor: "",
			wantJQL: "(project = TD) ORDER BY updated ASC"},
		{name: "16m20s ago plus the margin rounds up to 18 minutes", cursor: "2024-11-13T20:43:40Z",
			wantJQL: `(project = TD) AND updated >= "-18m" ORDER BY updated ASC`},
		{name: "whole minutes are not rounded up", cursor: "2024-11-13T20:30:00Z",
			wantJQL: `(project = TD) AND updated >= "-31m" ORDER BY updated ASC`},
		{name: "offset in the cursor counts", cursor: "2024-11-13T15:30:00-05:00",
			wantJQL: `(project = TD) AND updated >= "-31m" ORDER BY updated ASC`},
		{name: "a cursor of right now still looks back a minute", cursor: "2024-11-13T21:00:00Z",
			wantJQL: `(project = TD) AND updated >= "-1m" ORDER BY updated ASC`},
		{name: "a cursor in the future (clock skew) looks back a minute", cursor: "2024-11-13T21:05:00Z",
			wantJQL: `(project = TD) AND updated >= "-1m" ORDER BY updated ASC`},
		{name: "days ago", cursor: "2024-11-10T21:00:00Z",
			wantJQL: `(project = TD) AND updated >= "-4321m" ORDER BY updated ASC`},
		{name: "an unreadable cursor is dropped", cursor: "2024-11-13 20:27",
			wantJQL: "(project = TD) ORDER BY updated ASC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := ct.Replay(t, ct.Any(ct.JSON(200, pageBody(t, []map[string]any{}, "", true))))
			p := newPoller(t, f, nil)
			p.now = func() time.Time { return now }

			res, err := p.Poll(t.Context(), connector.State{Cursor: tt.cursor})
			require.NoError(t, err)

			require.Len(t, seen(f), 1)
			assert.Equal(t, tt.wantJQL, seen(f)[0].Body["jql"])
			assert.Equal(t, tt.cursor, res.State.Cursor, "no issues: the cursor stays as it was")
		})
	}
}

func TestCursorOnlyMovesForward(t *testing.T) {
	issues := fixtureIssues(t, fixtureCloud, true)
	f := ct.Replay(t, ct.Any(ct.JSON(200, pageBody(t, issues, "", true))))
	p := newPoller(t, f, nil)

	res, err := p.Poll(t.Context(), connector.State{Cursor: "2024-11-14T00:00:00Z"})
	require.NoError(t, err)
	assert.Len(t, res.Items, 7, "issues seen again are still items; change detection drops them")
	assert.Equal(t, "2024-11-14T00:00:00Z", res.State.Cursor, "older issues never move the cursor back")
}

func TestPageLimits(t *testing.T) {
	tests := []struct {
		name      string
		maxPages  int
		isLast    bool
		token     func(page int) string
		wantCalls int
	}{
		{name: "stops at max_pages", maxPages: 3, token: func(page int) string { return "token-" + string(rune('a'+page)) }, wantCalls: 3},
		{name: "the same token twice ends the poll", maxPages: 10, token: func(int) string { return "same" }, wantCalls: 2},
		{name: "isLast ends the poll even with a token", maxPages: 10, isLast: true, token: func(int) string { return "more" }, wantCalls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			issues := fixtureIssues(t, fixtureCloud, true)
			page := 0 // the requests of one Poll are sequential
			f := serveSearch(t, func(map[string]any) ct.Response {
				answer := ct.JSON(200, pageBody(t, issues[page:page+1], tt.token(page), tt.isLast))
				page++
				return answer
			})
			res, err := newPoller(t, f, map[string]any{"max_pages": tt.maxPages}).Poll(t.Context(), connector.State{})
			require.NoError(t, err)
			assert.Len(t, seen(f), tt.wantCalls)
			assert.Len(t, res.Items, tt.wantCalls, "one issue per page read")
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
		{
			name:   "410 from the removed search endpoint",
			status: 410, body: string(ct.Load(t, fixtureRemoved).Body),
			wantErr: "jira: upstream answered 410 Gone: The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. " +
				"A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046 " +
				"(Jira removed the endpoint that was called; this connector calls POST /rest/api/3/search/jql, " +
				`so check that config.base_url is the site root, e.g. "https://your-site.atlassian.net", and that no proxy rewrites the path)`,
			wantStatus: 410,
		},
		{
			name:   "400 with errorMessages and errors",
			status: 400,
			body:   `{"errorMessages":["Error in the JQL Query: Expecting a field name."],"errors":{"jql":"bad","fields":"unknown field"}}`,
			wantErr: "jira: upstream answered 400 Bad Request: Error in the JQL Query: Expecting a field name.; " +
				"fields: unknown field; jql: bad",
			wantStatus: 400,
		},
		{
			name:       "401 with no body says where to look",
			status:     401,
			wantErr:    "jira: upstream answered 401 Unauthorized (check config.email and config.api_token; tokens come from https://id.atlassian.com/manage-profile/security/api-tokens)",
			wantStatus: 401,
		},
		{
			name:       "404 points at base_url",
			status:     404,
			body:       `{"errorMessages":[],"errors":{}}`,
			wantErr:    `jira: upstream answered 404 Not Found (check config.base_url: it must be the site root, e.g. "https://your-site.atlassian.net")`,
			wantStatus: 404,
		},
		{
			name:       "an HTML error page that only repeats the status",
			status:     502,
			body:       "<html><body>Bad gateway</body></html>",
			wantErr:    "jira: upstream answered 502 Bad Gateway: an HTML page saying nothing more",
			wantStatus: 502,
		},
		{
			name:    "200 that is not JSON",
			status:  200,
			body:    "<html>login</html>",
			wantErr: `jira: response is not the JSON expected: invalid character '<' looking for beginning of value (starts "<html>login</html>")`,
		},
		{
			name:    "200 without issues",
			status:  200,
			body:    `{"values":[]}`,
			wantErr: `jira: response has no "issues" array (is base_url a Jira Cloud site?)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := ct.Replay(t, ct.Any(ct.JSON(tt.status, []byte(tt.body))))
			res, err := newPoller(t, f, nil).Poll(t.Context(), connector.State{Cursor: "2024-11-13T20:00:00Z"})
			require.Error(t, err)
			assert.Equal(t, connector.Result{}, res, "a failed poll returns nothing, so no cursor moves")
			assert.EqualError(t, err, tt.wantErr)
			assert.NotContains(t, err.Error(), testToken)
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

func TestBadIssues(t *testing.T) {
	good := fixtureIssues(t, fixtureCloud, true)[0]
	tests := []struct {
		name       string
		issue      any
		wantFailed string
		wantErr    string
	}{
		{name: "no key", issue: map[string]any{"id": "1", "fields": map[string]any{"updated": "2024-11-13T20:27:56.526+0000"}},
			wantFailed: "issues[1]", wantErr: "issue has no key"},
		{name: "not an object", issue: "oops", wantFailed: "issues[1]", wantErr: "not a Jira issue"},
		{name: "field of the wrong type keeps the key", issue: map[string]any{"key": "OPS-1", "fields": map[string]any{"summary": 7}},
			wantFailed: "OPS-1", wantErr: "not a Jira issue: json: cannot unmarshal number"},
		{name: "updated that is not a date", issue: map[string]any{"key": "OPS-2", "fields": map[string]any{"updated": "yesterday"}},
			wantFailed: "OPS-2", wantErr: `fields.updated "yesterday" is not a Jira date-time`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := json.Marshal(map[string]any{"issues": []any{good, tt.issue}, "isLast": true})
			require.NoError(t, err)
			f := ct.Replay(t, ct.Any(ct.JSON(200, body)))

			res, err := newPoller(t, f, nil).Poll(t.Context(), connector.State{})
			require.NoError(t, err, "one bad issue never fails the poll")
			require.Len(t, res.Items, 1)
			assert.Equal(t, "TD-3482", res.Items[0].ID)
			require.Len(t, res.Failed, 1)
			assert.Equal(t, tt.wantFailed, res.Failed[0].ID)
			assert.ErrorContains(t, res.Failed[0].Err, tt.wantErr)
		})
	}
}

func TestAssigneeAndPriority(t *testing.T) {
	issue := map[string]any{"key": "OPS-7", "id": "7", "fields": map[string]any{
		"created":  "2025-02-27T16:00:00.000-0500",
		"updated":  "2025-03-01T09:15:00.000-0500",
		"assignee": map[string]any{"displayName": "Ada Lovelace", "accountId": "5b10a"},
		"priority": map[string]any{"name": "High", "id": "2"},
	}}
	f := ct.Replay(t, ct.Any(ct.JSON(200, pageBody(t, []map[string]any{issue}, "", true))))
	res, err := newPoller(t, f, nil).Poll(t.Context(), connector.State{})
	require.NoError(t, err)
	require.Len(t, res.Items, 1)
	assert.Equal(t, "2025-03-01T09:15:00.000-0500", res.Items[0].Version, "updated, not created")
	data := decodeIssue(t, res.Items[0])
	assert.Equal(t, "Ada Lovelace", data["assignee"])
	assert.Equal(t, "2025-02-27T16:00:00-05:00", data["created"])
	assert.Equal(t, "High", data["priority"])
	assert.Equal(t, "2025-03-01T09:15:00-05:00", data["updated"])
	assert.Equal(t, "2025-03-01T14:15:00Z", res.State.Cursor, "the cursor is stored in UTC")
}

func TestCancelAbortsThePoll(t *testing.T) {
	srv := ct.Hang(t, nil)
	err := srv.CancelPoll(t, newPoller(t, srv.Server, nil))
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled)
	assert.True(t, strings.HasPrefix(err.Error(), "jira: "), err.Error())
}

func TestNilHTTPClientFallsBack(t *testing.T) {
	f := ct.Replay(t, ct.Any(ct.JSON(200, pageBody(t, fixtureIssues(t, fixtureCloud, true), "", true))))
	raw := []byte(`{"base_url":"` + f.URL + `","email":"a@example.com","api_token":"t","jql":"project = TD","allow_hosts":["127.0.0.1"]}`)
	c, err := New(raw, connector.Deps{})
	require.NoError(t, err)
	res, err := c.Poll(t.Context(), connector.State{})
	require.NoError(t, err)
	assert.Len(t, res.Items, 7)
	assert.Contains(t, seen(f)[0].Header.Get("User-Agent"), "pollgrid/", "the upstream client names pollgrid")
}

func TestConfig(t *testing.T) {
	const valid = `"base_url":"https://acme.atlassian.net","email":"ops@example.com","api_token":"s3cret-token","jql":"project = OPS"`
	tests := []struct {
		name    string
		raw     string
		wantErr []string // every one must appear in the error
		// for a valid config
		wantBase               string
		wantFields             []string
		wantMaxResults, wantMP int
	}{
		{name: "defaults", raw: `{` + valid + `}`, wantBase: "https://acme.atlassian.net",
			wantFields: DefaultFields, wantMaxResults: 50, wantMP: 10},
		{name: "limits set", raw: `{` + valid + `,"max_results":100,"max_pages":1}`,
			wantBase: "https://acme.atlassian.net", wantFields: DefaultFields, wantMaxResults: 100, wantMP: 1},
		{name: "fields get updated added", raw: `{` + valid + `,"fields":["summary","labels"]}`,
			wantBase: "https://acme.atlassian.net", wantFields: []string{"summary", "labels", "updated"}, wantMaxResults: 50, wantMP: 10},
		{name: "a path prefix is kept", raw: `{"base_url":"http://proxy.example:8080/jira/","email":"a@b","api_token":"t","jql":"x = 1"}`,
			wantBase: "http://proxy.example:8080/jira", wantFields: DefaultFields, wantMaxResults: 50, wantMP: 10},

		{name: "empty config lists every required field", raw: ``, wantErr: []string{
			`config.base_url: required: write an absolute http(s) URL, e.g. "https://your-site.atlassian.net"`,
			"config.email: required",
			`config.api_token: required: write "${JIRA_API_TOKEN}" and set that variable to an API token from https://id.atlassian.com/manage-profile/security/api-tokens`,
			`config.jql: required: a JQL filter such as "project = OPS"`,
		}},
		{name: "missing api_token", raw: `{"base_url":"https://acme.atlassian.net","email":"ops@example.com","jql":"project = OPS"}`,
			wantErr: []string{"config.api_token: required"}},
		{name: "api_token with a trailing newline is not echoed", raw: `{` + strings.Replace(valid, "s3cret-token", `s3cret-token\n`, 1) + `}`,
			wantErr: []string{"config.api_token: contains whitespace or control characters (often a trailing newline in the environment variable, or a \"Bearer \" prefix: write the secret alone)"}},
		{name: "jql with ORDER BY", raw: `{` + strings.Replace(valid, "project = OPS", "project = OPS order  by created", 1) + `}`,
			wantErr: []string{"config.jql: remove the ORDER BY: the connector orders by updated itself"}},
		{name: "base_url relative", raw: `{` + strings.Replace(valid, "https://acme.atlassian.net", "acme.atlassian.net", 1) + `}`,
			wantErr: []string{`config.base_url: "acme.atlassian.net" is not an absolute http(s) URL (write e.g. "https://your-site.atlassian.net")`}},
		{name: "base_url with a password is redacted", raw: `{` + strings.Replace(valid, "https://acme.atlassian.net", "ftp://me:s3cret@acme.example", 1) + `}`,
			wantErr: []string{`config.base_url: "ftp://me:xxxxx@acme.example" is not an absolute http(s) URL`}},
		{name: "base_url without a scheme hides what may be a password", raw: `{` + strings.Replace(valid, "https://acme.atlassian.net", "me:s3cret@acme.example", 1) + `}`,
			wantErr: []string{`config.base_url: "(URL not shown: it contains an @ that may hide a password)" is not an absolute http(s) URL`}},
		{name: "base_url with a query", raw: `{` + strings.Replace(valid, "https://acme.atlassian.net", "https://acme.atlassian.net/?x=1", 1) + `}`,
			wantErr: []string{`config.base_url: "https://acme.atlassian.net/?x=xxxxx" must not carry a query`}},
		{name: "empty field name", raw: `{` + valid + `,"fields":["summary",""]}`,
			wantErr: []string{`config.fields[1]: empty field name`}},
		{name: "max_results out of range", raw: `{` + valid + `,"max_results":101}`,
			wantErr: []string{"config.max_results: 101 is out of range (write a number from 1 to 100; default 50)"}},
		{name: "max_pages out of range", raw: `{` + valid + `,"max_pages":0}`,
			wantErr: []string{"config.max_pages: 0 is out of range (write a number from 1 to 100; default 10)"}},
		{name: "unknown field", raw: `{` + valid + `,"token":"x"}`,
			wantErr: []string{`config.token: unknown field (known: base_url, email, api_token, jql, fields, max_results, max_pages, allow_hosts)`}},
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
			p := c.(*issuePoller)
			assert.Equal(t, tt.wantBase, p.baseURL)
			assert.Equal(t, tt.wantFields, p.fields)
			assert.Equal(t, tt.wantMaxResults, p.maxResults)
			assert.Equal(t, tt.wantMP, p.maxPages)
		})
	}
}
