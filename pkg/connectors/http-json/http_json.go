// Package httpjson is the declarative connector: it polls any JSON API and
// turns its answer into items with jq expressions (github.com/itchyny/gojq),
// so a new upstream needs a config entry, not Go code. Every expression is
// compiled in New, so a typo is a config error at start, never a failed poll.
package httpjson

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/big"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/itchyny/gojq"

	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

// TypeName is the connector type in connectors.json.
const TypeName = "http-json"

const (
	// DefaultMaxPages bounds how many pages one poll reads.
	DefaultMaxPages = 10
	// maxMaxPages keeps a misconfigured connector from hammering an upstream.
	maxMaxPages = 100
	// DefaultPageStart is the first page number of the "page" style.
	DefaultPageStart = 1
	// cursorPlaceholder is replaced in url and body by the stored cursor.
	cursorPlaceholder = "{{cursor}}"
	// redacted replaces header values in error texts.
	redacted = "[redacted]"
)

// Pagination styles.
const (
	StyleNone       = "none"
	StyleLinkHeader = "link_header"
	StyleNextURL    = "next_url"
	StyleCursor     = "cursor"
	StylePage       = "page"
)

var styles = []string{StyleNone, StyleLinkHeader, StyleNextURL, StyleCursor, StylePage}

var _ connector.Factory = New

// Config is the "config" object of an http-json connector.
type Config struct {
	// URL is the absolute http(s) URL of the first request. "{{cursor}}" in it
	// is replaced, query-escaped, by the stored cursor (InitialCursor on the
	// first poll). Required.
	URL string `json:"url"`
	// Method is GET (default) or POST.
	Method string `json:"method,omitempty"`
	// Body is sent with POST; "{{cursor}}" in it is replaced too (escaped for
	// a JSON string when the body is JSON, for a form when it is a form).
	Body string `json:"body,omitempty"`
	// Headers are sent on every request. Values usually come from ${VAR}:
	// they never appear in error texts.
	Headers map[string]string `json:"headers,omitempty"`
	// InitialCursor stands in for the cursor until one is stored; default "".
	InitialCursor string `json:"initial_cursor,omitempty"`
	// Items is jq on a page's body yielding the items: one array (".data")
	// or a stream of objects (".features[]"). Required.
	Items string `json:"items"`
	// ID is jq on one item yielding its id, a non-empty string or a number. Required.
	ID string `json:"id"`
	// Version is jq on one item yielding its version; default the sha256 of
	// the item's canonical JSON.
	Version string `json:"version,omitempty"`
	// Time is jq on one item yielding a sortable string or number; the
	// cursor becomes the greatest over the poll's items. Optional.
	Time string `json:"time,omitempty"`
	// Data is jq on one item yielding the signal's data; default the item.
	Data string `json:"data,omitempty"`
	// Pagination says how to find the next page; default none.
	Pagination Pagination `json:"pagination"`
	// Conditional sends If-None-Match / If-Modified-Since on the first GET of
	// a poll; default true.
	Conditional *bool `json:"conditional,omitempty"`
}

// Pagination is the "pagination" object of the config.
type Pagination struct {
	// Style is none (default), link_header, next_url, cursor or page.
	Style string `json:"style,omitempty"`
	// Next is jq on a page's body: the next URL (next_url) or token (cursor).
	// null, "" or false ends the pages.
	Next string `json:"next,omitempty"`
	// Param is the query parameter that carries the token (cursor) or the
	// page number (page).
	Param string `json:"param,omitempty"`
	// Start is the first page number of the page style; default 1.
	Start *int `json:"start,omitempty"`
	// MaxPages is the most pages one poll reads; default 10, 1..100.
	MaxPages *int `json:"max_pages,omitempty"`
}

