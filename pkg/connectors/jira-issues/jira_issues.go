// Package jiraissues polls Jira Cloud for the issues of a JQL filter that
// changed since the last poll. Each issue is one item; its "updated" time is
// its version, so every edit of an issue publishes it again.
//
// It is the worked example of docs/adding-a-connector.md: a config with
// defaults and a Validate that names every problem, a New that does no I/O,
// and a Poll that pages through one search and turns each result into an item.
package jiraissues

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

// TypeName is the connector type in connectors.json.
const TypeName = "jira-issues"

const (
	// searchPath is Jira Cloud's enhanced search. The old /rest/api/3/search
	// was removed in 2025 and now answers 410 Gone.
	searchPath = "/rest/api/3/search/jql"

	// DefaultMaxResults is the page size asked of Jira; Jira allows up to 100
	// when fields are requested.
	DefaultMaxResults = 50
	maxMaxResults     = 100
	// DefaultMaxPages bounds one poll; maxMaxPages keeps a misconfigured
	// connector from hammering Jira.
	DefaultMaxPages = 10
	maxMaxPages     = 100

	// cursorMargin widens each search by a minute before the cursor. Enhanced
	// search is eventually consistent: an issue edited just before the last
	// poll may have been indexed just after it. Issues seen twice cost
	// nothing, because an unchanged version publishes nothing.
	cursorMargin = time.Minute

	// jiraTimeLayout is how Jira writes date-times: 2024-11-13T20:27:56.526+0000.
	// Go accepts the milliseconds without naming them in the layout.
	jiraTimeLayout = "2006-01-02T15:04:05-0700"

	exampleBaseURL = "https://your-site.atlassian.net"
	tokenPageURL   = "https://id.atlassian.com/manage-profile/security/api-tokens"
)

// DefaultFields are the issue fields requested when the config names none.
var DefaultFields = []string{"summary", "status", "updated", "created", "assignee", "issuetype", "priority"}

var _ connector.Factory = New

// Config is the "config" object of a jira-issues connector; spec describes
// its fields.
type Config struct {
	BaseURL    string   `json:"base_url"`
	Email      string   `json:"email"`
	APIToken   string   `json:"api_token"`
	JQL        string   `json:"jql"`
	Fields     []string `json:"fields,omitempty"`
	MaxResults *int     `json:"max_results,omitempty"`
	MaxPages   *int     `json:"max_pages,omitempty"`
}

var spec = connector.Spec{
	Summary: "The Jira Cloud issues of a JQL filter that changed since the last poll.",
	Fields: []connector.Field{
		// Required: there is no public Jira to default to.
		connector.BaseURL("", exampleBaseURL, "Your Jira Cloud site root, e.g. `"+exampleBaseURL+"`."),
		{Name: "email", Kind: connector.String, Required: true, Hint: "the email of the Atlassian account that owns the API token",
			Example: "you@example.com", Description: "The Atlassian account that owns the API token."},
		{Name: "api_token", Kind: connector.String, Required: true, Secret: true,
			Hint: `write "${JIRA_API_TOKEN}" and set that variable to an API token from ` + tokenPageURL,
			Description: "An API token of that account (" + tokenPageURL + "). Write `\"${JIRA_API_TOKEN}\"`. " +
				"`email:api_token` is sent as HTTP Basic auth. The token needs only read access to the projects in the filter."},
		{Name: "jql", Kind: connector.String, Required: true, Example: "project = OPS",
			Hint: `a JQL filter such as "project = OPS" (Jira refuses unbounded searches)`,
			Description: "Your filter, e.g. `project = OPS`. Jira refuses searches with no restriction. Leave out `ORDER BY`: " +
				"the connector adds its own, and a config with one is refused."},
		{Name: "fields", Kind: connector.List, Default: DefaultFields,
			Description: "The issue fields to request. `updated` is added when missing: it is the version and the cursor. " +
				"Fields other than those normalised below land in `data.other_fields`."},
		connector.PageSize("max_results", DefaultMaxResults, maxMaxResults, ""),
		connector.MaxPages(DefaultMaxPages, maxMaxPages, ""),
	},
}

// Spec describes the config's fields.
func (Config) Spec() connector.Spec { return spec }

