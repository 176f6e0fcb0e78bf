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
	"strconv"
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

// Config is the "config" object of a feed connector; spec describes its
// fields.
type Config struct {
	URL         string `json:"url"`
	UserAgent   string `json:"user_agent,omitempty"`
	MaxItems    *int   `json:"max_items,omitempty"`
	EmitDeletes bool   `json:"emit_deletes,omitempty"`
}

var spec = connector.Spec{
	Summary: "One RSS or Atom feed.",
	Fields: []connector.Field{
		{Name: "url", Kind: connector.String, Required: true, Hint: `write an absolute http(s) URL, e.g. "` + urlExample + `"`,
			Example: urlExample,
			Description: "The feed's absolute `http`/`https` URL. A query is kept; a `#fragment` is an error (it is never " +
				"sent). This is the whole address, so this type has no `base_url`."},
		{Name: "user_agent", Kind: connector.String, DefaultText: "pollgrid's (`pollgrid/<version> (+https://github.com/pollgrid/pollgrid)`)",
			Example:     "pollgrid (ops@example.com)",
			Description: "Sent as `User-Agent`. Some sites block unknown agents; name your app and a contact. One line, no control characters."},
		{Name: "max_items", Kind: connector.Int, Default: DefaultMaxItems, Range: connector.Between(1, maxMaxItems),
			Description: "How many entries one poll reads, in document order (feeds list the newest first). The rest are ignored."},
		connector.EmitDeletes("an entry", "A feed with more entries than `max_items` deletes nothing (the rest were not read). "+
			"Feeds that list only the newest N entries delete the oldest as new ones arrive: turn this on only when that is "+
			"what you want to hear."),
	},
}

// Spec describes the config's fields.
func (Config) Spec() connector.Spec { return spec }

// ApplyDefaults fills the fields left out.
func (c *Config) ApplyDefaults() {
	connector.SetDefault(&c.MaxItems, DefaultMaxItems)
}

// Validate reports every problem the spec cannot tell. It does no I/O.
func (c Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.URL) != "" {
		_, err := upstream.ParseURL("config.url", c.URL, urlExample)
		errs = append(errs, err)
	}
	if strings.ContainsFunc(c.UserAgent, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		errs = append(errs, errors.New(`config.user_agent: must be one line without control characters (write e.g. "pollgrid (ops@example.com)", or leave it out for the default)`))
	}
	return errors.Join(errs...)
}

// New builds a feed connector from its config. It does no I/O.
func New(raw json.RawMessage, deps connector.Deps) (connector.Connector, error) {
	return connector.Build(TypeName, raw, deps, func(cfg Config, deps connector.Deps) (connector.Connector, error) {
		header := http.Header{"Accept": {accept}}
		if cfg.UserAgent != "" {
			header.Set("User-Agent", cfg.UserAgent)
		}
		return &feedPoller{
			url:       cfg.URL,
			header:    header,
			userAgent: cfg.UserAgent,
			maxItems:  *cfg.MaxItems,
			deletes:   cfg.EmitDeletes,
			client:    upstream.Client(deps),
			logger:    deps.Logger,
		}, nil
	})
}

// feedPoller keeps only its config between polls; State carries the rest.
type feedPoller struct {
	url       string
	header    http.Header
	userAgent string
	maxItems  int
	deletes   bool
	client    *http.Client
	logger    *slog.Logger
}

// Poll fetches the feed once, conditionally; a 304 ends the poll with
// nothing to do. Cursor is not used and is passed through unchanged.
func (p *feedPoller) Poll(ctx context.Context, state connector.State) (connector.Result, error) {
	answer, err := upstream.Fetch(ctx, p.client, upstream.Request{URL: p.url, Header: p.header, Validators: state})
	if err != nil {
		return connector.Result{}, fmt.Errorf("feed: %w", err)
	}
	if answer.NotModified {
		return connector.Result{NotModified: true, State: state}, nil
	}
	parsed, err := parse(answer.Body)
	if err != nil {
		return connector.Result{}, fmt.Errorf("feed: %w%s", err, answer.ContentType())
	}
	entries := parsed.Items
	complete := p.deletes
	if len(entries) > p.maxItems {
		complete = false // the rest were not read: their absence says nothing
		p.logger.DebugContext(ctx, "feed has more entries than max_items; the rest are ignored",
			"url", upstream.ShowRawURL(p.url), "entries", len(entries), "max_items", p.maxItems)
		entries = entries[:p.maxItems]
	}
	// Relative links resolve against where the document was found (RFC 3986
	// §5.1.3), after any redirect.
	items, failed := toItems(entries, strings.TrimSpace(parsed.Title), answer.URL)
	return connector.Result{Items: items, Failed: failed, State: answer.State(state), Complete: complete}, nil
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
	// Enclosures are the media files the entry carries (a podcast's audio,
	// a video): RSS <enclosure> and Atom <link rel="enclosure">, in document
	// order; never null.
	Enclosures []Enclosure `json:"enclosures"`
	// DurationSeconds is itunes:duration ("5547", "92:27" or "1:32:27") in
	// seconds; absent when the entry has none or it does not read as one.
	DurationSeconds *int64 `json:"duration_seconds,omitempty"`
}

// Enclosure is one media file of an entry.
type Enclosure struct {
	// URL is absolute, resolved as the entry's link is.
	URL string `json:"url"`
	// Type is the MIME type the feed gives, e.g. "audio/mpeg".
	Type string `json:"type,omitempty"`
	// Length is the size in bytes the feed gives; absent when it gives none
	// or not a whole number. Feeds are known to put other numbers here.
	Length *int64 `json:"length,omitempty"`
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
		Enclosures: enclosures(base, entry.Enclosures),
	}
	if entry.ITunesExt != nil {
		data.DurationSeconds = parseDuration(entry.ITunesExt.Duration)
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return connector.Item{}, fmt.Errorf("encode entry %q: %w", id, err)
	}
	return connector.Item{ID: id, Version: version, Data: raw}, nil
}

// enclosures keeps the enclosures that have a URL, made absolute.
func enclosures(base *url.URL, in []*gofeed.Enclosure) []Enclosure {
	out := []Enclosure{}
	for _, e := range in {
		if e == nil || strings.TrimSpace(e.URL) == "" {
			continue
		}
		enclosure := Enclosure{URL: resolve(base, strings.TrimSpace(e.URL)), Type: strings.TrimSpace(e.Type)}
		if n, err := strconv.ParseInt(strings.TrimSpace(e.Length), 10, 64); err == nil && n >= 0 {
			enclosure.Length = &n
		}
		out = append(out, enclosure)
	}
	return out
}

// parseDuration reads itunes:duration: seconds, or [[h:]m:]s.
func parseDuration(text string) *int64 {
	text = strings.TrimSpace(text)
	if text == "" {
		return nil
	}
	parts := strings.Split(text, ":")
	if len(parts) > 3 {
		return nil
	}
	var seconds int64
	for _, part := range parts {
		n, err := strconv.ParseInt(part, 10, 64)
		if err != nil || n < 0 {
			return nil
		}
		seconds = seconds*60 + n
	}
	return &seconds
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
