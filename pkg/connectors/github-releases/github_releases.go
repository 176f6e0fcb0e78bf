// Package githubreleases polls the releases of one GitHub repository
// (GET /repos/{owner}/{repo}/releases). Each release is one item; its
// version is the release's latest timestamp, so an edited, published or
// re-published release is signalled again.
package githubreleases

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"unicode/utf8"

	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/connectors/internal/githubapi"
)

// TypeName is the connector type in connectors.json.
const TypeName = "github-releases"

const (
	// DefaultMaxPages bounds one poll: GitHub lists the newest releases
	// first, so the first pages hold every change worth signalling.
	DefaultMaxPages = 3
	// MaxBodyRunes caps a release's notes in the item data.
	MaxBodyRunes = 4000
)

var _ connector.Factory = New

// Config is the "config" object of a github-releases connector; spec
// describes its fields.
type Config struct {
	githubapi.RepoConfig
	IncludePrereleases *bool `json:"include_prereleases,omitempty"`
	IncludeDrafts      *bool `json:"include_drafts,omitempty"`
}

var spec = connector.Spec{
	Summary: "The releases of one GitHub repository.",
	Fields: append(githubapi.RepoFields(DefaultMaxPages,
		"GitHub lists the newest releases first, so older ones past this limit are not read."),
		connector.Field{Name: "include_prereleases", Kind: connector.Bool, Default: true,
			Description: "Keep releases marked `prerelease`."},
		connector.Field{Name: "include_drafts", Kind: connector.Bool, Default: false,
			Description: "Keep draft releases. GitHub lists drafts only to tokens with push access."},
	),
}

// Spec describes the config's fields.
func (Config) Spec() connector.Spec { return spec }

// ApplyDefaults fills the fields left out.
func (c *Config) ApplyDefaults() {
	c.RepoConfig.ApplyDefaults(DefaultMaxPages)
	connector.SetDefault(&c.IncludePrereleases, true)
	connector.SetDefault(&c.IncludeDrafts, false)
}

// Validate reports every problem the spec cannot tell. It does no I/O.
func (c Config) Validate() error {
	return errors.Join(c.RepoConfig.Validate()...)
}

// New builds a github-releases connector from its config. It does no I/O.
func New(raw json.RawMessage, deps connector.Deps) (connector.Connector, error) {
	return connector.Build(TypeName, raw, deps, func(cfg Config, deps connector.Deps) (connector.Connector, error) {
		base, _ := githubapi.ParseBaseURL(cfg.BaseURL) // validated
		client := githubapi.NewClient(deps, base, cfg.Token)
		return &releasePoller{
			client:             client,
			repo:               cfg.Owner + "/" + cfg.Repo,
			firstURL:           client.RepoURL(cfg.Owner, cfg.Repo, "releases?per_page="+strconv.Itoa(*cfg.PerPage)),
			maxPages:           *cfg.MaxPages,
			includePrereleases: *cfg.IncludePrereleases,
			includeDrafts:      *cfg.IncludeDrafts,
			logger:             deps.Logger,
		}, nil
	})
}

// releasePoller keeps only its config between polls; State carries the rest.
type releasePoller struct {
	client             *githubapi.Client
	repo               string
	firstURL           string
	maxPages           int
	includePrereleases bool
	includeDrafts      bool
	logger             *slog.Logger
}

// Poll reads the newest max_pages pages of releases. Only the first request
// is conditional; its 304 ends the poll with nothing to do. The cursor is
// not used and is passed through.
func (p *releasePoller) Poll(ctx context.Context, state connector.State) (connector.Result, error) {
	result, walked, err := p.client.Items(ctx, p.firstURL, state, p.maxPages, "releases", p.toItem)
	if err != nil {
		return connector.Result{}, fmt.Errorf("list releases of %s: %w", p.repo, err)
	}
	if walked.NotModified {
		return connector.Result{NotModified: true, State: state}, nil
	}
	if walked.Truncated {
		p.logger.DebugContext(ctx, "github releases: more pages than max_pages; older releases are not read",
			"repo", p.repo, "max_pages", p.maxPages)
	}
	result.State = connector.State{Cursor: state.Cursor, ETag: walked.Validators.ETag, LastModified: walked.Validators.LastModified}
	return result, nil
}