// ApplyDefaults fills the fields left out.
func (c *Config) ApplyDefaults() {
	if c.Method == "" {
		c.Method = http.MethodGet
	}
	if c.Pagination.Style == "" {
		c.Pagination.Style = StyleNone
	}
	if c.Pagination.Style != StyleNone && c.Pagination.MaxPages == nil {
		n := DefaultMaxPages
		c.Pagination.MaxPages = &n
	}
	if c.Pagination.Style == StylePage && c.Pagination.Start == nil {
		n := DefaultPageStart
		c.Pagination.Start = &n
	}
	if c.Conditional == nil {
		yes := true
		c.Conditional = &yes
	}
}

// Validate reports every problem of the config at once, compiling every jq
// expression. It does no I/O.
func (c Config) Validate() error {
	_, err := c.compile()
	return err
}

// expressions are the compiled jq of a config; nil when not configured.
type expressions struct {
	items, id, version, time, data, next *gojq.Code
}

func (c Config) compile() (expressions, error) {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(validateURL(c.URL))
	switch c.Method {
	case http.MethodGet:
		if c.Body != "" {
			add(errors.New(`config.body: only sent with POST (set "method": "POST", or remove body)`))
		}
	case http.MethodPost:
	default:
		add(fmt.Errorf(`config.method: %q is not supported (write "GET" or "POST")`, c.Method))
	}
	add(checkPlaceholders("config.body", c.Body))
	add(validateHeaders(c.Headers))
	if c.InitialCursor != "" && !strings.Contains(c.URL, cursorPlaceholder) && !strings.Contains(c.Body, cursorPlaceholder) {
		add(errors.New("config.initial_cursor: has no effect: neither url nor body contains {{cursor}}"))
	}

	var ex expressions
	compileField := func(field, src string, required bool, example string) *gojq.Code {
		if strings.TrimSpace(src) == "" {
			if required {
				add(fmt.Errorf("config.%s: required: a jq expression (e.g. %s)", field, example))
			}
			return nil
		}
		code, err := compileJQ(src)
		if err != nil {
			add(fmt.Errorf("config.%s: jq %q: %w", field, src, err))
		}
		return code
	}
	ex.items = compileField("items", c.Items, true, `".features[]" or ".data"`)
	ex.id = compileField("id", c.ID, true, `".id"`)
	ex.version = compileField("version", c.Version, false, "")
	ex.time = compileField("time", c.Time, false, "")
	ex.data = compileField("data", c.Data, false, "")

	p := c.Pagination
	if !slices.Contains(styles, p.Style) {
		add(fmt.Errorf("config.pagination.style: %q is not a style (write one of %s)", p.Style, strings.Join(styles, ", ")))
	}
	needsNext := p.Style == StyleNextURL || p.Style == StyleCursor
	needsParam := p.Style == StyleCursor || p.Style == StylePage
	switch {
	case needsNext:
		ex.next = compileField("pagination.next", p.Next, true, map[string]string{
			StyleNextURL: `".pagination.next"`, StyleCursor: `".response_metadata.next_cursor"`}[p.Style])
	case p.Next != "":
		add(fmt.Errorf("config.pagination.next: only used with style next_url or cursor (style is %q; remove next)", p.Style))
	}
	switch {
	case needsParam && strings.TrimSpace(p.Param) == "":
		add(fmt.Errorf(`config.pagination.param: required with style %s: the query parameter to set (e.g. "cursor" or "page")`, p.Style))
	case !needsParam && p.Param != "":
		add(fmt.Errorf("config.pagination.param: only used with style cursor or page (style is %q; remove param)", p.Style))
	}
	if p.Start != nil && p.Style != StylePage {
		add(fmt.Errorf("config.pagination.start: only used with style page (style is %q; remove start)", p.Style))
	}
	if p.Start != nil && *p.Start < 0 {
		add(fmt.Errorf("config.pagination.start: %d is negative (write the upstream's first page number, usually 1 or 0)", *p.Start))
	}
	if p.MaxPages != nil {
		switch {
		case p.Style == StyleNone:
			add(errors.New("config.pagination.max_pages: has no effect without a pagination style (set pagination.style, or remove max_pages)"))
		case *p.MaxPages < 1 || *p.MaxPages > maxMaxPages:
			add(fmt.Errorf("config.pagination.max_pages: %d is out of range (write a number from 1 to %d; default %d)",
				*p.MaxPages, maxMaxPages, DefaultMaxPages))
		}
	}
	return ex, errors.Join(errs...)
}

