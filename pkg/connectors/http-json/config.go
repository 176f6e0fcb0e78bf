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

	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

// Config is the "config" object of an http-json connector; spec describes
// its fields.
type Config struct {
	URL           string            `json:"url"`
	Method        string            `json:"method,omitempty"`
	Body          string            `json:"body,omitempty"`
	Headers       map[string]string `json:"headers,omitempty"`
	InitialCursor string            `json:"initial_cursor,omitempty"`
	Items         string            `json:"items"`
	ID            string            `json:"id"`
	Version       string            `json:"version,omitempty"`
	Time          string            `json:"time,omitempty"`
	CursorKind    string            `json:"cursor_kind,omitempty"`
	CursorMargin  string            `json:"cursor_margin,omitempty"`
	Data          string            `json:"data,omitempty"`
	Pagination    Pagination        `json:"pagination"`
	Conditional   *bool             `json:"conditional,omitempty"`
	EmitDeletes   bool              `json:"emit_deletes,omitempty"`
}

// Pagination is the "pagination" object of the config.
type Pagination struct {
	Style    string `json:"style,omitempty"`
	Next     string `json:"next,omitempty"`
	Param    string `json:"param,omitempty"`
	Start    *int   `json:"start,omitempty"`
	MaxPages *int   `json:"max_pages,omitempty"`
}

var spec = connector.Spec{
	Summary: "Any JSON API over HTTP, read with jq expressions: zero Go.",
	Fields: []connector.Field{
		{Name: "url", Kind: connector.String, Required: true, Hint: `write an absolute http(s) URL, e.g. "` + exampleURL + `"`,
			Example: exampleURL + "?since={{cursor}}",
			Description: "Absolute `http`/`https` URL of the first request. `{{cursor}}` in it is replaced by the stored cursor, " +
				"query-escaped. On the first poll, when nothing is stored yet, `initial_cursor` is used instead. Any other " +
				"`{{name}}` is an error, and so is `{{ cursor }}` with spaces."},
		{Name: "method", Kind: connector.String, Enum: []string{http.MethodGet, http.MethodPost}, Default: http.MethodGet,
			Description: "The HTTP method, in capitals."},
		{Name: "body", Kind: connector.String,
			Description: "The body sent with POST, which may contain `{{cursor}}`. The cursor is escaped for a JSON string when " +
				"the Content-Type is JSON, and with query escaping when it is `application/x-www-form-urlencoded`. For any " +
				"other Content-Type it is inserted as is. Setting `body` with GET is an error."},
		{Name: "headers", Kind: connector.Map, Example: map[string]string{"Authorization": "Bearer ${API_TOKEN}"},
			Description: "Headers sent on every request. Write secrets as `\"${VAR}\"`. A value is never repeated in an error " +
				"(see Auth). `Accept` defaults to `application/json`. For a POST with a body, `Content-Type` defaults to " +
				"`application/json`. `Host` and `Content-Length` cannot be set."},
		{Name: "initial_cursor", Kind: connector.String, Default: "",
			Description: "Stands in for the cursor until one is stored. It is an error when neither `url` nor `body` contains " +
				"`{{cursor}}`, or when it does not read as `cursor_kind` says. With kind `time` it may be relative, as " +
				"Datadog writes it: `\"now\"` or `\"now-<n><s|m|h|d|w>\"` (`\"now-15m\"`)."},
		{Name: "items", Kind: connector.String, Required: true, Hint: `a jq expression (e.g. ".features[]" or ".data")`, Example: ".features[]",
			Description: "jq on a page's body, yielding the items. An **array** adds its elements, for example `.data`. A stream " +
				"of **objects** adds each object, for example `.features[]`. Any other output fails the poll, and so does a jq error."},
		{Name: "id", Kind: connector.String, Required: true, Hint: `a jq expression (e.g. ".id")`, Example: ".id",
			Description: "jq on one item, yielding its id: a non-empty string, or a number written as jq writes it (`.number` " +
				"and `.number|tostring` give the same id)."},
		{Name: "version", Kind: connector.String, DefaultText: "sha256 of the item",
			Description: "jq on one item. A string or number is used as is. An object or array is hashed, so `{updated, status}` " +
				"works. **Default**: the hex sha256 of the item's canonical JSON, meaning object keys sorted, no whitespace, " +
				"and numbers exactly as the upstream wrote them. Any change to the item is then a new version. Key order and " +
				"whitespace do not count."},
		{Name: "time", Kind: connector.String,
			Description: "jq on one item, yielding its time: what `cursor_kind` says. It moves the cursor; see Cursor."},
		{Name: "cursor_kind", Kind: connector.String, Enum: cursorKinds, DefaultText: "required with `time`",
			Description: "How item times and cursors compare: `\"time\"` (RFC 3339 times, any offset, compared as instants), " +
				"`\"number\"` (compared by value, every digit kept) or `\"string\"` (compared byte by byte). An error without `time`."},
		{Name: "cursor_margin", Kind: connector.String,
			Description: "Start each request this much before the cursor, for upstreams that make items visible a little after " +
				"their time (as `datadog-events` does with one minute): a duration (`\"1m\"`) with kind `time`, a number " +
				"(`\"60000\"`) with kind `number`; not allowed with `string`. Items read twice publish nothing."},
		{Name: "data", Kind: connector.String, DefaultText: "the item",
			Description: "jq on one item, yielding the signal's `data`. Prefer a small snake_case object that includes the " +
				"upstream's URL for humans."},
		{Name: "pagination", Kind: connector.Object, Description: "How to find the next page.", Fields: []connector.Field{
			{Name: "style", Kind: connector.String, Enum: styles, Default: StyleNone,
				Description: "Where the next page comes from; see Pagination."},
			{Name: "next", Kind: connector.String,
				Description: "Required for `next_url` and `cursor`. It is jq on a page's body that yields the next URL or " +
					"token. `null`, `\"\"`, `false` or no output ends the pages."},
			{Name: "param", Kind: connector.String,
				Description: "Required for `cursor` and `page`: the query parameter to set."},
			{Name: "start", Kind: connector.Int, Range: connector.AtLeast(0), Default: DefaultPageStart,
				Description: "`page` only: the number of the first page."},
			connector.MaxPages(DefaultMaxPages, maxMaxPages, "It is an error with style `none`."),
		}},
		{Name: "conditional", Kind: connector.Bool, Default: true,
			Description: "Send `If-None-Match` / `If-Modified-Since` from the stored validators on the first request of a poll. " +
				"This applies to **GET only**, because a POST is never conditional. With `false`, no validators are sent or kept."},
		connector.EmitDeletes("an item", "Set it only when the API answers with its **whole listing** every time; never "+
			"for an API asked for what changed since `{{cursor}}`: every unchanged item would look gone."),
	},
}

