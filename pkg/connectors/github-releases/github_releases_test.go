package githubreleases

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
	"github.com/pollgrid/pollgrid/pkg/egress"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

const (
	testToken = "ghp_TESTSECRET0001"
	owner     = "api-playground"
	repo      = "hello-world"
	listPath  = "/repos/" + owner + "/" + repo + "/releases"
	// page2Path is where list_releases_2013_page1's rel="next" points. The
	// recording redacted the repository name into a placeholder with angle
	// brackets; the link is followed as given all the same.
	page2Path = "/repos/api-playground/<GITHUB_TEST_REPOSITORY>/releases"

	fixture2013  = "list_releases_2013_page1.json"
	fixtureByTag = "get_release_by_tag.json"
	fixture422   = "error_422_validation.json"
	fixture304   = "conditional_get_304_not_modified.headers.json"
)

// modernList is get_release_by_tag (GET /releases/tags/v1.0.0, one release
// object) served as a one-element list: no list-releases page with today's
// schema was recorded. It keeps its own headers (no Link: the last page).
func modernList(t testing.TB) ct.Response {
	rec := ct.Load(t, fixtureByTag)
	return rec.WithBody([]byte("[" + string(rec.Body) + "]"))
}

// twoPages answers the first request with the 2013 list (4 releases, Link
// next) and its next link with the modern release.
func twoPages(t *testing.T) *ct.Server {
	srv := ct.Replay(t, ct.GET(listPath, ct.Load(t, fixture2013)), ct.GET(page2Path, modernList(t)))
	srv.RewriteHeaders(githubapi.DefaultBaseURL)
	return srv
}

func newPoller(t *testing.T, srv *ct.Server, config map[string]any) connector.Connector {
	t.Helper()
	cfg := map[string]any{"owner": owner, "repo": repo, "base_url": srv.URL, "token": testToken}
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
		name         string
		config       map[string]any
		wantIDs      []string
		wantVersions []string
		wantRequests int
	}{
		{
			name: "defaults leave drafts out",
			// 43567 has no updated_at (2013 schema): published_at. 72286832
			// (2022) has none either in the recording: published_at.
			wantIDs:      []string{"43567", "72286832"},
			wantVersions: []string{"2013-09-12T16:15:53Z", "2022-07-19T04:40:21Z"},
			wantRequests: 2,
		},
		{
			name:    "drafts included: unpublished, so created_at",
			config:  map[string]any{"include_drafts": true},
			wantIDs: []string{"44344", "44343", "44339", "43567", "72286832"},
			wantVersions: []string{"2013-06-25T16:34:20Z", "2013-06-25T16:34:20Z", "2013-06-25T16:34:20Z",
				"2013-09-12T16:15:53Z", "2022-07-19T04:40:21Z"},
			wantRequests: 2,
		},
		{
			name:         "max_pages 1 stops with the next link unread",
			config:       map[string]any{"max_pages": 1},
			wantIDs:      []string{"43567"},
			wantVersions: []string{"2013-09-12T16:15:53Z"},
			wantRequests: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := twoPages(t)
			res, err := newPoller(t, srv, tt.config).Poll(t.Context(), connector.State{Cursor: "untouched"})
			require.NoError(t, err)

			assert.False(t, res.NotModified)
			assert.Empty(t, res.Failed)
			assert.Equal(t, tt.wantIDs, ct.ItemIDs(res.Items))
			assert.Equal(t, tt.wantVersions, ct.ItemVersions(res.Items))
			assert.Equal(t, connector.State{
				Cursor:       "untouched",
				ETag:         `"681924f39aa021a9ff1309bd8cbe026e"`, // page 1's, not page 2's
				LastModified: "Fri, 13 Sep 2013 14:49:57 GMT",
			}, res.State)

			reqs := srv.Requests()
			require.Len(t, reqs, tt.wantRequests)
			assert.Equal(t, listPath, reqs[0].URL.Path)
			assert.Equal(t, "per_page=30", reqs[0].URL.RawQuery)
			if tt.wantRequests > 1 {
				assert.Equal(t, page2Path, reqs[1].URL.Path, "the Link URL, not one rebuilt from owner/repo")
				assert.Equal(t, "page=2", reqs[1].URL.RawQuery, "as given: no per_page added")
			}
			for _, r := range reqs {
				assert.Equal(t, "Bearer "+testToken, r.Header.Get("Authorization"))
				assert.Equal(t, "application/vnd.github+json", r.Header.Get("Accept"))
				assert.Equal(t, "2022-11-28", r.Header.Get("X-GitHub-Api-Version"))
				assert.Empty(t, r.Header.Get("If-None-Match"), "no validators in state")
			}
		})
	}
}

