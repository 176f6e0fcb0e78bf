// Package githubapi is the GitHub REST plumbing the github-* connectors
// share: the request headers GitHub asks for, Link-header pagination that
// never leaves base_url's host (the token must not travel), and error texts
// made from GitHub's own {"message": ...} bodies, with the rate limit worded.
// The waiting itself is the platform's job: the upstream client records
// X-RateLimit-Reset and Retry-After for the worker.
package githubapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

const (
	// MediaType is the Accept header GitHub recommends for the REST API.
	MediaType = "application/vnd.github+json"
	// APIVersion pins the REST API version, so GitHub does not change the
	// answers under us.
	APIVersion = "2022-11-28"
	// maxErrorBodyBytes caps the read of a non-2xx body: we only want its message.
	maxErrorBodyBytes = 64 << 10
)

// Client sends GitHub REST requests for one connector.
type Client struct {
	http   *http.Client
	base   *url.URL
	token  string
	logger *slog.Logger
}

// NewClient returns a client for base (from ParseBaseURL). A nil httpClient
// means the platform's upstream client; an empty token sends no
// Authorization header. It does no I/O.
func NewClient(httpClient *http.Client, base *url.URL, token string, logger *slog.Logger) *Client {
	if httpClient == nil {
		httpClient = upstream.NewClient(upstream.Options{})
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	b := *base
	return &Client{http: httpClient, base: &b, token: token, logger: logger}
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
	seen := map[string]bool{}
	pageURL := firstURL
	for n := 1; ; n++ {
		conditional := connector.State{}
		if n == 1 {
			conditional = connector.State{ETag: validators.ETag, LastModified: validators.LastModified}
		}
		page, notModified, err := c.get(ctx, pageURL, conditional)
		if err != nil {
			return Walked{}, pageError(n, err)
		}
		if notModified {
			return Walked{NotModified: true}, nil
		}
		page.Number = n
		if n == 1 {
			walked.Validators = connector.State{
				ETag:         page.Header.Get("ETag"),
				LastModified: page.Header.Get("Last-Modified"),
			}
		}
		seen[pageURL] = true
		if err := visit(page); err != nil {
			return Walked{}, pageError(n, err)
		}
		walked.Pages = n

		next, err := c.next(pageURL, page.Header)
		if err != nil {
			return Walked{}, pageError(n, err)
		}
		switch {
		case next == "":
			return walked, nil
		case seen[next]:
			// A link back to a page already read would loop forever.
			c.logger.WarnContext(ctx, `github Link rel="next" points to a page already read; stopping`, "page", n)
			return walked, nil
		case n >= maxPages:
			walked.Truncated = true
			return walked, nil
		}
		pageURL = next
	}
}

func pageError(n int, err error) error {
	if n == 1 {
		return err
	}
	return fmt.Errorf("page %d: %w", n, err)
}

// next returns the absolute URL of the rel="next" link, "" when there is
// none, or an error when it leaves base_url's scheme and host.
func (c *Client) next(pageURL string, h http.Header) (string, error) {
	raw, ok := nextLink(h.Values("Link"))
	if !ok {
		return "", nil
	}
	ref, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf(`github: Link rel="next" %q is not a URL`, raw)
	}
	if !ref.IsAbs() {
		// GitHub sends absolute URLs; a proxy may not.
		current, err := url.Parse(pageURL)
		if err != nil {
			return "", fmt.Errorf("github: page URL: %w", err)
		}
		ref = current.ResolveReference(ref)
	}
	if !strings.EqualFold(ref.Scheme, c.base.Scheme) || !strings.EqualFold(ref.Host, c.base.Host) {
		return "", fmt.Errorf(`github: Link rel="next" %q leaves %s://%s; refusing to follow it (set config.base_url to the host GitHub links to)`,
			ref.Redacted(), c.base.Scheme, c.base.Host)
	}
	return ref.String(), nil
}

func (c *Client) get(ctx context.Context, pageURL string, validators connector.State) (Page, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pageURL, nil)
	if err != nil {
		return Page{}, false, fmt.Errorf("github: build request: %w", err)
	}
	req.Header.Set("Accept", MediaType)
	req.Header.Set("X-GitHub-Api-Version", APIVersion)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	upstream.Conditional(req, validators)
	resp, err := c.http.Do(req)
	if err != nil {
		return Page{}, false, fmt.Errorf("github: %w", err)
	}
	defer resp.Body.Close()

	if resp.StatusCode == http.StatusNotModified {
		if validators.ETag == "" && validators.LastModified == "" {
			return Page{}, false, errors.New("github: 304 Not Modified to a request that was not conditional")
		}
		return Page{}, true, nil
	}
	if resp.StatusCode/100 != 2 {
		err := c.statusError(resp)
		if ctx.Err() != nil {
			return Page{}, false, fmt.Errorf("github: %w", ctx.Err())
		}
		return Page{}, false, err
	}
	body, err := upstream.ReadBody(resp)
	if err != nil {
		if ctx.Err() != nil {
			return Page{}, false, fmt.Errorf("github: %w", ctx.Err())
		}
		return Page{}, false, fmt.Errorf("github: %w", err)
	}
	return Page{URL: pageURL, Header: resp.Header, Body: body}, false, nil
}

// statusError reads (a capped part of) a non-2xx body and words it.
func (c *Client) statusError(resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBodyBytes))
	resp.Body = io.NopCloser(bytes.NewReader(raw))
	var status *upstream.StatusError
	errors.As(upstream.CheckStatus(resp), &status)
	return newError(resp, raw, status, c.token != "")
}
