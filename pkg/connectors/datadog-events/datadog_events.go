// Package datadogevents polls Datadog's event stream (v2 events API) for
// events that happened since the last poll. Each event is one item. Events
// never change, so an event's timestamp is its only version.
package datadogevents

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
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

// TypeName is the connector type in connectors.json.
const TypeName = "datadog-events"

const (
	// DefaultBaseURL is the API of Datadog's US1 site. Other sites have their
	// own: https://api.datadoghq.eu, https://api.us3.datadoghq.com, ...
	DefaultBaseURL = "https://api.datadoghq.com"
	eventsPath     = "/api/v2/events"
	// DefaultLookback is how far back the first poll reads.
	DefaultLookback = "15m"
	// DefaultPageLimit is the page size asked of Datadog, which allows up to 1000.
	DefaultPageLimit = 100
	maxPageLimit     = 1000
	// DefaultMaxPages bounds one poll; maxMaxPages keeps a misconfigured
	// connector from hammering Datadog.
	DefaultMaxPages = 10
	maxMaxPages     = 100
	// indexMargin starts each poll a minute before the cursor. Datadog
	// indexes events a little after their timestamp, so an event stamped
	// just before the last poll may only have become searchable after it.
	// Events read twice cost nothing: same id, same version, no signal.
	indexMargin = time.Minute
	// maxMessageRunes caps an event's message in Data.
	maxMessageRunes = 4000
)

var _ connector.Factory = New

// Config is the "config" object of a datadog-events connector; spec
// describes its fields.
type Config struct {
	APIKey    string `json:"api_key"`
	AppKey    string `json:"app_key"`
	BaseURL   string `json:"base_url,omitempty"`
	Query     string `json:"query,omitempty"`
	Lookback  string `json:"lookback,omitempty"`
	PageLimit *int   `json:"page_limit,omitempty"`
	MaxPages  *int   `json:"max_pages,omitempty"`
}

// lookbackRegexp is Datadog's relative time: a number and one unit.
const lookbackRegexp = `^[1-9][0-9]*[smhdw]$`

var lookbackPattern = regexp.MustCompile(lookbackRegexp)

var spec = connector.Spec{
	Summary: "Datadog's event stream (v2 events API): the events that happened since the last poll.",
	Fields: []connector.Field{
		{Name: "api_key", Kind: connector.String, Required: true, Secret: true,
			Hint:        `write "${DD_API_KEY}" and set that variable (Datadog: Organization Settings, API Keys)`,
			Description: "Sent as `DD-API-KEY`. Write `\"${DD_API_KEY}\"`."},
		{Name: "app_key", Kind: connector.String, Required: true, Secret: true,
			Hint:        `write "${DD_APP_KEY}" and set that variable (Datadog: Organization Settings, Application Keys)`,
			Description: "Sent as `DD-APPLICATION-KEY`. Write `\"${DD_APP_KEY}\"`. It needs the `events_read` scope."},
		connector.BaseURL(DefaultBaseURL, "https://api.datadoghq.eu", "Your site's API: `https://api.datadoghq.eu`, "+
			"`https://api.us3.datadoghq.com`, `https://api.us5.datadoghq.com`, `https://api.ap1.datadoghq.com`, "+
			"`https://api.ddog-gov.com`, or a test server. The web app host (`https://app.…`) is refused, with the API "+
			"host to write instead."),
		{Name: "query", Kind: connector.String, Example: "source:github status:error",
			Description: "An event search query, sent as `filter[query]`, e.g. `source:github status:error`. Empty means every event."},
		{Name: "lookback", Kind: connector.String, Default: DefaultLookback, Pattern: lookbackRegexp,
			Description: "How far back the **first** poll reads, in Datadog's relative time: a number and one unit of `s`, " +
				"`m`, `h`, `d` or `w` (`\"90m\"`, not `\"1h30m\"`)."},
		connector.PageSize("page_limit", DefaultPageLimit, maxPageLimit, "Sent as `page[limit]`."),
		connector.MaxPages(DefaultMaxPages, maxMaxPages, ""),
	},
}