// Spec describes the config's fields.
func (Config) Spec() connector.Spec { return spec }

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

// Validate reports every problem the spec cannot tell, compiling every jq
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
	items, id, version, time, data, next *jq
}

func (c Config) compile() (compiled, error) {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if strings.TrimSpace(c.URL) != "" {
		add(validateURL(c.URL))
	}
	if c.Method == http.MethodGet && c.Body != "" {
		add(errors.New(`config.body: only sent with POST (set "method": "POST", or remove body)`))
	}
	add(checkPlaceholders("config.body", c.Body))
	add(validateHeaders(c.Headers))
	if c.InitialCursor != "" && !strings.Contains(c.URL, cursorPlaceholder) && !strings.Contains(c.Body, cursorPlaceholder) {
		add(errors.New("config.initial_cursor: has no effect: neither url nor body contains {{cursor}}"))
	}

	var ex expressions
	// A field the spec requires (items, id) is reported there when empty;
	// example is given for the one only the style requires.
	compileField := func(field, src string, example string) *jq {
		if strings.TrimSpace(src) == "" {
			if example != "" {
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
	ex.items = compileField("items", c.Items, "")
	ex.id = compileField("id", c.ID, "")
	ex.version = compileField("version", c.Version, "")
	ex.time = compileField("time", c.Time, "")
	ex.data = compileField("data", c.Data, "")
	rule, cursorErrs := c.cursorRule()
	errs = append(errs, cursorErrs...)

	p := c.Pagination
	needsNext := p.Style == StyleNextURL || p.Style == StyleCursor
	needsParam := p.Style == StyleCursor || p.Style == StylePage
	switch {
	case needsNext:
		ex.next = compileField("pagination.next", p.Next, map[string]string{
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
	if p.MaxPages != nil && p.Style == StyleNone {
		add(errors.New("config.pagination.max_pages: has no effect without a pagination style (set pagination.style, or remove max_pages)"))
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
