package githubapi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
	ct "github.com/pollgrid/pollgrid/pkg/connectortest"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

func TestErrorText(t *testing.T) {
	validation := `{"message":"Validation Failed","errors":[{"resource":"Label","code":"invalid","field":"color"}],"documentation_url":"https://docs.github.com/rest/reference/issues#create-a-label"}`
	rateLimit := `{"message":"API rate limit exceeded for 192.0.2.1. (But here's the good news: Authenticated requests get a higher rate limit. Check out the documentation for more details.)","documentation_url":"https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"}`
	tests := []struct {
		name    string
		status  int
		header  map[string]string
		body    string
		token   bool
		want    string
		wantDoc string
	}{
		{name: "422 from error_422_validation.json", status: 422, body: validation,
			want:    "github: 422 Unprocessable Entity: Validation Failed",
			wantDoc: "https://docs.github.com/rest/reference/issues#create-a-label"},
		{name: "403 primary rate limit, no token", status: 403,
			header: map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1658208999"}, body: rateLimit,
			want: "github: 403 Forbidden: API rate limit exceeded for 192.0.2.1. (But here's the good news: Authenticated requests get a higher rate limit. Check out the documentation for more details.) " +
				"(rate limit exhausted until 2022-07-19T05:36:39Z; without config.token GitHub allows 60 requests an hour, with one 5,000)"},
		{name: "429 primary rate limit with a token", status: 429, token: true,
			header: map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1658208999"}, body: `{"message":"API rate limit exceeded for user ID 1."}`,
			want: "github: 429 Too Many Requests: API rate limit exceeded for user ID 1. (rate limit exhausted until 2022-07-19T05:36:39Z)"},
		{name: "rate limit without a reset", status: 403, token: true,
			header: map[string]string{"X-RateLimit-Remaining": "0"}, body: `{"message":"API rate limit exceeded"}`,
			want: "github: 403 Forbidden: API rate limit exceeded (rate limit exhausted; GitHub sent no X-RateLimit-Reset)"},
		{name: "secondary rate limit with Retry-After", status: 403, token: true,
			header: map[string]string{"X-RateLimit-Remaining": "4000", "Retry-After": "60"},
			body:   `{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}`,
			want:   "github: 403 Forbidden: You have exceeded a secondary rate limit. Please wait a few minutes before you try again. (secondary rate limit; GitHub asks to retry after 1m0s)"},
		{name: "secondary rate limit without Retry-After", status: 403, token: true,
			body: `{"message":"You have exceeded a secondary rate limit."}`,
			want: "github: 403 Forbidden: You have exceeded a secondary rate limit. (secondary rate limit; GitHub asks to wait at least a minute)"},
		{name: "other 403", status: 403, token: true, body: `{"message":"Resource not accessible by personal access token"}`,
			want: "github: 403 Forbidden: Resource not accessible by personal access token"},
		{name: "401", status: 401, token: true, body: `{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest"}`,
			want: "github: 401 Unauthorized: Bad credentials (GitHub refused config.token: check that it is valid and not expired)"},
		{name: "404 without a token", status: 404, body: `{"message":"Not Found"}`,
			want: "github: 404 Not Found (check config.owner and config.repo; a private repository needs config.token)"},
		{name: "404 with a token", status: 404, token: true, body: `{"message":"Not Found"}`,
			want: "github: 404 Not Found (check config.owner and config.repo, and that config.token can read the repository)"},
		{name: "not JSON", status: 502, body: `<html><body>Bad gateway</body></html>`,
			want: "github: 502 Bad Gateway"},
		{name: "message on many lines is one line", status: 500, body: `{"message":"a\n  b\tc"}`,
			want: "github: 500 Internal Server Error: a b c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := ct.Serve(t, func(w http.ResponseWriter, _ *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			})
			token := ""
			if tt.token {
				token = "ghp_SECRET"
			}
			c := newTestClient(t, srv, token)
			_, err := c.Walk(t.Context(), srv.URL+"/repos/o/r/issues", connector.State{}, 1, failVisit(t))
			require.Error(t, err)
			assert.Equal(t, tt.want, err.Error())
			assert.NotContains(t, err.Error(), "SECRET")

			var ghErr *Error
			require.ErrorAs(t, err, &ghErr)
			assert.Equal(t, tt.status, ghErr.StatusCode)
			if tt.wantDoc != "" {
				assert.Equal(t, tt.wantDoc, ghErr.DocumentationURL)
			}
			var status *upstream.StatusError
			require.ErrorAs(t, err, &status, "the generic status error is in the chain")
			assert.Equal(t, tt.status, status.StatusCode)
		})
	}
}

func newTestClient(t *testing.T, srv *ct.Server, token string) *Client {
	t.Helper()
	base, err := ParseBaseURL(srv.URL)
	require.NoError(t, err)
	return NewClient(connector.Deps{HTTP: srv.Client()}, base, token)
}

func failVisit(t *testing.T) func(Page) error {
	return func(p Page) error {
		t.Errorf("page %d visited, want none", p.Number)
		return nil
	}
}