func TestReleaseData(t *testing.T) {
	srv := twoPages(t)
	res, err := newPoller(t, srv, map[string]any{"include_drafts": true}).Poll(t.Context(), connector.State{})
	require.NoError(t, err)
	require.Len(t, res.Items, 5)

	t.Run("modern release (get_release_by_tag)", func(t *testing.T) {
		assert.JSONEq(t, `{
			"id": 72286832,
			"tag_name": "v1.0.0",
			"name": "Version 1.0.0",
			"draft": false,
			"prerelease": false,
			"created_at": "2022-07-19T04:40:17Z",
			"published_at": "2022-07-19T04:40:21Z",
			"html_url": "https://github.com/octokit-fixture-org/tmp-scenario-release-assets-20220719044014639-1reww/releases/tag/v1.0.0",
			"author": "octokit-fixture-user-a",
			"body": "Initial release",
			"assets": []
		}`, string(res.Items[4].Data))
	})
	t.Run("2013 draft: no author, null body and published_at left out", func(t *testing.T) {
		assert.JSONEq(t, `{
			"id": 44344,
			"tag_name": "untagged-a748ca05216e3dcb4e53",
			"name": "Test Get Release",
			"draft": true,
			"prerelease": false,
			"created_at": "2013-06-25T16:34:20Z",
			"html_url": "https://github.com/api-playground/<GITHUB_TEST_REPOSITORY>/releases/untagged-a748ca05216e3dcb4e53",
			"assets": []
		}`, string(res.Items[0].Data))
	})
}

// release returns the modern recorded release as a map, to alter.
func release(t *testing.T) map[string]any {
	var r map[string]any
	require.NoError(t, json.Unmarshal(ct.Load(t, fixtureByTag).Body, &r))
	return r
}

func serveList(t *testing.T, releases ...any) *ct.Server {
	body, err := json.Marshal(releases)
	require.NoError(t, err)
	return ct.Replay(t, ct.Any(modernList(t).WithBody(body)))
}

func TestReleaseRules(t *testing.T) {
	long := strings.Repeat("é", MaxBodyRunes+10)
	tests := []struct {
		name    string
		config  map[string]any
		alter   func(r map[string]any)
		wantIDs []string
		check   func(t *testing.T, item connector.Item)
	}{
		{
			name:  "updated_at wins when GitHub sends it",
			alter: func(r map[string]any) { r["updated_at"] = "2024-03-01T10:00:00Z" },
			check: func(t *testing.T, item connector.Item) {
				assert.Equal(t, "2024-03-01T10:00:00Z", item.Version)
				assert.Contains(t, string(item.Data), `"updated_at":"2024-03-01T10:00:00Z"`)
			},
			wantIDs: []string{"72286832"},
		},
		{
			name:  "body is capped at 4000 characters",
			alter: func(r map[string]any) { r["body"] = long },
			check: func(t *testing.T, item connector.Item) {
				var got Release
				require.NoError(t, json.Unmarshal(item.Data, &got))
				assert.Equal(t, long[:2*MaxBodyRunes], got.Body, "cut on a character, not a byte")
				assert.True(t, got.BodyTruncated)
			},
			wantIDs: []string{"72286832"},
		},
		{
			name: "assets",
			alter: func(r map[string]any) {
				r["assets"] = []any{map[string]any{"id": 1, "name": "nats-server-v1.0.0-linux-amd64.zip", "size": 4785301,
					"download_count": 42, "browser_download_url": "https://github.com/o/r/releases/download/v1.0.0/x.zip", "label": ""}}
			},
			check: func(t *testing.T, item connector.Item) {
				var got Release
				require.NoError(t, json.Unmarshal(item.Data, &got))
				assert.Equal(t, []Asset{{Name: "nats-server-v1.0.0-linux-amd64.zip", Size: 4785301, DownloadCount: 42,
					BrowserDownloadURL: "https://github.com/o/r/releases/download/v1.0.0/x.zip"}}, got.Assets)
			},
			wantIDs: []string{"72286832"},
		},
		{
			name:    "prereleases are kept by default",
			alter:   func(r map[string]any) { r["prerelease"] = true },
			wantIDs: []string{"72286832"},
		},
		{
			name:    "include_prereleases false leaves them out",
			config:  map[string]any{"include_prereleases": false},
			alter:   func(r map[string]any) { r["prerelease"] = true },
			wantIDs: []string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := release(t)
			tt.alter(r)
			srv := serveList(t, r)
			res, err := newPoller(t, srv, tt.config).Poll(t.Context(), connector.State{})
			require.NoError(t, err)
			assert.Empty(t, res.Failed)
			assert.Equal(t, tt.wantIDs, ct.ItemIDs(res.Items))
			if tt.check != nil && len(res.Items) == 1 {
				tt.check(t, res.Items[0])
			}
		})
	}
}