// compileJQ parses and compiles one expression. Environment variables are
// not visible to it ($ENV and env are empty): they hold the secrets.
func compileJQ(src string) (*gojq.Code, error) {
	q, err := gojq.Parse(src)
	if err != nil {
		return nil, err
	}
	return gojq.Compile(q, gojq.WithEnvironLoader(func() []string { return nil }))
}

func validateURL(raw string) error {
	if strings.TrimSpace(raw) == "" {
		return errors.New(`config.url: required: the absolute http(s) URL to poll (e.g. "https://api.example.com/v1/items")`)
	}
	if err := checkPlaceholders("config.url", raw); err != nil {
		return err
	}
	u, err := url.Parse(strings.ReplaceAll(raw, cursorPlaceholder, "cursor"))
	if err != nil {
		return errors.New(`config.url: cannot be parsed as a URL (write an absolute http(s) URL such as "https://api.example.com/v1/items")`)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf(`config.url: %q is not an absolute http(s) URL (write e.g. "https://api.example.com/v1/items")`, describeURL(u))
	}
	if u.Fragment != "" {
		return fmt.Errorf("config.url: %q has a #fragment, which is never sent (remove it)", describeURL(u))
	}
	return nil
}

var placeholderPattern = regexp.MustCompile(`\{\{\s*[A-Za-z_][A-Za-z0-9_]*\s*\}\}`)

// checkPlaceholders catches "{{ cursor }}" or "{{since}}", which would be
// sent to the upstream as they are.
func checkPlaceholders(field, s string) error {
	for _, m := range placeholderPattern.FindAllString(s, -1) {
		if m != cursorPlaceholder {
			return fmt.Errorf("config%s: %s is not a placeholder (the only one is %s, written without spaces)",
				strings.TrimPrefix(field, "config"), m, cursorPlaceholder)
		}
	}
	return nil
}

// headerNamePattern is RFC 9110's token.
var headerNamePattern = regexp.MustCompile("^[!#$%&'*+\\-.^_`|~0-9A-Za-z]+$")

// validateHeaders checks names and values without ever echoing a value.
func validateHeaders(h map[string]string) error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(h)) {
		value := h[name]
		switch {
		case !headerNamePattern.MatchString(name):
			errs = append(errs, fmt.Errorf("config.headers: %q is not a header name (letters, digits and -, no spaces or colons)", name))
		case strings.EqualFold(name, "Host") || strings.EqualFold(name, "Content-Length"):
			errs = append(errs, fmt.Errorf("config.headers.%s: set by the HTTP client, not by config (remove it; put the host in url)", name))
		case strings.TrimSpace(value) == "":
			errs = append(errs, fmt.Errorf("config.headers.%s: empty (is the ${VAR} it names set in the environment?)", name))
		case strings.ContainsAny(value, "\r\n\x00"):
			errs = append(errs, fmt.Errorf("config.headers.%s: the value must be one line (it contains a line break or NUL)", name))
		}
	}
	return errors.Join(errs...)
}

