// Package githubissues polls the issues of one GitHub repository
// (GET /repos/{owner}/{repo}/issues), oldest update first, from a cursor: the
// latest updated_at seen so far, passed back to GitHub as "since". Each issue
// is one item, versioned by its updated_at.
package githubissues

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/connectors/internal/githubapi"
)

// TypeName is the connector type in connectors.json.
const TypeName = "github-issues"

const (
	// DefaultMaxPages bounds one poll; the cursor resumes where it stopped.
	DefaultMaxPages = 10
	// DefaultState lists open and closed issues, so closing one is a change.
	DefaultState = "all"
)

var _ connector.Factory = New

// Config is the "config" object of a github-issues connector; spec
// describes its fields.
type Config struct {
	githubapi.RepoConfig
	State               string   `json:"state,omitempty"`
	Labels              []string `json:"labels,omitempty"`
	IncludePullRequests bool     `json:"include_pull_requests,omitempty"`
	Since               string   `json:"since,omitempty"`
}

var spec = connector.Spec{
	Summary: "The issues of one GitHub repository, oldest update first, from a cursor.",
	Fields: append(githubapi.RepoFields(DefaultMaxPages,
		"The next poll continues from the cursor, so a large backlog is read over several polls."),
		connector.Field{Name: "state", Kind: connector.String, Enum: []string{"open", "closed", "all"}, Default: DefaultState,
			Description: "Which issues GitHub lists. With `all`, closing an issue is a change. With `open`, a closed issue simply stops appearing."},
		connector.Field{Name: "labels", Kind: connector.List, Example: []string{"bug", "ui"},
			Description: "A list of label names. It keeps issues that carry **every** label, and is sent as GitHub's comma list " +
				"`labels=a,b`. A name containing a comma is refused, because GitHub would read it as two labels."},
		connector.Field{Name: "include_pull_requests", Kind: connector.Bool, Default: false,
			Description: "GitHub lists pull requests as issues. By default, items with a `pull_request` key are **skipped**, not failed."},
		connector.Field{Name: "since", Kind: connector.String, Example: "2025-01-01T00:00:00Z",
			Description: "RFC 3339 time where the **first** poll starts, e.g. `\"2025-01-01T00:00:00Z\"`. It is sent in UTC. " +
				"Without it, the first poll reads every issue (up to `max_pages`). Once there is a cursor, the cursor wins."},
	),
}

// Spec describes the config's fields.
func (Config) Spec() connector.Spec { return spec }

// ApplyDefaults fills the fields left out.
func (c *Config) ApplyDefaults() {
	c.RepoConfig.ApplyDefaults(DefaultMaxPages)
	c.State = cmp.Or(c.State, DefaultState)
}

// Validate reports every problem the spec cannot tell. It does no I/O.
func (c Config) Validate() error {
	errs := c.RepoConfig.Validate()
	for i, label := range c.Labels {
		switch {
		case strings.TrimSpace(label) == "":
			errs = append(errs, fmt.Errorf("config.labels[%d]: empty (write a label name, or leave the label out)", i))
		case strings.Contains(label, ","):
			errs = append(errs, fmt.Errorf(`config.labels[%d]: %q contains a comma, which GitHub reads as two labels (write one label per list entry: ["bug", "ui"])`, i, label))
		}
	}
	if c.Since != "" {
		if _, err := time.Parse(time.RFC3339, c.Since); err != nil {
			errs = append(errs, fmt.Errorf(`config.since: %q is not an RFC 3339 time (write e.g. "2024-01-01T00:00:00Z")`, c.Since))
		}
	}
	return errors.Join(errs...)
}