func TestBadReleasesFailAlone(t *testing.T) {
	noID := release(t)
	delete(noID, "id")
	wrongType := release(t)
	wrongType["id"], wrongType["draft"] = 5, "no"
	noTimes := release(t)
	noTimes["id"], noTimes["created_at"], noTimes["published_at"] = 6, nil, nil
	older, newer := release(t), release(t)
	older["id"], newer["id"] = 7, 7
	newer["updated_at"] = "2030-01-01T00:00:00Z"
	good := release(t)

	srv := serveList(t, noID, wrongType, noTimes, "not an object", older, newer, good)
	res, err := newPoller(t, srv, nil).Poll(t.Context(), connector.State{})
	require.NoError(t, err, "bad releases never fail the poll")

	assert.Equal(t, []string{"7", "72286832"}, ct.ItemIDs(res.Items))
	assert.Equal(t, "2030-01-01T00:00:00Z", res.Items[0].Version, "a release seen twice keeps its newer version")
	require.Len(t, res.Failed, 4)
	for i, want := range []struct{ id, err string }{
		{"releases[0]", "release has no numeric id"},
		{"5", "not a GitHub release: json: cannot unmarshal string"},
		{"6", "release has none of updated_at, published_at and created_at"},
		{"releases[3]", "not a GitHub release"},
	} {
		assert.Equal(t, want.id, res.Failed[i].ID)
		assert.ErrorContains(t, res.Failed[i].Err, want.err)
	}
}

func TestNotModified(t *testing.T) {
	rec304 := ct.Load(t, fixture304)
	// The validators the recorded request sent.
	state := connector.State{Cursor: "kept", ETag: `"8600bedcb7fed1d8065e1693e05529ce"`, LastModified: "Thu, 22 Aug 2013 02:09:11 GMT"}
	page := modernList(t)
	srv := ct.Serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") == rec304.Header.Get("etag") {
			rec304.ServeHTTP(w, r)
			return
		}
		page.ServeHTTP(w, r)
	})
	c := newPoller(t, srv, nil)

	res, err := c.Poll(t.Context(), state)
	require.NoError(t, err)
	assert.True(t, res.NotModified)
	assert.Equal(t, state, res.State)
	assert.Empty(t, res.Items)
	reqs := srv.Requests()
	require.Len(t, reqs, 1)
	assert.Equal(t, state.ETag, reqs[0].Header.Get("If-None-Match"))
	assert.Equal(t, state.LastModified, reqs[0].Header.Get("If-Modified-Since"))

	res, err = c.Poll(t.Context(), connector.State{ETag: `"stale"`})
	require.NoError(t, err)
	assert.False(t, res.NotModified)
	assert.Equal(t, `"d30ee48d5771b88c6ebc18a9f272a995a69615a9581e39f618a57a97a5c0fe64"`, res.State.ETag)
	assert.Len(t, res.Items, 1)
}

