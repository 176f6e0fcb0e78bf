// Package slackhistory polls one Slack channel's history
// (conversations.history) for messages posted since the last poll. Each
// message is one item, keyed by its ts; an edit gives it a new version.
package slackhistory

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

// TypeName is the connector type in connectors.json.
const TypeName = "slack-history"

const (
	// DefaultBaseURL is Slack's Web API.
	DefaultBaseURL = "https://slack.com/api"
	// DefaultLimit is the page size asked of Slack, which allows up to 999
	// (and only 15 for non-Marketplace apps distributed commercially).
	DefaultLimit = 200
	maxLimit     = 999
	// DefaultMaxPages bounds one poll; maxMaxPages keeps a misconfigured
	// connector from hammering Slack.
	DefaultMaxPages = 5
	maxMaxPages     = 100
	// maxTextRunes caps a message's text in Data; a signal is not an archive.
	maxTextRunes = 4000
	// exampleWorkspaceURL is what the error texts suggest.
	exampleWorkspaceURL = "https://acme.slack.com"
)

var _ connector.Factory = New

// Config is the "config" object of a slack-history connector; spec
// describes its fields.
type Config struct {
	Token        string `json:"token"`
	Channel      string `json:"channel"`
	BaseURL      string `json:"base_url,omitempty"`
	WorkspaceURL string `json:"workspace_url,omitempty"`
	Limit        *int   `json:"limit,omitempty"`
	MaxPages     *int   `json:"max_pages,omitempty"`
}

// channelRegexp matches conversation ids: C (public), G (private or group
// DM) or D (DM), then uppercase letters and digits.
const channelRegexp = `^[CGD][A-Z0-9]{8,}$`

var channelPattern = regexp.MustCompile(channelRegexp)

var spec = connector.Spec{
	Summary: "One Slack channel's messages, posted since the last poll.",
	Fields: []connector.Field{
		{Name: "token", Kind: connector.String, Required: true, Secret: true,
			Hint: `write "${SLACK_TOKEN}" and set that variable to a bot token (xoxb-...) with channels:history`,
			Description: "A bot token (`xoxb-…`) or user token, sent as `Authorization: Bearer …`. Write `\"${SLACK_TOKEN}\"`. " +
				"It needs `channels:history` for public channels, or `groups:history` for private ones. A bot must also be " +
				"a member of the channel."},
		{Name: "channel", Kind: connector.String, Required: true, Pattern: channelRegexp, Example: "C0123ABCD",
			Hint: `the channel id, e.g. "C0123ABCD" (in Slack: channel details, at the bottom)`,
			Description: "The conversation id, e.g. `C0123ABCD`: `C`, `G` or `D`, then at least 8 capital letters and digits. " +
				"This is not the `#name`. You can find the id at the bottom of the channel details in Slack."},
		connector.BaseURL(DefaultBaseURL, "", "The Web API root: a proxy or a test server."),
		{Name: "workspace_url", Kind: connector.String, Example: exampleWorkspaceURL,
			Description: "Optional, e.g. `" + exampleWorkspaceURL + "`. When set, each message carries its permalink in " +
				"`data.url`. The API itself does not say which workspace it serves."},
		connector.PageSize("limit", DefaultLimit, maxLimit, "Slack may return fewer. Commercially distributed "+
			"non-Marketplace apps are capped by Slack at 15 messages per page and 1 request per minute."),
		connector.MaxPages(DefaultMaxPages, maxMaxPages, ""),
	},
}

// Spec describes the config's fields.
func (Config) Spec() connector.Spec { return spec }

// ApplyDefaults fills the fields left out.
func (c *Config) ApplyDefaults() {
	c.BaseURL = cmp.Or(c.BaseURL, DefaultBaseURL)
	connector.SetDefault(&c.Limit, DefaultLimit)
	connector.SetDefault(&c.MaxPages, DefaultMaxPages)
}