// Spec describes the config's fields.
func (Config) Spec() connector.Spec { return spec }

// ApplyDefaults fills the fields left out.
func (c *Config) ApplyDefaults() {
	c.BaseURL = cmp.Or(c.BaseURL, DefaultBaseURL)
	c.Lookback = cmp.Or(c.Lookback, DefaultLookback)
	connector.SetDefault(&c.PageLimit, DefaultPageLimit)
	connector.SetDefault(&c.MaxPages, DefaultMaxPages)
}

// Validate reports every problem the spec cannot tell. It does no I/O and
// never quotes a key.
func (c Config) Validate() error {
	var errs []error
	_, err := parseBaseURL(c.BaseURL)
	errs = append(errs, err)
	if !lookbackPattern.MatchString(c.Lookback) {
		errs = append(errs, fmt.Errorf(`config.lookback: %q is not a Datadog relative time (write a number and one unit of s, m, h, d or w, e.g. "90m"; default %q)`,
			c.Lookback, DefaultLookback))
	}
	return errors.Join(errs...)
}

// parseBaseURL is upstream.ParseBaseURL, refusing the web app's host: it
// answers API calls with HTML.
func parseBaseURL(raw string) (*url.URL, error) {
	u, err := upstream.ParseBaseURL("config.base_url", raw, DefaultBaseURL)
	if err != nil {
		return nil, err
	}
	if app, ok := strings.CutPrefix(u.Hostname(), "app."); ok {
		return nil, fmt.Errorf("config.base_url: %q is the web app; write the API host %q", upstream.ShowURL(u), "https://api."+app)
	}
	return u, nil
}

// New builds a datadog-events connector from its config. It does no I/O.
func New(raw json.RawMessage, deps connector.Deps) (connector.Connector, error) {
	return connector.Build(TypeName, raw, deps, func(cfg Config, deps connector.Deps) (connector.Connector, error) {
		base, _ := parseBaseURL(cfg.BaseURL) // validated
		return &eventPoller{
			eventsURL: base.String() + eventsPath,
			header:    http.Header{"DD-API-KEY": {cfg.APIKey}, "DD-APPLICATION-KEY": {cfg.AppKey}, "Accept": {"application/json"}},
			query:     cfg.Query,
			lookback:  cfg.Lookback,
			pageLimit: *cfg.PageLimit,
			maxPages:  *cfg.MaxPages,
			client:    upstream.Client(deps),
			logger:    deps.Logger,
		}, nil
	})
}

// eventPoller keeps only its config between polls; State carries the rest.
type eventPoller struct {
	eventsURL string
	header    http.Header // with the keys
	query     string
	lookback  string
	pageLimit int
	maxPages  int
	client    *http.Client
	logger    *slog.Logger
}