func TestErrors(t *testing.T) {
	rec422 := ct.Load(t, fixture422)
	// No rate-limited answer was recorded: this one is the 422's headers
	// with the limit at 0, and GitHub's documented message.
	rateLimited := rec422.WithHeader("X-RateLimit-Remaining", "0").WithHeader("X-RateLimit-Used", "5000").
		WithBody([]byte(`{"message":"API rate limit exceeded for user ID 31898046.","documentation_url":"https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"}`))
	rateLimited.Status = http.StatusForbidden
	rateLimited429 := rateLimited
	rateLimited429.Status = http.StatusTooManyRequests

	tests := []struct {
		name    string
		rec     ct.Response
		noToken bool
		want    string
	}{
		{name: "422 error_422_validation", rec: rec422,
			want: "list releases of api-playground/hello-world: github: 422 Unprocessable Entity: Validation Failed"},
		{name: "403 rate limit exhausted", rec: rateLimited,
			want: "list releases of api-playground/hello-world: github: 403 Forbidden: API rate limit exceeded for user ID 31898046. (rate limit exhausted until 2022-07-19T05:36:39Z)"},
		{name: "429 rate limit exhausted, no token", rec: rateLimited429, noToken: true,
			want: "list releases of api-playground/hello-world: github: 429 Too Many Requests: API rate limit exceeded for user ID 31898046. " +
				"(rate limit exhausted until 2022-07-19T05:36:39Z; without config.token GitHub allows 60 requests an hour, with one 5,000)"},
		{name: "200 that is not a list", rec: modernList(t).WithBody([]byte(`{"message":"oops"}`)),
			want: "list releases of api-playground/hello-world: github: response is not a list of releases: response is not the JSON expected: json: cannot unmarshal object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := ct.Replay(t, ct.Any(tt.rec))
			config := map[string]any{}
			if tt.noToken {
				config["token"] = nil
			}
			res, err := newPoller(t, srv, config).Poll(t.Context(), connector.State{Cursor: "c"})
			require.Error(t, err)
			assert.Equal(t, connector.Result{}, res, "a failed poll returns no state")
			assert.True(t, strings.HasPrefix(err.Error(), tt.want), "got  %s\nwant %s", err, tt.want)
			assert.NotContains(t, err.Error(), testToken)
			if !tt.noToken {
				assert.Equal(t, "Bearer "+testToken, srv.Requests()[0].Header.Get("Authorization"),
					"the token went out as a header, and stays out of the error")
			}
		})
	}

	t.Run("the platform client records when to come back", func(t *testing.T) {
		srv := ct.Replay(t, ct.Any(rateLimited))
		raw, err := json.Marshal(map[string]any{"owner": owner, "repo": repo, "base_url": srv.URL})
		require.NoError(t, err)
		c, err := New(raw, connector.Deps{HTTP: upstream.NewClient(upstream.Options{Allow: egress.Loopback()})})
		require.NoError(t, err)
		ctx, obs := upstream.Observe(t.Context())
		_, err = c.Poll(ctx, connector.State{})
		var ghErr *githubapi.Error
		require.ErrorAs(t, err, &ghErr)
		assert.True(t, ghErr.RateLimited)
		notBefore, _ := obs.NotBefore()
		assert.Equal(t, time.Unix(1658208999, 0).UTC(), notBefore.UTC(), "the error's reset time is the one the worker waits for")
	})

	t.Run("an error on page 2 names the page", func(t *testing.T) {
		srv := ct.Replay(t,
			ct.Route{Method: "*", Path: page2Path, Responses: []ct.Response{rec422}},
			ct.Any(ct.Load(t, fixture2013)))
		srv.RewriteHeaders(githubapi.DefaultBaseURL)
		_, err := newPoller(t, srv, nil).Poll(t.Context(), connector.State{})
		require.EqualError(t, err, "list releases of api-playground/hello-world: page 2: github: 422 Unprocessable Entity: Validation Failed")
	})
}