// New builds an http-json connector from its config. It does no I/O.
func New(raw json.RawMessage, deps connector.Deps) (connector.Connector, error) {
	cfg, err := connector.DecodeConfig[Config](raw)
	if err != nil {
		return nil, err
	}
	cfg.ApplyDefaults()
	ex, err := cfg.compile()
	if err != nil {
		return nil, err
	}
	client := deps.HTTP
	if client == nil {
		client = upstream.NewClient(upstream.Options{})
	}
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	headers := http.Header{}
	var secrets []string
	for _, name := range slices.Sorted(maps.Keys(cfg.Headers)) {
		value := cfg.Headers[name]
		headers.Set(name, value)
		switch http.CanonicalHeaderKey(name) {
		case "Accept", "Content-Type", "User-Agent":
			continue
		}
		secrets = appendSecret(secrets, value)
		if _, token, ok := strings.Cut(strings.TrimSpace(value), " "); ok {
			// "Bearer abc": the token alone is the secret too.
			secrets = appendSecret(secrets, strings.TrimSpace(token))
		}
	}
	if headers.Get("Accept") == "" {
		headers.Set("Accept", "application/json")
	}
	if cfg.Method == http.MethodPost && cfg.Body != "" && headers.Get("Content-Type") == "" {
		headers.Set("Content-Type", "application/json")
	}
	p := &poller{
		urlTemplate:   cfg.URL,
		method:        cfg.Method,
		bodyTemplate:  cfg.Body,
		headers:       headers,
		secrets:       secrets,
		initialCursor: cfg.InitialCursor,
		ex:            ex,
		style:         cfg.Pagination.Style,
		param:         cfg.Pagination.Param,
		maxPages:      1,
		conditional:   *cfg.Conditional && cfg.Method == http.MethodGet,
		client:        client,
		logger:        logger.With("connector_type", TypeName),
	}
	if cfg.Pagination.MaxPages != nil {
		p.maxPages = *cfg.Pagination.MaxPages
	}
	if cfg.Pagination.Start != nil {
		p.start = *cfg.Pagination.Start
	}
	return p, nil
}

func appendSecret(secrets []string, s string) []string {
	// Shorter strings are not secrets, and redacting them would garble errors.
	if len(s) >= 4 && !slices.Contains(secrets, s) {
		secrets = append(secrets, s)
	}
	return secrets
}

// poller keeps only its config between polls; State carries the rest.
type poller struct {
	urlTemplate   string
	method        string
	bodyTemplate  string
	headers       http.Header
	secrets       []string
	initialCursor string
	ex            expressions
	style         string
	param         string
	start         int
	maxPages      int
	conditional   bool
	client        *http.Client
	logger        *slog.Logger
}

// Poll reads up to maxPages pages. Only the first request is conditional;
// its 304 ends the poll with nothing to do.
func (p *poller) Poll(ctx context.Context, state connector.State) (connector.Result, error) {
	res, err := p.poll(ctx, state)
	if err != nil {
		return connector.Result{}, p.redact(err)
	}
	for i := range res.Failed {
		res.Failed[i].Err = p.redact(res.Failed[i].Err)
	}
	return res, nil
}