// Poll reads the events since the cursor, oldest first, and moves the cursor
// to the newest timestamp seen. Oldest first matters: when max_pages stops a
// poll early, the events left over are newer than the cursor, so the next
// poll reads them.
func (p *eventPoller) Poll(ctx context.Context, state connector.State) (connector.Result, error) {
	since := connector.TimeCursor(ctx, p.logger, state.Cursor, "reading the lookback instead")
	from := "now-" + p.lookback
	if !since.IsZero() {
		from = since.Add(-indexMargin).UTC().Truncate(time.Second).Format(time.RFC3339)
	}

	result := connector.Result{State: connector.State{Cursor: state.Cursor}}
	newest := since
	position := 0 // numbers events across pages for ItemErrors without an id
	pageCursor := ""
	pages := upstream.NewPages(p.maxPages, pageCursor)
	for {
		found, err := p.fetch(ctx, from, pageCursor)
		if err != nil {
			return connector.Result{}, fmt.Errorf("datadog: %w", err)
		}
		for _, raw := range found.Data {
			item, happened, itemErr := toItem(raw)
			if itemErr != nil {
				result.Fail(*itemErr, "data", position)
			} else {
				result.Items = append(result.Items, item)
				if happened.After(newest) {
					newest = happened
				}
			}
			position++
		}

		next := found.Meta.Page.After
		if len(found.Data) == 0 || next == "" {
			break
		}
		err = pages.Next(next)
		if errors.Is(err, upstream.ErrMaxPages) {
			p.logger.WarnContext(ctx, "datadog has more events than max_pages × page_limit; the rest are left for the next poll",
				"max_pages", p.maxPages, "page_limit", p.pageLimit, "items", len(result.Items))
			break
		}
		if err != nil {
			// Any repeat, not only the same cursor twice in a row: A, B, A
			// loops as surely. The poll fails so that the loop shows.
			return connector.Result{}, fmt.Errorf("datadog: meta.page.after: %w (the poll stops rather than read the same events again, and moves no cursor; "+
				"if it keeps happening, narrow config.query or report it to Datadog)", err)
		}
		pageCursor = next
	}

	if newest.After(since) {
		result.State.Cursor = newest.UTC().Format(time.RFC3339Nano)
	}
	return result, nil
}

// eventsPage is one answer of GET /api/v2/events. The last page has no
// meta.page.after, and may have no data at all.
type eventsPage struct {
	Data []json.RawMessage `json:"data"`
	Meta struct {
		Page struct {
			After string `json:"after"`
		} `json:"page"`
	} `json:"meta"`
}

// fetch reads one page.
func (p *eventPoller) fetch(ctx context.Context, from, pageCursor string) (eventsPage, error) {
	query := url.Values{}
	query.Set("filter[from]", from)
	if p.query != "" {
		query.Set("filter[query]", p.query)
	}
	query.Set("sort", "timestamp") // oldest first; see Poll
	query.Set("page[limit]", strconv.Itoa(p.pageLimit))
	if pageCursor != "" {
		query.Set("page[cursor]", pageCursor)
	}
	answer, err := upstream.Fetch(ctx, p.client, upstream.Request{URL: p.eventsURL + "?" + query.Encode(), Header: p.header, Explain: explain})
	if err != nil {
		return eventsPage{}, err
	}
	var page eventsPage
	if err := upstream.DecodeJSON(answer.Body, &page); err != nil {
		return eventsPage{}, err
	}
	if page.Data == nil {
		return eventsPage{}, errors.New(`response has no "data" array (is base_url your site's API?)`)
	}
	return page, nil
}

// explain words a Datadog error from its {"errors": ["..."]} body.
func explain(e *upstream.StatusError) {
	var body struct {
		Errors []string `json:"errors"`
	}
	if json.Unmarshal(e.Body, &body) == nil {
		e.Message = upstream.OneLine(strings.Join(body.Errors, "; "), 600)
		if e.Message == "" {
			e.Snippet = ""
		}
	}
	if e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden {
		e.Hint = "check config.api_key and config.app_key, that the application key has events_read, and that config.base_url is your Datadog site"
	}
}

// Event is an item's Data.
type Event struct {
	ID    string `json:"id"`
	Title string `json:"title,omitempty"`
	// Message is cut at 4000 characters; MessageTruncated says when.
	Message          string `json:"message,omitempty"`
	MessageTruncated bool   `json:"message_truncated,omitempty"`
	// Timestamp is RFC 3339, as Datadog sent it.
	Timestamp string `json:"timestamp"`
	// Tags are Datadog's, without repeats; never null.
	Tags []string `json:"tags"`
	// Source is source_type_name, else the value of the first "source:" tag.
	Source    string `json:"source,omitempty"`
	Status    string `json:"status,omitempty"`
	AlertType string `json:"alert_type,omitempty"`
	Priority  string `json:"priority,omitempty"`
	Host      string `json:"host,omitempty"`
	Service   string `json:"service,omitempty"`
	URL       string `json:"url,omitempty"`
}

