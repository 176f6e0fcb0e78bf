// Package feed polls one RSS or Atom feed. Each entry is one item, named by
// its guid (RSS) or id (Atom); its updated or published time, or a hash of
// its text when it has neither, is its version.
package feed

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mmcdole/gofeed"

	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

// TypeName is the connector type in connectors.json.
const TypeName = "feed"

const (
	// DefaultMaxItems is how many entries one poll turns into items.
	DefaultMaxItems = 200
	// maxMaxItems keeps one poll's signals to a size a consumer can take.
	maxMaxItems = 10000
	// MaxSummaryRunes caps an item's summary; feeds often carry whole articles.
	MaxSummaryRunes = 2000
	// hashPrefix marks ids and versions that are content hashes, not the
	// feed's own values.
	hashPrefix = "sha256:"
	// urlExample is what the error texts suggest.
	urlExample = "https://github.com/gulpjs/gulp/releases.atom"
	// accept asks for a feed but takes whatever the server has: many serve
	// feeds as text/xml or text/html.
	accept = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.8"
)

var _ connector.Factory = New

// Config is the "config" object of a feed connector.
type Config struct {
	// URL is the feed's absolute http(s) address. Required. It is the whole
	// address, so this type has no base_url.
	URL string `json:"url"`
	// UserAgent, when set, is sent instead of pollgrid's default User-Agent.
	UserAgent string `json:"user_agent,omitempty"`
	// MaxItems is how many entries, in document order, one poll reads;
	// default 200, 1..10000. The rest are ignored.
	MaxItems *int `json:"max_items,omitempty"`
}

// ApplyDefaults fills the fields left out.
func (c *Config) ApplyDefaults() {
	if c.MaxItems == nil {
		n := DefaultMaxItems
		c.MaxItems = &n
	}
}

// Validate reports every problem of the config at once. It does no I/O.
func (c Config) Validate() error {
	var errs []error
	_, err := parseFeedURL(c.URL)
	errs = append(errs, err)
	if strings.ContainsFunc(c.UserAgent, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		errs = append(errs, errors.New(`config.user_agent: must be one line without control characters (write e.g. "pollgrid (ops@example.com)", or leave it out for the default)`))
	}
	if c.MaxItems != nil && (*c.MaxItems < 1 || *c.MaxItems > maxMaxItems) {
		errs = append(errs, fmt.Errorf("config.max_items: %d is out of range (write a number from 1 to %d; default %d)",
			*c.MaxItems, maxMaxItems, DefaultMaxItems))
	}
	return errors.Join(errs...)
}

// parseFeedURL accepts an absolute http(s) URL. A fragment is dropped: it is
// never sent. Error texts show the URL redacted.
func parseFeedURL(raw string) (*url.URL, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, fmt.Errorf("config.url: required (write the feed's absolute http(s) URL, e.g. %q)", urlExample)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("config.url: cannot be parsed as a URL (write an absolute http(s) URL such as %q)", urlExample)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("config.url: %q is not an absolute http(s) URL (write e.g. %q)", redactURL(u), urlExample)
	}
	u.Fragment, u.RawFragment = "", ""
	return u, nil
}

// redactURL hides what a feed URL may carry as a secret: the password and
// every query value (private feeds often take ?token=...). Keys stay, to
// tell two feeds apart.
func redactURL(u *url.URL) string {
	safe := *u
	if safe.RawQuery != "" {
		q := safe.Query()
		for k := range q {
			q[k] = []string{"xxxxx"}
		}
		safe.RawQuery = q.Encode()
	}
	return safe.Redacted()
}