// ApplyDefaults fills the fields left out.
func (c *Config) ApplyDefaults() {
	if len(c.Fields) == 0 {
		c.Fields = slices.Clone(DefaultFields)
	}
	if !slices.Contains(c.Fields, "updated") {
		c.Fields = append(c.Fields, "updated")
	}
	connector.SetDefault(&c.MaxResults, DefaultMaxResults)
	connector.SetDefault(&c.MaxPages, DefaultMaxPages)
}

// orderByPattern finds an ORDER BY in the user's JQL.
var orderByPattern = regexp.MustCompile(`(?i)\border\s+by\b`)

// Validate reports every problem the spec cannot tell. It does no I/O and
// never quotes the API token.
func (c Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.BaseURL) != "" {
		_, err := upstream.ParseBaseURL("config.base_url", c.BaseURL, exampleBaseURL)
		errs = append(errs, err)
	}
	if orderByPattern.MatchString(c.JQL) {
		errs = append(errs, errors.New("config.jql: remove the ORDER BY: the connector orders by updated itself"))
	}
	for i, field := range c.Fields {
		if strings.TrimSpace(field) == "" {
			errs = append(errs, fmt.Errorf(`config.fields[%d]: empty field name (write a field id such as "summary" or "customfield_10010")`, i))
		}
	}
	return errors.Join(errs...)
}

// New builds a jira-issues connector from its config. It does no I/O.
func New(raw json.RawMessage, deps connector.Deps) (connector.Connector, error) {
	return connector.Build(TypeName, raw, deps, func(cfg Config, deps connector.Deps) (connector.Connector, error) {
		base, _ := upstream.ParseBaseURL("config.base_url", cfg.BaseURL, exampleBaseURL) // validated
		return &issuePoller{
			baseURL: base.String(),
			header: http.Header{
				"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(cfg.Email+":"+cfg.APIToken))},
				"Content-Type":  {"application/json"},
				"Accept":        {"application/json"},
			},
			jql:        strings.TrimSpace(cfg.JQL),
			fields:     cfg.Fields,
			maxResults: *cfg.MaxResults,
			maxPages:   *cfg.MaxPages,
			client:     upstream.Client(deps),
			logger:     deps.Logger,
			now:        time.Now,
		}, nil
	})
}

// issuePoller keeps only its config between polls; State carries the rest.
type issuePoller struct {
	baseURL    string
	header     http.Header // with the Basic credentials
	jql        string
	fields     []string
	maxResults int
	maxPages   int
	client     *http.Client
	logger     *slog.Logger
	now        func() time.Time // a field so tests can stop the clock
}

// Poll searches for the issues updated since the cursor, oldest first, and
// moves the cursor to the newest "updated" it saw. Oldest first matters: when
// max_pages stops a poll early, the issues left over are all newer than the
// cursor, so the next poll picks them up.
func (p *issuePoller) Poll(ctx context.Context, state connector.State) (connector.Result, error) {
	since := connector.TimeCursor(ctx, p.logger, state.Cursor, "searching without it")
	jql := p.searchJQL(since)

	result := connector.Result{State: connector.State{Cursor: state.Cursor}}
	newest := since
	position := 0 // numbers issues across pages for ItemErrors without a key
	pageToken := ""
	pages := upstream.NewPages(p.maxPages, pageToken)
	for {
		found, err := p.search(ctx, jql, pageToken)
		if err != nil {
			return connector.Result{}, fmt.Errorf("jira: %w", err)
		}
		for _, raw := range found.Issues {
			item, updated, itemErr := p.toItem(raw)
			if itemErr != nil {
				result.Fail(*itemErr, "issues", position)
			} else {
				result.Items = append(result.Items, item)
				if updated.After(newest) {
					newest = updated
				}
			}
			position++
		}

		if found.IsLast || found.NextPageToken == "" {
			break
		}
		if err := pages.Next(found.NextPageToken); err != nil {
			// A repeated token would read the same pages forever; past
			// max_pages the rest, all newer than the cursor, waits for the
			// next poll. Either way, what was read stands.
			p.logger.WarnContext(ctx, "jira: stopping pagination with what was read",
				"reason", err.Error(), "max_pages", p.maxPages, "items", len(result.Items))
			break
		}
		pageToken = found.NextPageToken
	}

	if newest.After(since) {
		result.State.Cursor = newest.UTC().Format(time.RFC3339Nano)
	}
	return result, nil
}