// event is the part of a v2 event the connector reads. The event's own
// fields sit one level down, in attributes.attributes.
type event struct {
	ID         string `json:"id"`
	Attributes struct {
		Message   string   `json:"message"`
		Tags      []string `json:"tags"`
		Timestamp string   `json:"timestamp"`
		Event     struct {
			Title          string `json:"title"`
			Status         string `json:"status"`
			AlertType      string `json:"alert_type"`
			Priority       string `json:"priority"`
			Hostname       string `json:"hostname"`
			Service        string `json:"service"`
			SourceTypeName string `json:"source_type_name"`
			URL            string `json:"url"`
			// TimestampMillis is the same instant in Unix milliseconds.
			TimestampMillis int64 `json:"timestamp"`
		} `json:"attributes"`
	} `json:"attributes"`
}

// toItem turns one event into an item and returns its time for the cursor.
// An event it cannot read is an ItemError, never a failed poll; the error's
// ID is empty when the event has no readable id.
func toItem(raw json.RawMessage) (connector.Item, time.Time, *connector.ItemError) {
	var e event
	if err := json.Unmarshal(raw, &e); err != nil {
		return connector.Item{}, time.Time{}, &connector.ItemError{ID: idOf(raw), Err: fmt.Errorf("not a Datadog event: %w", err)}
	}
	if e.ID == "" {
		return connector.Item{}, time.Time{}, &connector.ItemError{Err: errors.New("event has no id")}
	}
	attrs, inner := e.Attributes, e.Attributes.Event
	timestamp := attrs.Timestamp
	if timestamp == "" && inner.TimestampMillis > 0 {
		timestamp = time.UnixMilli(inner.TimestampMillis).UTC().Format(time.RFC3339Nano)
	}
	if timestamp == "" {
		return connector.Item{}, time.Time{}, &connector.ItemError{ID: e.ID, Err: errors.New("event has no timestamp")}
	}
	happened, err := time.Parse(time.RFC3339Nano, timestamp)
	if err != nil {
		return connector.Item{}, time.Time{}, &connector.ItemError{ID: e.ID, Err: fmt.Errorf("timestamp %q is not RFC 3339", timestamp)}
	}

	message, truncated := connector.CutText(attrs.Message, maxMessageRunes)
	tags := uniqueTags(attrs.Tags)
	data := Event{
		ID:               e.ID,
		Title:            inner.Title,
		Message:          message,
		MessageTruncated: truncated,
		Timestamp:        timestamp,
		Tags:             tags,
		Source:           inner.SourceTypeName,
		Status:           inner.Status,
		AlertType:        inner.AlertType,
		Priority:         inner.Priority,
		Host:             inner.Hostname,
		Service:          inner.Service,
		URL:              inner.URL,
	}
	if data.Source == "" {
		data.Source = tagValue(tags, "source")
	}
	encoded, err := json.Marshal(data)
	if err != nil {
		return connector.Item{}, time.Time{}, &connector.ItemError{ID: e.ID, Err: fmt.Errorf("encode event: %w", err)}
	}
	// Events are immutable: the version only has to be stable for an id.
	return connector.Item{ID: e.ID, Version: timestamp, Data: encoded}, happened, nil
}

// idOf names an event that did not decode, when its id can still be read.
func idOf(raw json.RawMessage) string {
	var e struct {
		ID any `json:"id"`
	}
	_ = json.Unmarshal(raw, &e)
	id, _ := e.ID.(string)
	return id
}

// uniqueTags drops repeated tags (Datadog repeats them) and keeps the order.
func uniqueTags(tags []string) []string {
	out := make([]string, 0, len(tags))
	for _, tag := range tags {
		if !slices.Contains(out, tag) {
			out = append(out, tag)
		}
	}
	return out
}

// tagValue returns the value of the first "key:value" tag with that key.
func tagValue(tags []string, key string) string {
	for _, tag := range tags {
		if value, ok := strings.CutPrefix(tag, key+":"); ok {
			return value
		}
	}
	return ""
}