// New builds a feed connector from its config. It does no I/O.
func New(raw json.RawMessage, deps connector.Deps) (connector.Connector, error) {
	cfg, err := connector.DecodeConfig[Config](raw)
	if err != nil {
		return nil, err
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	feedURL, _ := parseFeedURL(cfg.URL) // validated above
	client := deps.HTTP
	if client == nil {
		client = upstream.NewClient(upstream.Options{})
	}
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &feedPoller{
		url:       feedURL.String(),
		safeURL:   redactURL(feedURL),
		userAgent: cfg.UserAgent,
		maxItems:  *cfg.MaxItems,
		client:    client,
		logger:    logger.With("connector_type", TypeName),
	}, nil
}

// feedPoller keeps only its config between polls; State carries the rest.
type feedPoller struct {
	url       string
	safeURL   string // for error texts and logs
	userAgent string
	maxItems  int
	client    *http.Client
	logger    *slog.Logger
}

// Poll fetches the feed once, conditionally; a 304 ends the poll with
// nothing to do. Cursor is not used and is passed through unchanged.
func (p *feedPoller) Poll(ctx context.Context, state connector.State) (connector.Result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return connector.Result{}, fmt.Errorf("feed: build request for %s: %w", p.safeURL, err)
	}
	if p.userAgent != "" {
		req.Header.Set("User-Agent", p.userAgent)
	}
	req.Header.Set("Accept", accept)
	upstream.Conditional(req, state)

	resp, err := p.client.Do(req)
	if err != nil {
		// *url.Error prints the URL, which may carry a token in its query.
		if urlErr, ok := errors.AsType[*url.Error](err); ok {
			urlErr.URL = p.safeURL
		}
		return connector.Result{}, fmt.Errorf("feed: %w", err)
	}
	defer resp.Body.Close()
	if err := upstream.CheckStatus(resp); err != nil {
		if ctx.Err() != nil {
			return connector.Result{}, fmt.Errorf("feed: %w", ctx.Err())
		}
		return connector.Result{}, fmt.Errorf("feed: %w", err)
	}
	if resp.StatusCode == http.StatusNotModified {
		return connector.Result{NotModified: true, State: state}, nil
	}
	body, err := upstream.ReadBody(resp)
	if err != nil {
		if ctx.Err() != nil {
			return connector.Result{}, fmt.Errorf("feed: read body: %w", ctx.Err())
		}
		return connector.Result{}, fmt.Errorf("feed: %w", err)
	}
	parsed, err := parse(body)
	if err != nil {
		return connector.Result{}, fmt.Errorf("feed: %w%s", err, describeContentType(resp.Header))
	}
	// Relative links resolve against where the document was found (RFC 3986
	// §5.1.3), after any redirect.
	base := req.URL
	if resp.Request != nil && resp.Request.URL != nil {
		base = resp.Request.URL
	}
	entries := parsed.Items
	if len(entries) > p.maxItems {
		p.logger.DebugContext(ctx, "feed has more entries than max_items; the rest are ignored",
			"url", p.safeURL, "entries", len(entries), "max_items", p.maxItems)
		entries = entries[:p.maxItems]
	}
	items, failed := toItems(entries, strings.TrimSpace(parsed.Title), base)
	return connector.Result{
		Items:  items,
		Failed: failed,
		State:  upstream.Validators(resp, state),
	}, nil
}

// parse reads RSS (0.9x, 1.0, 2.0) or Atom. gofeed also reads JSON Feed, but
// any JSON object "parses" as one, so an API error in JSON would look like an
// empty feed: JSON is refused.
func parse(body []byte) (*gofeed.Feed, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, errors.New("response is not RSS or Atom: the body is empty")
	}
	parsed, err := gofeed.NewParser().Parse(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("response is not RSS or Atom: %w (starts %q)", err, head(body))
	}
	switch parsed.FeedType {
	case "rss", "atom":
		return parsed, nil
	case "json":
		return nil, fmt.Errorf("response is not RSS or Atom: it is JSON, and JSON Feed is not supported (starts %q)", head(body))
	default:
		return nil, fmt.Errorf("response is not RSS or Atom: gofeed read it as %q (starts %q)", parsed.FeedType, head(body))
	}
}

func head(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 60 {
		b = b[:60]
	}
	return strings.ToValidUTF8(string(b), "?")
}

func describeContentType(h http.Header) string {
	if ct := h.Get("Content-Type"); ct != "" {
		return fmt.Sprintf(" (Content-Type %q)", ct)
	}
	return ""
}