// Validate reports every problem the spec cannot tell. It does no I/O and
// never quotes the token.
func (c Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.Channel) != "" && !channelPattern.MatchString(c.Channel) {
		errs = append(errs, fmt.Errorf(`config.channel: %q is not a channel id (write the id such as "C0123ABCD", not the #name; in Slack: channel details, at the bottom)`, c.Channel))
	}
	_, err := upstream.ParseBaseURL("config.base_url", c.BaseURL, DefaultBaseURL)
	errs = append(errs, err)
	if c.WorkspaceURL != "" {
		_, err := upstream.ParseBaseURL("config.workspace_url", c.WorkspaceURL, exampleWorkspaceURL)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// New builds a slack-history connector from its config. It does no I/O.
func New(raw json.RawMessage, deps connector.Deps) (connector.Connector, error) {
	return connector.Build(TypeName, raw, deps, func(cfg Config, deps connector.Deps) (connector.Connector, error) {
		base, _ := upstream.ParseBaseURL("config.base_url", cfg.BaseURL, DefaultBaseURL) // validated
		workspace := ""
		if cfg.WorkspaceURL != "" {
			u, _ := upstream.ParseBaseURL("config.workspace_url", cfg.WorkspaceURL, exampleWorkspaceURL) // validated
			workspace = u.String()
		}
		return &historyPoller{
			historyURL:   base.String() + "/conversations.history",
			header:       http.Header{"Authorization": {"Bearer " + cfg.Token}, "Accept": {"application/json"}},
			channel:      cfg.Channel,
			workspaceURL: workspace,
			limit:        *cfg.Limit,
			maxPages:     *cfg.MaxPages,
			client:       upstream.Client(deps),
			logger:       deps.Logger,
		}, nil
	})
}

// historyPoller keeps only its config between polls; State carries the rest.
type historyPoller struct {
	historyURL   string
	header       http.Header
	channel      string
	workspaceURL string
	limit        int
	maxPages     int
	client       *http.Client
	logger       *slog.Logger
}

// Poll reads the messages newer than the cursor (Slack's "oldest" is
// exclusive) and moves the cursor to the newest ts seen. The first poll has
// no cursor and reads the newest max_pages × limit messages: it starts the
// feed, it does not archive the channel.
func (p *historyPoller) Poll(ctx context.Context, state connector.State) (connector.Result, error) {
	oldest := state.Cursor
	if oldest != "" && !tsPattern.MatchString(oldest) {
		p.logger.WarnContext(ctx, "stored cursor is not a Slack ts; reading without it", "cursor", oldest)
		oldest = ""
	}

	result := connector.Result{State: connector.State{Cursor: state.Cursor}}
	newest := oldest
	position := 0 // numbers messages across pages for ItemErrors without a ts
	pageCursor := ""
	pages := upstream.NewPages(p.maxPages, pageCursor)
	for {
		history, err := p.fetch(ctx, oldest, pageCursor)
		if err != nil {
			return connector.Result{}, fmt.Errorf("slack: %w", err)
		}
		for _, raw := range history.Messages {
			item, ts, itemErr := p.toItem(raw)
			if itemErr != nil {
				result.Fail(*itemErr, "messages", position)
			} else {
				result.Items = append(result.Items, item)
				if newest == "" || tsAfter(ts, newest) {
					newest = ts
				}
			}
			position++
		}

		next := history.ResponseMetadata.NextCursor
		if !history.HasMore || next == "" {
			break
		}
		if err := pages.Next(next); err != nil {
			if errors.Is(err, upstream.ErrMaxPages) {
				// Slack pages from newest to oldest, so what is left is older
				// than what was read, yet newer than the old cursor: moving the
				// cursor skips it. Holding it would skip the newest instead, on
				// every poll, as long as the channel stays this busy.
				p.logger.WarnContext(ctx, "more messages since the last poll than max_pages × limit; older ones in between are skipped (raise max_pages or poll more often)",
					"max_pages", p.maxPages, "limit", p.limit, "items", len(result.Items))
			} else {
				p.logger.WarnContext(ctx, "slack: stopping pagination with what was read", "reason", err.Error())
			}
			break
		}
		pageCursor = next
	}

	if newest != "" {
		result.State.Cursor = newest
	}
	return result, nil
}

// historyPage is one answer of conversations.history.
type historyPage struct {
	OK       bool              `json:"ok"`
	Error    string            `json:"error"`
	Needed   string            `json:"needed"` // with missing_scope
	Messages []json.RawMessage `json:"messages"`
	HasMore  bool              `json:"has_more"`
	// ResponseMetadata carries the cursor of the next (older) page.
	ResponseMetadata struct {
		NextCursor string `json:"next_cursor"`
	} `json:"response_metadata"`
}

// fetch reads one page. Slack answers most errors with 200 and "ok": false,
// so both the status and the body are checked.
func (p *historyPoller) fetch(ctx context.Context, oldest, pageCursor string) (historyPage, error) {
	query := url.Values{}
	query.Set("channel", p.channel)
	query.Set("limit", strconv.Itoa(p.limit))
	if oldest != "" {
		query.Set("oldest", oldest)
	}
	if pageCursor != "" {
		query.Set("cursor", pageCursor)
	}
	answer, err := upstream.Fetch(ctx, p.client, upstream.Request{URL: p.historyURL + "?" + query.Encode(), Header: p.header})
	if err != nil {
		return historyPage{}, err
	}
	var page historyPage
	if err := upstream.DecodeJSON(answer.Body, &page); err != nil {
		return historyPage{}, err
	}
	if !page.OK {
		return historyPage{}, &APIError{Code: page.Error, Needed: page.Needed}
	}
	return page, nil
}

// APIError is an answer with "ok": false. Code is Slack's error code, such
// as "channel_not_found".
type APIError struct {
	Code string
	// Needed is the scope Slack asks for with missing_scope.
	Needed string
}

func (e *APIError) Error() string {
	code := e.Code
	if code == "" {
		code = "(no error code)"
	}
	msg := "conversations.history answered ok=false: " + code
	switch e.Code {
	case "not_authed", "invalid_auth", "token_revoked", "token_expired", "account_inactive":
		msg += " (check config.token)"
	case "channel_not_found":
		msg += " (check config.channel, and that the token's app or user can see the channel)"
	case "not_in_channel":
		msg += " (invite the app to the channel)"
	case "missing_scope":
		needed := e.Needed
		if needed == "" {
			needed = "channels:history"
		}
		msg += " (the token needs the " + needed + " scope)"
	}
	return msg
}

// Message is an item's Data.
type Message struct {
	TS string `json:"ts"`
	// User is the author; bot messages have BotID instead.
	User  string `json:"user,omitempty"`
	BotID string `json:"bot_id,omitempty"`
	// Text is cut at 4000 characters; TextTruncated says when.
	Text          string `json:"text"`
	TextTruncated bool   `json:"text_truncated,omitempty"`
	ThreadTS      string `json:"thread_ts,omitempty"`
	ReplyCount    int    `json:"reply_count,omitempty"`
	EditedTS      string `json:"edited_ts,omitempty"`
	Type          string `json:"type,omitempty"`
	Subtype       string `json:"subtype,omitempty"`
	Channel       string `json:"channel"`
	// URL is the permalink, when config.workspace_url is set.
	URL string `json:"url,omitempty"`
}

// message is the part of Slack's message object the connector reads.
type message struct {
	Type       string `json:"type"`
	Subtype    string `json:"subtype"`
	TS         string `json:"ts"`
	User       string `json:"user"`
	BotID      string `json:"bot_id"`
	Text       string `json:"text"`
	ThreadTS   string `json:"thread_ts"`
	ReplyCount int    `json:"reply_count"`
	Edited     *struct {
		TS string `json:"ts"`
	} `json:"edited"`
}

// tsPattern matches Slack timestamps: "seconds.microseconds".
var tsPattern = regexp.MustCompile(`^[0-9]+\.[0-9]+$`)

// toItem turns one message into an item and returns its ts for the cursor.
// A message it cannot read is an ItemError, never a failed poll; the error's
// ID is empty when the message has no readable ts.
func (p *historyPoller) toItem(raw json.RawMessage) (connector.Item, string, *connector.ItemError) {
	var m message
	if err := json.Unmarshal(raw, &m); err != nil {
		return connector.Item{}, "", &connector.ItemError{ID: tsOf(raw), Err: fmt.Errorf("not a Slack message: %w", err)}
	}
	if m.TS == "" {
		return connector.Item{}, "", &connector.ItemError{Err: errors.New("message has no ts")}
	}
	if !tsPattern.MatchString(m.TS) {
		return connector.Item{}, "", &connector.ItemError{ID: m.TS, Err: fmt.Errorf("ts %q is not a Slack timestamp", m.TS)}
	}
	text, truncated := connector.CutText(m.Text, maxTextRunes)
	data := Message{
		TS: m.TS, User: m.User, BotID: m.BotID,
		Text: text, TextTruncated: truncated,
		ThreadTS: m.ThreadTS, ReplyCount: m.ReplyCount,
		Type: m.Type, Subtype: m.Subtype,
		Channel: p.channel,
	}
	version := m.TS
	if m.Edited != nil && m.Edited.TS != "" {
		data.EditedTS = m.Edited.TS
		version = m.Edited.TS
	}
	if p.workspaceURL != "" {
		// Slack's permalink form: /archives/<channel>/p<ts without the dot>.
		data.URL = p.workspaceURL + "/archives/" + p.channel + "/p" + strings.Replace(m.TS, ".", "", 1)
	}
	encoded, err := json.Marshal(data)
	if err != nil {
		return connector.Item{}, "", &connector.ItemError{ID: m.TS, Err: fmt.Errorf("encode message: %w", err)}
	}
	return connector.Item{ID: m.TS, Version: version, Data: encoded}, m.TS, nil
}

// tsOf names a message that did not decode, when its ts can still be read.
func tsOf(raw json.RawMessage) string {
	var m struct {
		TS any `json:"ts"`
	}
	_ = json.Unmarshal(raw, &m)
	ts, _ := m.TS.(string)
	return ts
}

// tsAfter reports whether Slack timestamp a is later than b. Both match
// tsPattern. They are compared as decimal strings: a float64 would round
// the microseconds of today's timestamps.
func tsAfter(a, b string) bool {
	aSec, aFrac, _ := strings.Cut(strings.TrimLeft(a, "0"), ".")
	bSec, bFrac, _ := strings.Cut(strings.TrimLeft(b, "0"), ".")
	if len(aSec) != len(bSec) {
		return len(aSec) > len(bSec)
	}
	if aSec != bSec {
		return aSec > bSec
	}
	width := max(len(aFrac), len(bFrac))
	return padRight(aFrac, width) > padRight(bFrac, width)
}

func padRight(digits string, width int) string {
	return digits + strings.Repeat("0", width-len(digits))
}
