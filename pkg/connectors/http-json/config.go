package httpjson

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/itchyny/gojq"

	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

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
	// With cursor_kind "time" it may be relative, as Datadog writes it:
	// "now-15m".
	InitialCursor string `json:"initial_cursor,omitempty"`
	// Items is jq on a page's body yielding the items: one array (".data")
	// or a stream of objects (".features[]"). Required.
	Items string `json:"items"`
	// ID is jq on one item yielding its id, a non-empty string or a number. Required.
	ID string `json:"id"`
	// Version is jq on one item yielding its version; default the sha256 of
	// the item's canonical JSON.
	Version string `json:"version,omitempty"`
	// Time is jq on one item yielding its time; the cursor becomes the
	// greatest over the poll's items, compared as CursorKind says. Optional.
	Time string `json:"time,omitempty"`
	// CursorKind says what Time yields and how cursors compare: "time" (RFC
	// 3339, compared as instants), "number" (compared by value) or "string"
	// (compared byte by byte). Required with Time.
	CursorKind string `json:"cursor_kind,omitempty"`
	// CursorMargin widens each request by starting it before the cursor, for
	// upstreams that index late (as the datadog-events connector does): a
	// duration ("1m") for kind time, a number ("60000") for kind number.
	// Items read twice publish nothing. Optional.
	CursorMargin string `json:"cursor_margin,omitempty"`
	// Data is jq on one item yielding the signal's data; default the item.
	Data string `json:"data,omitempty"`
	// Pagination says how to find the next page; default none.
	Pagination Pagination `json:"pagination"`
	// Conditional sends If-None-Match / If-Modified-Since on the first GET of
	// a poll; default true.
	Conditional *bool `json:"conditional,omitempty"`
	// EmitDeletes says the API answers with its whole listing (not only what
	// changed since the cursor): an item that was there and is not any more
	// is published once as deleted, when the poll read every page (not cut
	// at max_pages). Default false; never set it for an API asked for
	// changes since a cursor, where every unchanged item would look gone.
	EmitDeletes bool `json:"emit_deletes,omitempty"`
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
	c.Method = cmp.Or(c.Method, http.MethodGet)
	c.Pagination.Style = cmp.Or(c.Pagination.Style, StyleNone)
	if c.Pagination.Style != StyleNone {
		connector.SetDefault(&c.Pagination.MaxPages, DefaultMaxPages)
	}
	if c.Pagination.Style == StylePage {
		connector.SetDefault(&c.Pagination.Start, DefaultPageStart)
	}
	connector.SetDefault(&c.Conditional, true)
}

// Validate reports every problem of the config at once, compiling every jq
// expression. It does no I/O.
func (c Config) Validate() error {
	_, err := c.compile()
	return err
}

// compiled is a checked config ready to poll with.
type compiled struct {
	ex     expressions
	cursor cursorRule
}

// expressions are the compiled jq of a config; nil when not configured.
type expressions struct {
	items, id, version, time, data, next *gojq.Code
}

func (c Config) compile() (compiled, error) {
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
	rule, cursorErrs := c.cursorRule()
	errs = append(errs, cursorErrs...)

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
	return compiled{ex: ex, cursor: rule}, errors.Join(errs...)
}

func validateURL(raw string) error {
	if err := checkPlaceholders("config.url", raw); err != nil {
		return err
	}
	_, err := upstream.ParseURL("config.url", strings.ReplaceAll(raw, cursorPlaceholder, "cursor"), exampleURL)
	return err
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