// searchJQL wraps the user's filter in the poll's time window.
//
// The window is relative ("-17m"), not a date: Jira reads a JQL date such as
// "2024-11-13 20:27" in the timezone of the API user's profile, which the
// connector does not know. Dates sent in UTC for a user west of UTC would
// skip hours of updates. A relative window is counted from Jira's own "now"
// and has no timezone. It is rounded up to whole minutes (JQL's precision)
// and widened by cursorMargin, so it always starts before the cursor.
func (p *issuePoller) searchJQL(since time.Time) string {
	if since.IsZero() {
		return "(" + p.jql + ") ORDER BY updated ASC"
	}
	elapsed := p.now().Sub(since) + cursorMargin
	minutes := max(int64(math.Ceil(elapsed.Minutes())), 1)
	return fmt.Sprintf(`(%s) AND updated >= "-%dm" ORDER BY updated ASC`, p.jql, minutes)
}

// searchRequest is the body of POST /rest/api/3/search/jql.
type searchRequest struct {
	JQL           string   `json:"jql"`
	Fields        []string `json:"fields"`
	MaxResults    int      `json:"maxResults"`
	NextPageToken string   `json:"nextPageToken,omitempty"`
}

// searchPage is one page of its answer. Unlike the removed /search, it has
// no total: the last page says isLast, or (seen in practice) just has no
// nextPageToken.
type searchPage struct {
	Issues        []json.RawMessage `json:"issues"`
	NextPageToken string            `json:"nextPageToken"`
	IsLast        bool              `json:"isLast"`
}

// search asks for one page of issues.
func (p *issuePoller) search(ctx context.Context, jql, pageToken string) (searchPage, error) {
	body, err := json.Marshal(searchRequest{JQL: jql, Fields: p.fields, MaxResults: p.maxResults, NextPageToken: pageToken})
	if err != nil {
		return searchPage{}, fmt.Errorf("encode search request: %w", err)
	}
	answer, err := upstream.Fetch(ctx, p.client, upstream.Request{
		Method: http.MethodPost, URL: p.baseURL + searchPath, Header: p.header, Body: body, Explain: explain,
	})
	if err != nil {
		return searchPage{}, err
	}
	var page searchPage
	if err := upstream.DecodeJSON(answer.Body, &page); err != nil {
		return searchPage{}, err
	}
	if page.Issues == nil {
		return searchPage{}, errors.New(`response has no "issues" array (is base_url a Jira Cloud site?)`)
	}
	return page, nil
}

// explain words a Jira error from its {"errorMessages": [...], "errors":
// {...}} body, and says where to look for the usual ones.
func explain(e *upstream.StatusError) {
	var body struct {
		ErrorMessages []string          `json:"errorMessages"`
		Errors        map[string]string `json:"errors"`
	}
	if json.Unmarshal(e.Body, &body) == nil {
		messages := body.ErrorMessages
		for _, field := range slices.Sorted(maps.Keys(body.Errors)) {
			messages = append(messages, field+": "+body.Errors[field])
		}
		e.Message = upstream.OneLine(strings.Join(messages, "; "), 600)
		if e.Message == "" {
			e.Snippet = "" // Jira's JSON, with nothing in it
		}
	}
	switch e.StatusCode {
	case http.StatusUnauthorized:
		e.Hint = "check config.email and config.api_token; tokens come from " + tokenPageURL
	case http.StatusNotFound:
		e.Hint = fmt.Sprintf("check config.base_url: it must be the site root, e.g. %q", exampleBaseURL)
	case http.StatusGone:
		e.Hint = "Jira removed the endpoint that was called; this connector calls POST " + searchPath +
			fmt.Sprintf(", so check that config.base_url is the site root, e.g. %q, and that no proxy rewrites the path", exampleBaseURL)
	}
}

// Issue is an item's Data.
type Issue struct {
	Key       string `json:"key"`
	ID        string `json:"id"`
	Summary   string `json:"summary,omitempty"`
	Status    string `json:"status,omitempty"`
	IssueType string `json:"issue_type,omitempty"`
	Priority  string `json:"priority,omitempty"`
	// Assignee is the display name; left out when the issue is unassigned.
	Assignee string `json:"assignee,omitempty"`
	// Created and Updated are RFC 3339, with the offset Jira gave.
	Created string `json:"created,omitempty"`
	Updated string `json:"updated"`
	// URL is the issue's page for humans: {base_url}/browse/{key}.
	URL string `json:"url"`
	// OtherFields are requested fields beyond those above (custom fields,
	// labels, ...), as Jira sent them.
	OtherFields map[string]json.RawMessage `json:"other_fields,omitempty"`
}