// New builds a github-issues connector from its config. It does no I/O.
func New(raw json.RawMessage, deps connector.Deps) (connector.Connector, error) {
	return connector.Build(TypeName, raw, deps, func(cfg Config, deps connector.Deps) (connector.Connector, error) {
		base, _ := githubapi.ParseBaseURL(cfg.BaseURL) // validated
		client := githubapi.NewClient(deps, base, cfg.Token)
		// Written by hand, not with url.Values: the order is GitHub's own, and
		// the commas between labels stay commas.
		query := "state=" + cfg.State + "&sort=updated&direction=asc&per_page=" + strconv.Itoa(*cfg.PerPage)
		if len(cfg.Labels) > 0 {
			escaped := make([]string, len(cfg.Labels))
			for i, l := range cfg.Labels {
				escaped[i] = url.QueryEscape(l)
			}
			query += "&labels=" + strings.Join(escaped, ",")
		}
		var since time.Time
		if cfg.Since != "" {
			since, _ = time.Parse(time.RFC3339, cfg.Since) // validated
		}
		return &issuePoller{
			client:              client,
			repo:                cfg.Owner + "/" + cfg.Repo,
			listURL:             client.RepoURL(cfg.Owner, cfg.Repo, "issues?"+query),
			since:               since,
			maxPages:            *cfg.MaxPages,
			includePullRequests: cfg.IncludePullRequests,
			logger:              deps.Logger,
		}, nil
	})
}

// issuePoller keeps only its config between polls; State carries the rest.
type issuePoller struct {
	client              *githubapi.Client
	repo                string
	listURL             string // without since
	since               time.Time
	maxPages            int
	includePullRequests bool
	logger              *slog.Logger
}