func TestForeignNextLinkIsRefused(t *testing.T) {
	foreign := ct.Serve(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`[]`)) })
	// Same scheme, another host:port: only the host check stops this.
	page1 := ct.Load(t, fixture2013).WithHeader("Link", fmt.Sprintf(`<%s/repositories/1/releases?page=2>; rel="next"`, foreign.URL))
	srv := ct.Replay(t, ct.Any(page1))

	res, err := newPoller(t, srv, nil).Poll(t.Context(), connector.State{})
	require.Error(t, err)
	assert.Empty(t, res.Items, "a refused page fails the whole poll")
	assert.Equal(t, fmt.Sprintf(`list releases of api-playground/hello-world: github: Link rel="next": next page %q leaves %s; refusing to follow it (set config.base_url to the host the upstream links to)`,
		foreign.URL+"/repositories/1/releases?page=xxxxx", srv.URL), err.Error())
	assert.NotContains(t, err.Error(), testToken)
	assert.Len(t, srv.Requests(), 1)
	assert.Empty(t, foreign.Requests(), "the foreign host never sees the token")
}

func TestCancelAbortsThePoll(t *testing.T) {
	srv := ct.Hang(t, nil)
	err := srv.CancelPoll(t, newPoller(t, srv.Server, nil))
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled)
	assert.True(t, strings.HasPrefix(err.Error(), "list releases of api-playground/hello-world: github: "), err.Error())
}

func TestNilHTTPUsesTheUpstreamClient(t *testing.T) {
	srv := ct.Replay(t, ct.Any(modernList(t)))
	raw, err := json.Marshal(map[string]any{"owner": owner, "repo": repo, "base_url": srv.URL, "allow_hosts": []string{"127.0.0.1"}})
	require.NoError(t, err)
	c, err := New(raw, connector.Deps{})
	require.NoError(t, err)
	res, err := c.Poll(t.Context(), connector.State{})
	require.NoError(t, err)
	assert.Len(t, res.Items, 1)
	assert.True(t, strings.HasPrefix(srv.Requests()[0].Header.Get("User-Agent"), "pollgrid/"))
	assert.NotContains(t, srv.Requests()[0].Header, "Authorization", "no token, no header")
}

func TestConfig(t *testing.T) {
	or := `"owner":"nats-io","repo":"nats-server"`
	tests := []struct {
		name    string
		raw     string
		wantErr []string
		// for a valid config
		wantURL                string
		wantMax                int
		wantPrerelease, wantDr bool
	}{
		{name: "defaults", raw: `{` + or + `,"token":"ghp_x"}`,
			wantURL: "https://api.github.com/repos/nats-io/nats-server/releases?per_page=30", wantMax: 3, wantPrerelease: true},
		{name: "everything set, Enterprise", raw: `{` + or + `,"base_url":"https://ghe.example/api/v3/","per_page":100,"max_pages":10,"include_prereleases":false,"include_drafts":true}`,
			wantURL: "https://ghe.example/api/v3/repos/nats-io/nats-server/releases?per_page=100", wantMax: 10, wantDr: true},
		{name: "empty config lists every problem", raw: ``,
			wantErr: []string{"config.owner: required", "config.repo: required"}},
		{name: "several problems at once", raw: `{"owner":"nats-io/nats-server","repo":"x.git","token":"Bearer ghp_TESTSECRET0001","per_page":101,"max_pages":0,"base_url":"https://github.com"}`,
			wantErr: []string{"config.owner:", "config.repo:", "config.token:", "config.per_page: 101 is out of range (write a number from 1 to 100; default 30)",
				"config.max_pages: 0 is out of range (write a number from 1 to 100; default 3)", "config.base_url:"}},
		{name: "unknown field", raw: `{` + or + `,"include_draft":true}`,
			wantErr: []string{`config.include_draft: unknown field (did you mean "include_drafts"?)`}},
		{name: "wrong type", raw: `{` + or + `,"include_drafts":"yes"}`,
			wantErr: []string{"config.include_drafts: must be true or false, not a string"}},
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
			p, ok := c.(*releasePoller)
			require.True(t, ok)
			assert.Equal(t, tt.wantURL, p.firstURL)
			assert.Equal(t, tt.wantMax, p.maxPages)
			assert.Equal(t, tt.wantPrerelease, p.includePrereleases)
			assert.Equal(t, tt.wantDr, p.includeDrafts)
		})
	}
}