// named is the shape of Jira's status, issuetype and priority objects.
type named struct {
	Name string `json:"name"`
}

// issueFields are the fields Data normalises.
type issueFields struct {
	Summary   string `json:"summary"`
	Status    *named `json:"status"`
	IssueType *named `json:"issuetype"`
	Priority  *named `json:"priority"`
	Created   string `json:"created"`
	Updated   string `json:"updated"`
	Assignee  *struct {
		DisplayName string `json:"displayName"`
	} `json:"assignee"`
}

// normalisedFields are the fields issueFields covers; the rest go to OtherFields.
var normalisedFields = []string{"summary", "status", "issuetype", "priority", "created", "updated", "assignee"}

// toItem turns one issue into an item and returns its updated time for the
// cursor. An issue it cannot read is an ItemError, never a failed poll; the
// error's ID is empty when the issue has no readable key.
func (p *issuePoller) toItem(raw json.RawMessage) (connector.Item, time.Time, *connector.ItemError) {
	var issue struct {
		ID     string      `json:"id"`
		Key    string      `json:"key"`
		Fields issueFields `json:"fields"`
	}
	if err := json.Unmarshal(raw, &issue); err != nil {
		return connector.Item{}, time.Time{}, &connector.ItemError{ID: keyOf(raw), Err: fmt.Errorf("not a Jira issue: %w", err)}
	}
	if issue.Key == "" {
		return connector.Item{}, time.Time{}, &connector.ItemError{Err: errors.New("issue has no key")}
	}
	fields := issue.Fields
	if fields.Updated == "" {
		return connector.Item{}, time.Time{}, &connector.ItemError{ID: issue.Key,
			Err: errors.New("issue has no fields.updated, so its versions cannot be told apart")}
	}
	updated, err := time.Parse(jiraTimeLayout, fields.Updated)
	if err != nil {
		return connector.Item{}, time.Time{}, &connector.ItemError{ID: issue.Key,
			Err: fmt.Errorf("fields.updated %q is not a Jira date-time", fields.Updated)}
	}

	data := Issue{
		Key:         issue.Key,
		ID:          issue.ID,
		Summary:     fields.Summary,
		Status:      nameOf(fields.Status),
		IssueType:   nameOf(fields.IssueType),
		Priority:    nameOf(fields.Priority),
		Created:     toRFC3339(fields.Created),
		Updated:     updated.Format(time.RFC3339Nano),
		URL:         p.baseURL + "/browse/" + url.PathEscape(issue.Key),
		OtherFields: otherFields(raw),
	}
	if fields.Assignee != nil {
		data.Assignee = fields.Assignee.DisplayName
	}
	encoded, err := json.Marshal(data)
	if err != nil {
		return connector.Item{}, time.Time{}, &connector.ItemError{ID: issue.Key, Err: fmt.Errorf("encode issue: %w", err)}
	}
	// The version is the string Jira sent, so it never depends on our parsing.
	return connector.Item{ID: issue.Key, Version: fields.Updated, Data: encoded}, updated, nil
}

// keyOf names an issue that did not decode, when its key can still be read.
func keyOf(raw json.RawMessage) string {
	var issue struct {
		Key any `json:"key"`
	}
	_ = json.Unmarshal(raw, &issue)
	key, _ := issue.Key.(string)
	return key
}

// otherFields returns the requested fields that Issue does not normalise.
func otherFields(raw json.RawMessage) map[string]json.RawMessage {
	var issue struct {
		Fields map[string]json.RawMessage `json:"fields"`
	}
	_ = json.Unmarshal(raw, &issue) // raw already decoded once in toItem
	for _, name := range normalisedFields {
		delete(issue.Fields, name)
	}
	if len(issue.Fields) == 0 {
		return nil
	}
	return issue.Fields
}

func nameOf(n *named) string {
	if n == nil {
		return ""
	}
	return n.Name
}

// toRFC3339 rewrites a Jira date-time as RFC 3339, which more parsers read;
// a value that is not one is kept as it is.
func toRFC3339(jiraTime string) string {
	t, err := time.Parse(jiraTimeLayout, jiraTime)
	if err != nil {
		return jiraTime
	}
	return t.Format(time.RFC3339Nano)
}