func (p *poller) poll(ctx context.Context, state connector.State) (connector.Result, error) {
	cursor := state.Cursor
	if cursor == "" {
		cursor = p.initialCursor
	}
	firstURL, err := url.Parse(strings.ReplaceAll(p.urlTemplate, cursorPlaceholder, url.QueryEscape(cursor)))
	if err != nil {
		return connector.Result{}, fmt.Errorf("http-json: url with the cursor %q is not a URL: %w", cursor, stripURL(err))
	}
	origin := firstURL.Scheme + "://" + firstURL.Host
	body := p.expandBody(cursor)

	result := connector.Result{State: connector.State{Cursor: state.Cursor}}
	var newest any // the greatest time over the items
	position := 0
	seen := map[string]bool{}
	pageURL := firstURL
	if p.style == StylePage {
		pageURL = withQueryParam(firstURL, p.param, strconv.Itoa(p.start))
	}
	for page := 1; ; page++ {
		prefix := fmt.Sprintf("http-json %s %s", p.method, describeURL(pageURL))
		if page > 1 {
			prefix += fmt.Sprintf(" (page %d)", page)
		}
		resp, err := p.fetch(ctx, pageURL, body, page == 1, state)
		if err != nil {
			return connector.Result{}, fmt.Errorf("%s: %w", prefix, err)
		}
		if resp.notModified {
			// A 304 may carry a fresher ETag; the cursor stays.
			return connector.Result{NotModified: true, State: upstream.Validators(resp.resp, state)}, nil
		}
		if page == 1 && p.conditional {
			result.State = upstream.Validators(resp.resp, result.State)
		}
		values, err := p.runItems(ctx, resp.doc)
		if err != nil {
			return connector.Result{}, fmt.Errorf("%s: %w", prefix, err)
		}
		for _, v := range values {
			item, t, itemErr := p.toItem(ctx, v, position)
			if ctx.Err() != nil {
				return connector.Result{}, fmt.Errorf("%s: %w", prefix, ctx.Err())
			}
			position++
			if itemErr != nil {
				result.Failed = append(result.Failed, *itemErr)
				continue
			}
			result.Items = append(result.Items, item)
			if t != nil && (newest == nil || gojq.Compare(t, newest) > 0) {
				newest = t
			}
		}
		seen[pageURL.String()] = true

		next, err := p.nextURL(ctx, resp, firstURL, pageURL, page, len(values))
		if err != nil {
			return connector.Result{}, fmt.Errorf("%s: %w", prefix, err)
		}
		if next == nil {
			break
		}
		if nextOrigin := next.Scheme + "://" + next.Host; !strings.EqualFold(nextOrigin, origin) {
			return connector.Result{}, fmt.Errorf("%s: pagination: the next page is on %s, not on %s; refusing to follow it, "+
				"so the configured headers never go to another host (point url at the host the upstream links to)",
				prefix, nextOrigin, origin)
		}
		if seen[next.String()] {
			// A next link that points back would repeat the same items forever.
			p.logger.WarnContext(ctx, "http-json: the next page is one already read; stopping", "page", page, "next", describeURL(next))
			break
		}
		if page >= p.maxPages {
			p.logger.WarnContext(ctx, "http-json: more pages than pagination.max_pages; the rest are left for a later poll",
				"max_pages", p.maxPages, "items", len(result.Items))
			break
		}
		pageURL = next
	}
	if newest != nil {
		// Compared with initial_cursor too: it is a floor, like a stored cursor.
		result.State.Cursor = laterCursor(cursor, newest)
	}
	return result, nil
}

// expandBody fills {{cursor}} in the body, escaped for what the body is.
func (p *poller) expandBody(cursor string) string {
	if !strings.Contains(p.bodyTemplate, cursorPlaceholder) {
		return p.bodyTemplate
	}
	contentType := strings.ToLower(p.headers.Get("Content-Type"))
	escaped := cursor
	switch {
	case strings.Contains(contentType, "x-www-form-urlencoded"):
		escaped = url.QueryEscape(cursor)
	case strings.Contains(contentType, "json"):
		quoted, _ := json.Marshal(cursor)
		escaped = string(quoted[1 : len(quoted)-1])
	}
	return strings.ReplaceAll(p.bodyTemplate, cursorPlaceholder, escaped)
}

type page struct {
	notModified bool
	resp        *http.Response // its body is closed; for the headers
	doc         any
}

func (p *poller) fetch(ctx context.Context, pageURL *url.URL, body string, first bool, state connector.State) (page, error) {
	var bodyReader io.Reader
	if p.method == http.MethodPost {
		bodyReader = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, p.method, pageURL.String(), bodyReader)
	if err != nil {
		return page{}, fmt.Errorf("build request: %w", stripURL(err))
	}
	for name, values := range p.headers {
		req.Header[name] = values
	}
	sentConditional := first && p.conditional && (state.ETag != "" || state.LastModified != "")
	if first && p.conditional {
		upstream.Conditional(req, state)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return page{}, ctx.Err()
		}
		return page{}, stripURL(err)
	}
	defer resp.Body.Close()
	if err := upstream.CheckStatus(resp); err != nil {
		if ctx.Err() != nil {
			return page{}, ctx.Err()
		}
		return page{}, err
	}
	if resp.StatusCode == http.StatusNotModified {
		if sentConditional {
			return page{notModified: true, resp: resp}, nil
		}
		return page{}, errors.New("upstream answered 304 Not Modified to a request that was not conditional")
	}
	raw, err := upstream.ReadBody(resp)
	if err != nil {
		if ctx.Err() != nil {
			return page{}, ctx.Err()
		}
		return page{}, err
	}
	doc, err := decode(raw)
	if err != nil {
		if ct := resp.Header.Get("Content-Type"); ct != "" {
			err = fmt.Errorf("%w (Content-Type %q)", err, ct)
		}
		return page{}, err
	}
	return page{resp: resp, doc: doc}, nil
}