// Entry is an item's Data. Times are RFC 3339 in UTC when the feed's date
// parses, else the feed's text as given. Empty values are left out, except
// authors and categories, which are always arrays.
type Entry struct {
	ID         string   `json:"id"`
	Title      string   `json:"title,omitempty"`
	Link       string   `json:"link,omitempty"`
	Published  string   `json:"published,omitempty"`
	Updated    string   `json:"updated,omitempty"`
	Authors    []string `json:"authors"`
	Summary    string   `json:"summary,omitempty"`
	Categories []string `json:"categories"`
	FeedTitle  string   `json:"feed_title,omitempty"`
}

// toItems turns entries into items. An entry whose id an earlier entry
// already has is an ItemError: publishing both would flip the item between
// two versions on every poll.
func toItems(entries []*gofeed.Item, feedTitle string, base *url.URL) ([]connector.Item, []connector.ItemError) {
	items := make([]connector.Item, 0, len(entries))
	var failed []connector.ItemError
	firstAt := map[string]int{}
	for i, entry := range entries {
		if entry == nil {
			continue
		}
		item, err := toItem(entry, feedTitle, base)
		if err != nil {
			failed = append(failed, connector.ItemError{ID: fmt.Sprintf("items[%d]", i), Err: err})
			continue
		}
		if first, dup := firstAt[item.ID]; dup {
			failed = append(failed, connector.ItemError{ID: item.ID,
				Err: fmt.Errorf("items[%d] has the same id as items[%d]; only the first is kept", i, first)})
			continue
		}
		firstAt[item.ID] = i
		items = append(items, item)
	}
	return items, failed
}

func toItem(entry *gofeed.Item, feedTitle string, base *url.URL) (connector.Item, error) {
	title := strings.TrimSpace(entry.Title)
	link := resolve(base, strings.TrimSpace(entry.Link))
	published := formatTime(entry.Published, entry.PublishedParsed)
	updated := formatTime(entry.Updated, entry.UpdatedParsed)

	id := strings.TrimSpace(entry.GUID)
	switch {
	case id != "":
	case link != "":
		id = link
	case title != "" || published != "":
		id = hashOf(title, published)
	default:
		return connector.Item{}, errors.New("entry has no guid/id, link, title or published date to identify it")
	}
	version := cmp.Or(updated, published)
	if version == "" {
		version = hashOf(title, entry.Description, entry.Content)
	}

	data := Entry{
		ID:         id,
		Title:      title,
		Link:       link,
		Published:  published,
		Updated:    updated,
		Authors:    authors(entry.Authors),
		Summary:    summarize(cmp.Or(strings.TrimSpace(entry.Description), strings.TrimSpace(entry.Content))),
		Categories: nonEmpty(entry.Categories),
		FeedTitle:  feedTitle,
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return connector.Item{}, fmt.Errorf("encode entry %q: %w", id, err)
	}
	return connector.Item{ID: id, Version: version, Data: raw}, nil
}

// resolve makes link absolute against base; a link that does not parse is
// kept as the feed gave it.
func resolve(base *url.URL, link string) string {
	if link == "" {
		return ""
	}
	ref, err := url.Parse(link)
	if err != nil {
		return link
	}
	return base.ResolveReference(ref).String()
}

func formatTime(text string, parsed *time.Time) string {
	if parsed != nil && !parsed.IsZero() {
		return parsed.UTC().Format(time.RFC3339Nano)
	}
	return strings.TrimSpace(text)
}

// hashOf is "sha256:" and the hex SHA-256 of the parts, each ended by a NUL
// so that ("ab","c") and ("a","bc") differ.
func hashOf(parts ...string) string {
	h := sha256.New()
	for _, part := range parts {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hashPrefix + hex.EncodeToString(h.Sum(nil))
}

func authors(people []*gofeed.Person) []string {
	out := []string{}
	for _, p := range people {
		if p == nil {
			continue
		}
		if name := cmp.Or(strings.TrimSpace(p.Name), strings.TrimSpace(p.Email)); name != "" {
			out = append(out, name)
		}
	}
	return out
}

func nonEmpty(values []string) []string {
	out := []string{}
	for _, v := range values {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// summarize caps s at MaxSummaryRunes characters, the last being "…" when
// it was cut.
func summarize(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	runes := []rune(s)
	if len(runes) <= MaxSummaryRunes {
		return s
	}
	return string(runes[:MaxSummaryRunes-1]) + "…"
}