// formatCursor writes a cursor in UTC, so it never holds a '+' (a space in
// a query string).
func formatCursor(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// Poll reads the issues updated at or after the cursor, oldest update first,
// for at most max_pages pages. The first request is conditional; a 304 moves
// nothing.
//
// The cursor becomes the latest updated_at among the issues GitHub returned
// in this poll (skipped pull requests and failed items included, so they
// cannot pin the cursor), never the clock: if the poll stopped at max_pages,
// the next one resumes from there. GitHub's since is inclusive, so the issues
// at the cursor come again; their version is unchanged, so they publish
// nothing.
func (p *issuePoller) Poll(ctx context.Context, state connector.State) (connector.Result, error) {
	since, cursor := p.since, ""
	if state.Cursor != "" {
		t, err := time.Parse(time.RFC3339, state.Cursor)
		if err != nil {
			// Reading everything again is safe (unchanged versions publish
			// nothing); failing every poll on a bad stored value is not.
			p.logger.WarnContext(ctx, "github issues: stored cursor is not an RFC 3339 time; starting from config.since",
				"repo", p.repo, "cursor", state.Cursor)
		} else {
			since, cursor = t, state.Cursor
		}
	}
	firstURL := p.listURL
	if !since.IsZero() {
		firstURL += "&since=" + formatCursor(since)
	}

	var latest time.Time
	result, walked, err := p.client.Items(ctx, firstURL, state, p.maxPages, "issues", func(raw json.RawMessage) (connector.Item, bool, *connector.ItemError) {
		item, updated, keep, itemErr := p.toItem(raw)
		if updated.After(latest) {
			latest = updated
		}
		return item, keep, itemErr
	})
	if err != nil {
		return connector.Result{}, fmt.Errorf("list issues of %s: %w", p.repo, err)
	}
	if walked.NotModified {
		return connector.Result{NotModified: true, State: state}, nil
	}
	if walked.Truncated {
		p.logger.InfoContext(ctx, "github issues: more pages than max_pages; the next poll continues from the cursor",
			"repo", p.repo, "max_pages", p.maxPages)
	}
	if latest.After(since) {
		cursor = formatCursor(latest)
	}
	result.State = connector.State{Cursor: cursor, ETag: walked.Validators.ETag, LastModified: walked.Validators.LastModified}
	return result, nil
}

// Issue is an item's Data.
type Issue struct {
	Number  int64  `json:"number"`
	Title   string `json:"title"`
	State   string `json:"state"`
	HTMLURL string `json:"html_url,omitempty"`
	// User is the author's login.
	User string `json:"user,omitempty"`
	// Labels are label names; Assignees are logins. Never null.
	Labels    []string `json:"labels"`
	Assignees []string `json:"assignees"`
	Comments  int64    `json:"comments"`
	CreatedAt string   `json:"created_at,omitempty"`
	UpdatedAt string   `json:"updated_at"`
	// ClosedAt is absent while the issue is open.
	ClosedAt      string `json:"closed_at,omitempty"`
	IsPullRequest bool   `json:"is_pull_request"`
}

type login struct {
	Login string `json:"login"`
}

type apiIssue struct {
	Number      json.Number       `json:"number"`
	Title       string            `json:"title"`
	State       string            `json:"state"`
	HTMLURL     string            `json:"html_url"`
	User        *login            `json:"user"`
	Labels      []json.RawMessage `json:"labels"`
	Assignees   []*login          `json:"assignees"`
	Comments    int64             `json:"comments"`
	CreatedAt   *string           `json:"created_at"`
	UpdatedAt   *string           `json:"updated_at"`
	ClosedAt    *string           `json:"closed_at"`
	PullRequest json.RawMessage   `json:"pull_request"`
}

// toItem returns the issue's updated_at whenever it can be read (also for a
// skipped or failed issue: it still moves the cursor), keep=false for a
// pull request the config leaves out, and an ItemError with an empty ID when
// the issue has no readable number.
func (p *issuePoller) toItem(raw json.RawMessage) (connector.Item, time.Time, bool, *connector.ItemError) {
	var is apiIssue
	if err := json.Unmarshal(raw, &is); err != nil {
		id, updated := idOf(raw)
		return connector.Item{}, updated, false, &connector.ItemError{ID: id, Err: fmt.Errorf("not a GitHub issue: %w", err)}
	}
	var updated time.Time
	if is.UpdatedAt != nil {
		updated, _ = time.Parse(time.RFC3339, *is.UpdatedAt)
	}
	number, err := strconv.ParseInt(is.Number.String(), 10, 64)
	if err != nil || number <= 0 {
		return connector.Item{}, updated, false, &connector.ItemError{Err: errors.New("issue has no number")}
	}
	id := strconv.FormatInt(number, 10)
	isPR := len(is.PullRequest) > 0 && string(is.PullRequest) != "null"
	if isPR && !p.includePullRequests {
		return connector.Item{}, updated, false, nil
	}
	if updated.IsZero() {
		return connector.Item{}, updated, false, &connector.ItemError{ID: id,
			Err: errors.New("issue has no RFC 3339 updated_at, so its versions cannot be told apart")}
	}
	issue := Issue{
		Number:        number,
		Title:         is.Title,
		State:         is.State,
		HTMLURL:       is.HTMLURL,
		Labels:        make([]string, 0, len(is.Labels)),
		Assignees:     make([]string, 0, len(is.Assignees)),
		Comments:      is.Comments,
		CreatedAt:     deref(is.CreatedAt),
		UpdatedAt:     *is.UpdatedAt,
		ClosedAt:      deref(is.ClosedAt),
		IsPullRequest: isPR,
	}
	if is.User != nil {
		issue.User = is.User.Login
	}
	for _, l := range is.Labels {
		if name := labelName(l); name != "" {
			issue.Labels = append(issue.Labels, name)
		}
	}
	for _, a := range is.Assignees {
		if a != nil && a.Login != "" {
			issue.Assignees = append(issue.Assignees, a.Login)
		}
	}
	data, err := json.Marshal(issue)
	if err != nil {
		return connector.Item{}, updated, false, &connector.ItemError{ID: id, Err: fmt.Errorf("encode issue: %w", err)}
	}
	return connector.Item{ID: id, Version: *is.UpdatedAt, Data: data}, updated, true, nil
}

// labelName reads a label object's name; GitHub's schema also allows a
// bare string.
func labelName(raw json.RawMessage) string {
	var name string
	if json.Unmarshal(raw, &name) == nil {
		return name
	}
	var obj struct {
		Name string `json:"name"`
	}
	_ = json.Unmarshal(raw, &obj)
	return obj.Name
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// idOf reads the number and updated_at of an issue that did not decode.
func idOf(raw json.RawMessage) (string, time.Time) {
	var ids struct {
		Number    any `json:"number"`
		UpdatedAt any `json:"updated_at"`
	}
	_ = json.Unmarshal(raw, &ids)
	var id string
	if n, ok := ids.Number.(float64); ok && n > 0 && n == float64(int64(n)) {
		id = strconv.FormatInt(int64(n), 10)
	}
	var updated time.Time
	if s, ok := ids.UpdatedAt.(string); ok {
		updated, _ = time.Parse(time.RFC3339, s)
	}
	return id, updated
}