// decode checks the body with the shared rules (UTF-8, nesting depth, valid
// JSON), then decodes numbers as json.Number: ids and times keep every digit
// (a float64 would round a 64-bit id).
func decode(raw []byte) (any, error) {
	var valid json.RawMessage
	if err := upstream.DecodeJSON(raw, &valid); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(valid))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("response is not JSON: %w", err)
	}
	return doc, nil
}

// stripURL drops the *url.Error wrapper, whose text carries the whole URL
// (and so any key in its query); the prefix names the URL without its query.
func stripURL(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

// runItems runs the items expression: an array contributes its elements,
// an object is one item; anything else fails the poll.
func (p *poller) runItems(ctx context.Context, doc any) ([]any, error) {
	var items []any
	iter := p.ex.items.RunWithContext(ctx, doc)
	for n := 0; ; n++ {
		v, ok := iter.Next()
		if !ok {
			return items, nil
		}
		switch v := v.(type) {
		case error:
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if halt, ok := v.(*gojq.HaltError); ok && halt.Value() == nil {
				return items, nil
			}
			return nil, fmt.Errorf("items: jq: %w", v)
		case []any:
			items = append(items, v...)
		case map[string]any:
			items = append(items, v)
		default:
			return nil, fmt.Errorf("items: output %d is %s, not an array or an object (check the expression against the response; "+
				"to let an odd element fail alone, yield the array itself, e.g. \".features\" instead of \".features[]\")",
				n, describeValue(v))
		}
	}
}

// toItem runs the per-item expressions. The returned time is nil when the
// item has none. An ItemError is named by the item's id when it could be
// read, else by its position across the poll's pages.
func (p *poller) toItem(ctx context.Context, v any, position int) (connector.Item, any, *connector.ItemError) {
	where := fmt.Sprintf("items[%d]", position)
	fail := func(id string, err error) (connector.Item, any, *connector.ItemError) {
		if id == "" {
			id = where
		}
		return connector.Item{}, nil, &connector.ItemError{ID: id, Err: err}
	}
	idValue, err := runOne(ctx, p.ex.id, v)
	if err != nil {
		return fail("", fmt.Errorf("id: %w", err))
	}
	id, err := scalarText(idValue)
	if err != nil {
		return fail("", fmt.Errorf("id: %w", err))
	}

	var version string
	if p.ex.version == nil {
		version = hashJSON(v)
	} else {
		versionValue, err := runOne(ctx, p.ex.version, v)
		if err != nil {
			return fail(id, fmt.Errorf("%s: version: %w", where, err))
		}
		switch versionValue.(type) {
		case string, json.Number, int, float64, *big.Int, nil:
			if version, err = scalarText(versionValue); err != nil {
				return fail(id, fmt.Errorf("%s: version: %w", where, err))
			}
		default:
			// An object or array (".properties | {updated, status}"): its hash.
			version = hashJSON(versionValue)
		}
	}

	var t any
	if p.ex.time != nil {
		timeValue, err := runOne(ctx, p.ex.time, v)
		switch {
		case errors.Is(err, errNoOutput):
		case err != nil:
			return fail(id, fmt.Errorf("%s: time: %w", where, err))
		default:
			switch tv := timeValue.(type) {
			case nil:
			case string:
				if tv != "" {
					t = tv
				}
			case json.Number, int, float64, *big.Int:
				t = tv
			default:
				return fail(id, fmt.Errorf("%s: time: yields %s; want a sortable string or number", where, describeValue(tv)))
			}
		}
	}

	data := v
	if p.ex.data != nil {
		if data, err = runOne(ctx, p.ex.data, v); err != nil {
			return fail(id, fmt.Errorf("%s: data: %w", where, err))
		}
	}
	encoded, err := gojq.Marshal(data)
	if err != nil {
		return fail(id, fmt.Errorf("%s: data: %w", where, err))
	}
	return connector.Item{ID: id, Version: version, Data: encoded}, t, nil
}

var errNoOutput = errors.New("yields nothing (jq's empty)")

// runOne runs a per-item expression that must yield exactly one value.
func runOne(ctx context.Context, code *gojq.Code, v any) (any, error) {
	iter := code.RunWithContext(ctx, v)
	first, ok := iter.Next()
	if !ok {
		return nil, errNoOutput
	}
	if err, isErr := first.(error); isErr {
		if halt, ok := err.(*gojq.HaltError); ok && halt.Value() == nil {
			return nil, errNoOutput
		}
		return nil, fmt.Errorf("jq: %w", err)
	}
	if second, more := iter.Next(); more {
		if err, isErr := second.(error); isErr {
			if halt, ok := err.(*gojq.HaltError); !ok || halt.Value() != nil {
				return nil, fmt.Errorf("jq: %w", err)
			}
		} else {
			return nil, errors.New("yields more than one value (pick one, e.g. first(...), or collect them with [...])")
		}
	}
	return first, nil
}

// scalarText is an id or version as text: a non-empty string, or a number
// written as jq writes it (the same as jq's tostring).
func scalarText(v any) (string, error) {
	switch v := v.(type) {
	case string:
		if v == "" {
			return "", errors.New("yields an empty string")
		}
		return v, nil
	case json.Number, int, float64, *big.Int:
		b, err := gojq.Marshal(v)
		return string(b), err
	default:
		return "", fmt.Errorf("yields %s; want a non-empty string or a number", describeValue(v))
	}
}

// hashJSON is the sha256 of v's canonical JSON: object keys sorted, no
// spaces, numbers as the upstream wrote them.
func hashJSON(v any) string {
	b, _ := gojq.Marshal(v)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func describeValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return fmt.Sprintf("a boolean (%t)", v)
	case string:
		return "a string"
	case json.Number, int, float64, *big.Int:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	default:
		return fmt.Sprintf("a %T", v)
	}
}