// Release is an item's Data.
type Release struct {
	ID         int64  `json:"id"`
	TagName    string `json:"tag_name"`
	Name       string `json:"name,omitempty"`
	Draft      bool   `json:"draft"`
	Prerelease bool   `json:"prerelease"`
	CreatedAt  string `json:"created_at,omitempty"`
	// PublishedAt is absent for drafts.
	PublishedAt string `json:"published_at,omitempty"`
	// UpdatedAt is absent where GitHub does not send it (older answers).
	UpdatedAt string `json:"updated_at,omitempty"`
	HTMLURL   string `json:"html_url,omitempty"`
	// Author is the author's login.
	Author string `json:"author,omitempty"`
	// Body is the release notes, cut to MaxBodyRunes characters;
	// BodyTruncated says it was cut.
	Body          string  `json:"body,omitempty"`
	BodyTruncated bool    `json:"body_truncated,omitempty"`
	Assets        []Asset `json:"assets"`
}

// Asset is one file attached to a release.
type Asset struct {
	Name               string `json:"name"`
	Size               int64  `json:"size"`
	DownloadCount      int64  `json:"download_count"`
	BrowserDownloadURL string `json:"browser_download_url,omitempty"`
}

type apiRelease struct {
	ID          json.Number `json:"id"`
	TagName     string      `json:"tag_name"`
	Name        *string     `json:"name"`
	Draft       bool        `json:"draft"`
	Prerelease  bool        `json:"prerelease"`
	CreatedAt   *string     `json:"created_at"`
	PublishedAt *string     `json:"published_at"`
	UpdatedAt   *string     `json:"updated_at"`
	HTMLURL     string      `json:"html_url"`
	Body        *string     `json:"body"`
	Author      *struct {
		Login string `json:"login"`
	} `json:"author"`
	Assets []struct {
		Name               string `json:"name"`
		Size               int64  `json:"size"`
		DownloadCount      int64  `json:"download_count"`
		BrowserDownloadURL string `json:"browser_download_url"`
	} `json:"assets"`
}

// toItem returns keep=false for a release the config leaves out, and an
// ItemError with an empty ID when the release has no readable id.
func (p *releasePoller) toItem(raw json.RawMessage) (connector.Item, bool, *connector.ItemError) {
	var r apiRelease
	if err := json.Unmarshal(raw, &r); err != nil {
		return connector.Item{}, false, &connector.ItemError{ID: idOf(raw), Err: fmt.Errorf("not a GitHub release: %w", err)}
	}
	id, err := strconv.ParseInt(r.ID.String(), 10, 64)
	if err != nil || id <= 0 {
		return connector.Item{}, false, &connector.ItemError{Err: errors.New("release has no numeric id")}
	}
	itemID := strconv.FormatInt(id, 10)
	if (r.Draft && !p.includeDrafts) || (r.Prerelease && !p.includePrereleases) {
		return connector.Item{}, false, nil
	}
	// updated_at moves on every edit; releases from before GitHub sent it
	// (the 2013 API) fall back to published_at, and drafts to created_at.
	version := cmp.Or(deref(r.UpdatedAt), deref(r.PublishedAt), deref(r.CreatedAt))
	if version == "" {
		return connector.Item{}, false, &connector.ItemError{ID: itemID,
			Err: errors.New("release has none of updated_at, published_at and created_at, so its versions cannot be told apart")}
	}
	release := Release{
		ID:          id,
		TagName:     r.TagName,
		Name:        deref(r.Name),
		Draft:       r.Draft,
		Prerelease:  r.Prerelease,
		CreatedAt:   deref(r.CreatedAt),
		PublishedAt: deref(r.PublishedAt),
		UpdatedAt:   deref(r.UpdatedAt),
		HTMLURL:     r.HTMLURL,
		Assets:      make([]Asset, 0, len(r.Assets)),
	}
	if r.Author != nil {
		release.Author = r.Author.Login
	}
	release.Body, release.BodyTruncated = truncate(deref(r.Body), MaxBodyRunes)
	for _, a := range r.Assets {
		release.Assets = append(release.Assets, Asset(a))
	}
	data, err := json.Marshal(release)
	if err != nil {
		return connector.Item{}, false, &connector.ItemError{ID: itemID, Err: fmt.Errorf("encode release: %w", err)}
	}
	return connector.Item{ID: itemID, Version: version, Data: data}, true, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func truncate(s string, maxRunes int) (string, bool) {
	if utf8.RuneCountInString(s) <= maxRunes {
		return s, false
	}
	return string([]rune(s)[:maxRunes]), true
}

// idOf names a release that did not decode, when its id can still be read.
func idOf(raw json.RawMessage) string {
	var ids struct {
		ID any `json:"id"`
	}
	_ = json.Unmarshal(raw, &ids)
	if n, ok := ids.ID.(float64); ok && n > 0 && n == float64(int64(n)) {
		return strconv.FormatInt(int64(n), 10)
	}
	return ""
}