func TestWalk(t *testing.T) {
	t.Run("headers on every page, conditional on the first only", func(t *testing.T) {
		var srv *ct.Server
		srv = ct.Serve(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("page") == "" {
				w.Header().Set("ETag", `"new"`)
				w.Header().Set("Link", fmt.Sprintf(`<%s/repositories/1/items?page=2>; rel="next"`, srv.URL))
			}
			_, _ = w.Write([]byte(`[]`))
		})
		c := newTestClient(t, srv, "ghp_SECRET")
		var pages []int
		walked, err := c.Walk(t.Context(), srv.URL+"/repos/o/r/items?per_page=2", connector.State{ETag: `"old"`, LastModified: "Thu, 22 Aug 2013 02:09:11 GMT", Cursor: "x"}, 5,
			func(p Page) error { pages = append(pages, p.Number); return nil })
		require.NoError(t, err)
		assert.Equal(t, []int{1, 2}, pages)
		assert.Equal(t, Walked{Validators: connector.State{ETag: `"new"`}, Pages: 2}, walked)

		reqs := srv.Requests()
		require.Len(t, reqs, 2)
		for _, r := range reqs {
			assert.Equal(t, "application/vnd.github+json", r.Header.Get("Accept"))
			assert.Equal(t, "2022-11-28", r.Header.Get("X-GitHub-Api-Version"))
			assert.Equal(t, "Bearer ghp_SECRET", r.Header.Get("Authorization"))
		}
		assert.Equal(t, `"old"`, reqs[0].Header.Get("If-None-Match"))
		assert.Equal(t, "Thu, 22 Aug 2013 02:09:11 GMT", reqs[0].Header.Get("If-Modified-Since"))
		assert.Empty(t, reqs[1].Header.Get("If-None-Match"))
		assert.Empty(t, reqs[1].Header.Get("If-Modified-Since"))
		assert.Equal(t, "/repositories/1/items", reqs[1].URL.Path)
		assert.Equal(t, "page=2", reqs[1].URL.RawQuery, "the link is followed as given, nothing added")
	})

	t.Run("no token, no Authorization", func(t *testing.T) {
		srv := ct.Serve(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`[]`)) })
		_, err := newTestClient(t, srv, "").Walk(t.Context(), srv.URL+"/x", connector.State{}, 1, func(Page) error { return nil })
		require.NoError(t, err)
		require.Len(t, srv.Requests(), 1)
		assert.NotContains(t, srv.Requests()[0].Header, "Authorization")
	})

	t.Run("a relative next link is resolved against the page", func(t *testing.T) {
		srv := ct.Serve(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("page") == "" {
				w.Header().Set("Link", `</api/v3/repositories/1/items?page=2>; rel="next"`)
			}
			_, _ = w.Write([]byte(`[]`))
		})
		walked, err := newTestClient(t, srv, "").Walk(t.Context(), srv.URL+"/api/v3/repos/o/r/items", connector.State{}, 5, func(Page) error { return nil })
		require.NoError(t, err)
		assert.Equal(t, 2, walked.Pages)
		assert.Equal(t, "/api/v3/repositories/1/items", srv.Requests()[1].URL.Path)
	})

	t.Run("a next link back to a page already read ends the walk", func(t *testing.T) {
		var srv *ct.Server
		srv = ct.Serve(t, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Link", fmt.Sprintf(`<%s/x>; rel="next"`, srv.URL))
			_, _ = w.Write([]byte(`[]`))
		})
		walked, err := newTestClient(t, srv, "").Walk(t.Context(), srv.URL+"/x", connector.State{}, 5, func(Page) error { return nil })
		require.NoError(t, err)
		assert.Equal(t, Walked{Pages: 1}, walked)
		assert.Len(t, srv.Requests(), 1)
	})

	t.Run("max pages with a next link left is Truncated", func(t *testing.T) {
		var srv *ct.Server
		n := 0 // requests of one walk are sequential
		srv = ct.Serve(t, func(w http.ResponseWriter, _ *http.Request) {
			n++
			w.Header().Set("Link", fmt.Sprintf(`<%s/x?page=%d>; rel="next"`, srv.URL, n+1))
			_, _ = w.Write([]byte(`[]`))
		})
		walked, err := newTestClient(t, srv, "").Walk(t.Context(), srv.URL+"/x", connector.State{}, 3, func(Page) error { return nil })
		require.NoError(t, err)
		assert.Equal(t, Walked{Pages: 3, Truncated: true}, walked)
		assert.Len(t, srv.Requests(), 3)
	})

	t.Run("a 304 to an unconditional request is an error", func(t *testing.T) {
		srv := ct.Serve(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNotModified) })
		_, err := newTestClient(t, srv, "").Walk(t.Context(), srv.URL+"/x", connector.State{}, 3, failVisit(t))
		require.EqualError(t, err, "github: upstream answered 304 Not Modified to a request that was not conditional")
	})

	t.Run("a visit error names the page", func(t *testing.T) {
		var srv *ct.Server
		srv = ct.Serve(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("page") == "" {
				w.Header().Set("Link", fmt.Sprintf(`<%s/x?page=2>; rel="next"`, srv.URL))
			}
			_, _ = w.Write([]byte(`[]`))
		})
		_, err := newTestClient(t, srv, "").Walk(t.Context(), srv.URL+"/x", connector.State{}, 3, func(p Page) error {
			if p.Number == 2 {
				return errors.New("bad page")
			}
			return nil
		})
		require.EqualError(t, err, "page 2: bad page")
	})
}

