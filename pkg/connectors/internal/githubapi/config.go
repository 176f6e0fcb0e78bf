package githubapi

import (
	"cmp"
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
// these fields sit next to the type's own in connectors.json; RepoFields
// describes them for the type's Spec.
type RepoConfig struct {
	Owner    string `json:"owner"`
	Repo     string `json:"repo"`
	Token    string `json:"token,omitempty"`
	BaseURL  string `json:"base_url,omitempty"`
	PerPage  *int   `json:"per_page,omitempty"`
	MaxPages *int   `json:"max_pages,omitempty"`
}

// RepoFields are RepoConfig's fields, for the Spec of a type that embeds
// it: max_pages defaults to the type's defaultMaxPages, and maxPagesAbout
// says what happens to the pages past it.
func RepoFields(defaultMaxPages int, maxPagesAbout string) []connector.Field {
	return []connector.Field{
		{Name: "owner", Kind: connector.String, Required: true, Hint: `write the user or organisation, e.g. "nats-io"`,
			Pattern: ownerRegexp, Example: "nats-io",
			Description: "User or organisation: letters, digits, `-` and `_`, at most 100 characters. If you write " +
				"`\"nats-io/nats-server\"` or a github.com URL here, the error tells you how to split it."},
		{Name: "repo", Kind: connector.String, Required: true, Hint: `write the repository name, e.g. "nats-server"`,
			Pattern: repoRegexp, Example: "nats-server",
			Description: "Repository name: letters, digits, `.`, `-` and `_`, at most 100 characters. `.git` at the end " +
				"is refused, and the error gives the name without it."},
		{Name: "token", Kind: connector.String, Secret: true,
			Description: "A GitHub token, sent as `Authorization: Bearer <token>`. Write `\"${GITHUB_TOKEN}\"` so the value " +
				"comes from the environment. Without a token, GitHub allows 60 requests an hour and shows only public " +
				"repositories. With one it allows 5,000. The token must be one string with no spaces (no `Bearer ` " +
				"prefix). Error texts never include it."},
		connector.BaseURL(DefaultBaseURL, "https://ghe.example.com/api/v3",
			"The API root. For GitHub Enterprise Server use `https://HOST/api/v3`. `https://github.com` (the website) is refused."),
		connector.PageSize("per_page", DefaultPerPage, MaxPerPage, "GitHub's `per_page`."),
		connector.MaxPages(defaultMaxPages, MaxMaxPages, maxPagesAbout),
	}
}

// ApplyDefaults fills the fields left out.
func (c *RepoConfig) ApplyDefaults(defaultMaxPages int) {
	c.BaseURL = cmp.Or(c.BaseURL, DefaultBaseURL)
	connector.SetDefault(&c.PerPage, DefaultPerPage)
	connector.SetDefault(&c.MaxPages, defaultMaxPages)
}

// Validate returns every problem of these fields that RepoFields cannot
// tell (a repository path in owner, a clone URL in repo, the website as
// base_url), each naming the field and the fix.
func (c RepoConfig) Validate() []error {
	errs := []error{ValidateOwner(c.Owner), ValidateRepo(c.Repo)}
	if c.BaseURL != "" {
		_, err := ParseBaseURL(c.BaseURL)
		errs = append(errs, err)
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
const (
	ownerRegexp = `^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$`
	repoRegexp  = `^[A-Za-z0-9._-]{1,100}$`
)

var (
	ownerPattern = regexp.MustCompile(ownerRegexp)
	repoPattern  = regexp.MustCompile(repoRegexp)
)

// ValidateOwner checks a config.owner that is set (RepoFields requires it).
func ValidateOwner(owner string) error {
	if strings.TrimSpace(owner) == "" || ownerPattern.MatchString(owner) {
		return nil
	}
	if o, r, ok := splitRepoPath(owner); ok {
		return fmt.Errorf(`config.owner: %q names a repository (write "owner": %q, "repo": %q)`, owner, o, r)
	}
	return fmt.Errorf(`config.owner: %q is not a GitHub user or organisation name (letters, digits, '-' and '_', at most 100; e.g. "nats-io")`, owner)
}

// ValidateRepo checks a config.repo that is set (RepoFields requires it).
func ValidateRepo(repo string) error {
	switch {
	case strings.TrimSpace(repo) == "":
		return nil
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