// laterCursor is the new cursor: the newest item time, unless the stored
// cursor is of the same kind and later (the cursor never moves back).
func laterCursor(stored string, newest any) string {
	text, _ := scalarText(newest)
	if stored == "" {
		return text
	}
	var old any = stored
	if _, isString := newest.(string); !isString {
		n := json.Number(stored)
		if _, err := n.Float64(); err != nil {
			return text // the stored cursor is not a number: the config changed
		}
		old = n
	}
	if gojq.Compare(old, newest) > 0 {
		return stored
	}
	return text
}

// nextURL finds the next page by the configured style; nil when there is none.
func (p *poller) nextURL(ctx context.Context, resp page, firstURL, pageURL *url.URL, pageIndex, items int) (*url.URL, error) {
	switch p.style {
	case StyleLinkHeader:
		next := linkNext(resp.resp.Header.Values("Link"))
		if next == "" {
			return nil, nil
		}
		return resolve(pageURL, next, "Link rel=\"next\"")
	case StyleNextURL:
		v, err := p.runNext(ctx, resp.doc)
		if err != nil || v == "" {
			return nil, err
		}
		return resolve(pageURL, v, "pagination.next")
	case StyleCursor:
		v, err := p.runNext(ctx, resp.doc)
		if err != nil || v == "" {
			return nil, err
		}
		return withQueryParam(firstURL, p.param, v), nil
	case StylePage:
		if items == 0 {
			return nil, nil
		}
		// Page pageIndex (from 1) had number start+pageIndex-1.
		return withQueryParam(firstURL, p.param, strconv.Itoa(p.start+pageIndex)), nil
	default:
		return nil, nil
	}
}

