// Package githubapi is the GitHub REST plumbing the github-* connectors
// share: the request headers GitHub asks for, Link-header pagination that
// never leaves base_url's host (the token must not travel), and error texts
// made from GitHub's own {"message": ...} bodies, with the rate limit worded.
// The waiting itself is the platform's job: the upstream client records
// X-RateLimit-Reset and Retry-After for the worker.
package githubapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

const (
	// MediaType is the Accept header GitHub recommends for the REST API.
	MediaType = "application/vnd.github+json"
	// APIVersion pins the REST API version, so GitHub does not change the
	// answers under us.
	APIVersion = "2022-11-28"
)

// Client sends GitHub REST requests for one connector.
type Client struct {
	http   *http.Client
	base   *url.URL
	header http.Header
	token  string
	logger *slog.Logger
}

// NewClient returns a client for base (from ParseBaseURL) with the
// connector's deps (from connector.Build). An empty token sends no
// Authorization header. It does no I/O.
func NewClient(deps connector.Deps, base *url.URL, token string) *Client {
	b := *base
	header := http.Header{"Accept": {MediaType}, "X-Github-Api-Version": {APIVersion}}
	if token != "" {
		header.Set("Authorization", "Bearer "+token)
	}
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Client{http: upstream.Client(deps), base: &b, header: header, token: token, logger: logger}
}

// RepoURL is base_url + "/repos/{owner}/{repo}/{rest}". owner and repo must
// have passed ValidateOwner / ValidateRepo, so they need no escaping.
func (c *Client) RepoURL(owner, repo, rest string) string {
	return c.base.String() + "/repos/" + owner + "/" + repo + "/" + rest
}

// Page is one 2xx answer of a paginated list.
type Page struct {
	// Number counts from 1 within one Walk.
	Number int
	URL    string
	Header http.Header
	Body   []byte
}

// Walked says how a Walk ended.
type Walked struct {
	// NotModified is true when the first, conditional request got 304.
	// No page was visited.
	NotModified bool
	// Validators are the first page's ETag and Last-Modified (empty when
	// absent), for the next poll's conditional request.
	Validators connector.State
	// Pages is how many pages were visited.
	Pages int
	// Truncated is true when max_pages stopped the walk while GitHub still
	// had a rel="next" page.
	Truncated bool
}

// Walk GETs firstURL and follows each rel="next" Link exactly as GitHub gives
// it (GitHub moves to /repositories/{id}/... URLs, which must not be rebuilt)
// until a page has none or maxPages pages were read. Only the first request
// is conditional (validators' ETag / Last-Modified). A next link to another
// scheme or host than base_url fails the walk before it is requested. visit
// is called once per page, in order; its error ends the walk.
func (c *Client) Walk(ctx context.Context, firstURL string, validators connector.State, maxPages int, visit func(Page) error) (Walked, error) {
	var walked Walked
	pages := upstream.NewPages(maxPages, firstURL)
	pageURL := firstURL
	for n := 1; ; n++ {
		request := upstream.Request{URL: pageURL, Header: c.header}
		if n == 1 {
			request.Validators = connector.State{ETag: validators.ETag, LastModified: validators.LastModified}
		}
		answer, err := upstream.Fetch(ctx, c.http, request)
		if err != nil {
			return Walked{}, pageError(n, c.wrap(err))
		}
		if answer.NotModified {
			return Walked{NotModified: true}, nil
		}
		if n == 1 {
			walked.Validators = answer.State(connector.State{})
		}
		if err := visit(Page{Number: n, URL: pageURL, Header: answer.Header, Body: answer.Body}); err != nil {
			return Walked{}, pageError(n, err)
		}
		walked.Pages = n
		link := upstream.NextLink(answer.Header)
		if link == "" {
			return walked, nil
		}
		next, err := upstream.NextPage(answer.URL, link, c.base, "config.base_url")
		if err != nil {
			return Walked{}, pageError(n, fmt.Errorf(`github: Link rel="next": %w`, err))
		}
		switch err := pages.Next(next.String()); {
		case errors.Is(err, upstream.ErrMaxPages):
			walked.Truncated = true
			return walked, nil
		case err != nil:
			// A link back to a page already read would loop forever.
			c.logger.WarnContext(ctx, `github Link rel="next" points to a page already read; stopping`, "page", n)
			return walked, nil
		}
		pageURL = next.String()
	}
}

func pageError(n int, err error) error {
	if n == 1 {
		return err
	}
	return fmt.Errorf("page %d: %w", n, err)
}

// wrap words a failed request: GitHub's own error for a status, "github: "
// before anything else.
func (c *Client) wrap(err error) error {
	if status, ok := errors.AsType[*upstream.StatusError](err); ok {
		return newError(status, c.token != "")
	}
	return fmt.Errorf("github: %w", err)
}