func TestRepoConfig(t *testing.T) {
	ptr := func(n int) *int { return &n }
	tests := []struct {
		name    string
		cfg     RepoConfig
		wantErr []string
	}{
		{name: "minimal", cfg: RepoConfig{Owner: "nats-io", Repo: "nats-server"}},
		{name: "nothing: the spec requires owner and repo, Validate checks what is written", cfg: RepoConfig{}},
		{name: "dots, underscores, enterprise", cfg: RepoConfig{Owner: "octo_corp", Repo: "my.repo_v2", BaseURL: "https://ghe.example/api/v3/", Token: "ghp_abc", PerPage: ptr(100), MaxPages: ptr(100)}},
		{name: "owner/repo in owner", cfg: RepoConfig{Owner: "nats-io/nats-server", Repo: "x"},
			wantErr: []string{`config.owner: "nats-io/nats-server" names a repository (write "owner": "nats-io", "repo": "nats-server")`}},
		{name: "URL in owner", cfg: RepoConfig{Owner: "https://github.com/nats-io/nats-server.git", Repo: "x"},
			wantErr: []string{`config.owner: "https://github.com/nats-io/nats-server.git" names a repository (write "owner": "nats-io", "repo": "nats-server")`}},
		{name: "owner with a space", cfg: RepoConfig{Owner: "nats io", Repo: "x"},
			wantErr: []string{`config.owner: "nats io" is not a GitHub user or organisation name`}},
		{name: "owner starting with a hyphen", cfg: RepoConfig{Owner: "-x", Repo: "x"},
			wantErr: []string{`config.owner: "-x" is not a GitHub user or organisation name`}},
		{name: "repo with .git", cfg: RepoConfig{Owner: "o", Repo: "nats-server.git"},
			wantErr: []string{`config.repo: "nats-server.git" ends in ".git" (write "nats-server": the name, not the clone URL)`}},
		{name: "repo as a path", cfg: RepoConfig{Owner: "o", Repo: "nats-io/nats-server"},
			wantErr: []string{`config.repo: "nats-io/nats-server" is a path (write only the name, "nats-server", and the owner in config.owner)`}},
		{name: "repo dot-dot", cfg: RepoConfig{Owner: "o", Repo: ".."},
			wantErr: []string{`config.repo: ".." is not a repository name`}},
		{name: "repo with a query", cfg: RepoConfig{Owner: "o", Repo: "r?x=1"},
			wantErr: []string{`config.repo: "r?x=1" is not a GitHub repository name`}},
		{name: "repo too long", cfg: RepoConfig{Owner: "o", Repo: strings.Repeat("r", 101)},
			wantErr: []string{`is not a GitHub repository name`}},
		{name: "base_url the website", cfg: RepoConfig{Owner: "o", Repo: "r", BaseURL: "https://github.com"},
			wantErr: []string{`config.base_url: "https://github.com" is the website, not the API (write "https://api.github.com")`}},
		{name: "base_url relative", cfg: RepoConfig{Owner: "o", Repo: "r", BaseURL: "api.github.com"},
			wantErr: []string{`config.base_url: "api.github.com" is not an absolute http(s) URL (write e.g. "https://api.github.com"); for GitHub Enterprise Server write "https://HOST/api/v3"`}},
		{name: "base_url with query, password redacted", cfg: RepoConfig{Owner: "o", Repo: "r", BaseURL: "https://me:SECRET@ghe.example/api/v3?x=1"},
			wantErr: []string{`config.base_url: "https://me:xxxxx@ghe.example/api/v3?x=xxxxx" must not carry a query`}},
		{name: "base_url unparsable", cfg: RepoConfig{Owner: "o", Repo: "r", BaseURL: "http://[::1"},
			wantErr: []string{`config.base_url: cannot be parsed as a URL`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := errors.Join(tt.cfg.Validate()...)
			if len(tt.wantErr) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Len(t, tt.cfg.Validate(), len(tt.wantErr), "one error per problem: %v", err)
			for _, want := range tt.wantErr {
				assert.Contains(t, err.Error(), want)
			}
			assert.NotContains(t, err.Error(), "SECRET")
		})
	}
}

func TestRepoURL(t *testing.T) {
	for _, tt := range []struct{ base, want string }{
		{"https://api.github.com", "https://api.github.com/repos/o/r/releases?per_page=30"},
		{"https://ghe.example/api/v3/", "https://ghe.example/api/v3/repos/o/r/releases?per_page=30"},
	} {
		t.Run(tt.base, func(t *testing.T) {
			base, err := ParseBaseURL(tt.base)
			require.NoError(t, err)
			c := NewClient(connector.Deps{}, base, "")
			assert.Equal(t, tt.want, c.RepoURL("o", "r", "releases?per_page=30"))
		})
	}
}