// runNext runs pagination.next: null, "", false or no output end the pages.
func (p *poller) runNext(ctx context.Context, doc any) (string, error) {
	v, err := runOne(ctx, p.ex.next, doc)
	if errors.Is(err, errNoOutput) {
		return "", nil
	}
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("pagination.next: %w", err)
	}
	switch v := v.(type) {
	case nil:
		return "", nil
	case bool:
		if !v {
			return "", nil
		}
	case string:
		return v, nil
	case json.Number, int, float64, *big.Int:
		if p.style == StyleCursor {
			return scalarText(v)
		}
	}
	return "", fmt.Errorf("pagination.next: yields %s; want a %s, or null when there is no next page", describeValue(v),
		map[string]string{StyleNextURL: "URL string", StyleCursor: "token (string or number)"}[p.style])
}

func resolve(base *url.URL, ref, what string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(ref))
	if err != nil {
		return nil, fmt.Errorf("pagination: %s is not a URL", what)
	}
	u = base.ResolveReference(u)
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("pagination: %s is not an http(s) URL", what)
	}
	return u, nil
}

// withQueryParam returns u with name=value, replacing any value name had.
// The rest of the query is kept byte for byte (url.Values would re-encode
// and reorder it).
func withQueryParam(u *url.URL, name, value string) *url.URL {
	out := *u
	var kept []string
	if u.RawQuery != "" {
		for _, part := range strings.Split(u.RawQuery, "&") {
			key, _, _ := strings.Cut(part, "=")
			if unescaped, err := url.QueryUnescape(key); err == nil && unescaped == name {
				continue
			}
			kept = append(kept, part)
		}
	}
	kept = append(kept, url.QueryEscape(name)+"="+url.QueryEscape(value))
	out.RawQuery = strings.Join(kept, "&")
	out.ForceQuery = false
	return &out
}

// linkNext returns the target of the first rel="next" link of RFC 8288 Link
// header values, or "".
func linkNext(values []string) string {
	for _, header := range values {
		s := header
		for {
			start := strings.IndexByte(s, '<')
			if start < 0 {
				break
			}
			end := strings.IndexByte(s[start:], '>')
			if end < 0 {
				break
			}
			target := s[start+1 : start+end]
			s = s[start+end+1:]
			params, rest := splitLinkParams(s)
			s = rest
			for _, param := range params {
				name, value, _ := strings.Cut(param, "=")
				if !strings.EqualFold(strings.TrimSpace(name), "rel") {
					continue
				}
				value = strings.Trim(strings.TrimSpace(value), `"`)
				for _, rel := range strings.Fields(value) {
					if strings.EqualFold(rel, "next") {
						return target
					}
				}
			}
		}
	}
	return ""
}

// splitLinkParams reads ";name=value" parameters up to the comma that ends
// the link-value, minding quoted strings (which may hold ',' and ';').
func splitLinkParams(s string) ([]string, string) {
	var params []string
	var current strings.Builder
	inQuote, escaped := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case escaped:
			escaped = false
			current.WriteByte(c)
		case inQuote && c == '\\':
			escaped = true
		case c == '"':
			inQuote = !inQuote
			current.WriteByte(c)
		case !inQuote && c == ';':
			if p := strings.TrimSpace(current.String()); p != "" {
				params = append(params, p)
			}
			current.Reset()
		case !inQuote && c == ',':
			if p := strings.TrimSpace(current.String()); p != "" {
				params = append(params, p)
			}
			return params, s[i+1:]
		default:
			current.WriteByte(c)
		}
	}
	if p := strings.TrimSpace(current.String()); p != "" {
		params = append(params, p)
	}
	return params, ""
}

// describeURL names a URL in error texts: scheme, host and path. The query
// is left out (it may carry an API key) and a password is masked.
func describeURL(u *url.URL) string {
	c := *u
	if c.RawQuery != "" || c.ForceQuery {
		c.RawQuery, c.ForceQuery = "", false
		return c.Redacted() + "?…"
	}
	return c.Redacted()
}

// redactedError hides header values the upstream may echo (a 401 body that
// quotes the token) while keeping the chain for errors.Is / errors.As.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

func (p *poller) redact(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	changed := false
	for _, s := range p.secrets {
		if strings.Contains(msg, s) {
			msg = strings.ReplaceAll(msg, s, redacted)
			changed = true
		}
	}
	if !changed {
		return err
	}
	return &redactedError{msg: msg, err: err}
}
