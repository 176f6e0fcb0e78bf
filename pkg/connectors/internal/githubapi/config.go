package githubapi

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

const (
	// DefaultBaseURL is the public GitHub API. GitHub Enterprise Server is
	// https://HOST/api/v3.
	DefaultBaseURL = "https://api.github.com"
	// DefaultPerPage is GitHub's own default page size.
	DefaultPerPage = 30
	// MaxPerPage is the largest page GitHub serves.
	MaxPerPage = 100
	// MaxMaxPages keeps a misconfigured connector from spending the rate limit.
	MaxMaxPages = 100
)

// RepoConfig is the part of a github-* connector's config that names the
// repository and how to reach it. Connectors embed it in their Config, so
// these fields sit next to the type's own in connectors.json.
type RepoConfig struct {
	// Owner is the user or organisation, e.g. "nats-io". Required.
	Owner string `json:"owner"`
	// Repo is the repository name, e.g. "nats-server". Required.
	Repo string `json:"repo"`
	// Token is a GitHub token, sent as "Authorization: Bearer <token>".
	// Optional (public repositories, 60 requests an hour); write
	// "${GITHUB_TOKEN}" so it comes from the environment. Never logged.
	Token string `json:"token,omitempty"`
	// BaseURL is the API root; default https://api.github.com, GitHub
	// Enterprise Server https://HOST/api/v3. Pagination never leaves its
	// scheme and host.
	BaseURL string `json:"base_url,omitempty"`
	// PerPage is GitHub's per_page, 1..100; default 30.
	PerPage *int `json:"per_page,omitempty"`
	// MaxPages is the most pages one poll reads, 1..100; the default is
	// the connector type's.
	MaxPages *int `json:"max_pages,omitempty"`
}

// ApplyDefaults fills the fields left out.
func (c *RepoConfig) ApplyDefaults(defaultMaxPages int) {
	c.BaseURL = cmp.Or(c.BaseURL, DefaultBaseURL)
	connector.SetDefault(&c.PerPage, DefaultPerPage)
	connector.SetDefault(&c.MaxPages, defaultMaxPages)
}

// Validate returns every problem of these fields, each naming the field and
// the fix. The token's value never appears in a message.
func (c RepoConfig) Validate(defaultMaxPages int) []error {
	errs := []error{ValidateOwner(c.Owner), ValidateRepo(c.Repo), ValidateToken(c.Token)}
	if c.BaseURL != "" {
		_, err := ParseBaseURL(c.BaseURL)
		errs = append(errs, err)
	}
	if c.PerPage != nil && (*c.PerPage < 1 || *c.PerPage > MaxPerPage) {
		errs = append(errs, fmt.Errorf("config.per_page: %d is out of range (write a number from 1 to %d; default %d)",
			*c.PerPage, MaxPerPage, DefaultPerPage))
	}
	if c.MaxPages != nil && (*c.MaxPages < 1 || *c.MaxPages > MaxMaxPages) {
		errs = append(errs, fmt.Errorf("config.max_pages: %d is out of range (write a number from 1 to %d; default %d)",
			*c.MaxPages, MaxMaxPages, defaultMaxPages))
	}
	var out []error
	for _, err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// GitHub logins are letters, digits and '-' (Enterprise managed users add
// "_shortcode"); repository names add '.'. Nothing else can reach a URL path.
var (
	ownerPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$`)
	repoPattern  = regexp.MustCompile(`^[A-Za-z0-9._-]{1,100}$`)
)

// ValidateOwner checks config.owner.
func ValidateOwner(owner string) error {
	switch {
	case owner == "":
		return errors.New(`config.owner: required (write the user or organisation, e.g. "nats-io")`)
	case ownerPattern.MatchString(owner):
		return nil
	}
	if o, r, ok := splitRepoPath(owner); ok {
		return fmt.Errorf(`config.owner: %q names a repository (write "owner": %q, "repo": %q)`, owner, o, r)
	}
	return fmt.Errorf(`config.owner: %q is not a GitHub user or organisation name (letters, digits, '-' and '_', at most 100; e.g. "nats-io")`, owner)
}

// ValidateRepo checks config.repo.
func ValidateRepo(repo string) error {
	switch {
	case repo == "":
		return errors.New(`config.repo: required (write the repository name, e.g. "nats-server")`)
	case repo == "." || repo == "..":
		return fmt.Errorf(`config.repo: %q is not a repository name (e.g. "nats-server")`, repo)
	case strings.HasSuffix(repo, ".git") && repoPattern.MatchString(repo):
		return fmt.Errorf(`config.repo: %q ends in ".git" (write %q: the name, not the clone URL)`, repo, strings.TrimSuffix(repo, ".git"))
	case repoPattern.MatchString(repo):
		return nil
	}
	if _, r, ok := splitRepoPath(repo); ok {
		return fmt.Errorf(`config.repo: %q is a path (write only the name, %q, and the owner in config.owner)`, repo, r)
	}
	return fmt.Errorf(`config.repo: %q is not a GitHub repository name (letters, digits, '.', '-' and '_', at most 100; e.g. "nats-server")`, repo)
}

// splitRepoPath reads "owner/repo" or a github.com URL of a repository.
func splitRepoPath(s string) (owner, repo string, ok bool) {
	s = strings.TrimSpace(s)
	if u, err := url.Parse(s); err == nil && u.Host != "" {
		s = u.Path
	}
	parts := strings.Split(strings.Trim(s, "/"), "/")
	if len(parts) < 2 {
		return "", "", false
	}
	owner, repo = parts[0], strings.TrimSuffix(parts[1], ".git")
	return owner, repo, ownerPattern.MatchString(owner) && repoPattern.MatchString(repo)
}

// ValidateToken checks config.token without ever quoting it.
func ValidateToken(token string) error {
	if token == "" {
		return nil
	}
	if strings.ContainsFunc(token, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return errors.New(`config.token: must be the token alone, without spaces, line breaks or a "Bearer " prefix (write "${GITHUB_TOKEN}" and export the token)`)
	}
	return nil
}

// ParseBaseURL checks config.base_url as every connector does
// (upstream.ParseBaseURL) and refuses the website's host, which answers
// API paths with HTML.
func ParseBaseURL(raw string) (*url.URL, error) {
	u, err := upstream.ParseBaseURL("config.base_url", raw, DefaultBaseURL)
	if err != nil {
		return nil, fmt.Errorf(`%w; for GitHub Enterprise Server write "https://HOST/api/v3"`, err)
	}
	if strings.EqualFold(u.Hostname(), "github.com") || strings.EqualFold(u.Hostname(), "www.github.com") {
		return nil, fmt.Errorf(`config.base_url: %q is the website, not the API (write %q)`, upstream.ShowURL(u), DefaultBaseURL)
	}
	return u, nil
}
