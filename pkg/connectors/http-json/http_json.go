// Package httpjson is the declarative connector: it polls any JSON API and
// turns its answer into items with jq expressions (github.com/itchyny/gojq),
// so a new upstream needs a config entry, not Go code. Every expression is
// compiled in New, so a typo is a config error at start, never a failed poll.
//
// One concern per file: config.go (the config and its checks), jq.go (the
// expressions run on a page and its items), cursor.go (cursor kinds and the
// margin), pagination.go (finding the next page), poll.go (a poll, its
// requests and what its errors may show).
package httpjson

import (
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

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
	// exampleURL is what the error texts suggest.
	exampleURL = "https://api.example.com/v1/items"
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

// New builds an http-json connector from its config. It does no I/O.
func New(raw json.RawMessage, deps connector.Deps) (connector.Connector, error) {
	return connector.Build(TypeName, raw, deps, build)
}

// build makes the poller from a checked config; the compile Validate did
// runs again, to keep the compiled expressions.
func build(cfg Config, deps connector.Deps) (connector.Connector, error) {
	checked, err := cfg.compile()
	if err != nil {
		return nil, err
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
	var key strings.Builder
	_ = headers.Write(&key) // sorted, one line per value: what the set is
	sharedHeaders, _ := headerSets.get(key.String(), func() (*http.Header, error) { return &headers, nil })
	p := &poller{
		urlTemplate:   cfg.URL,
		method:        cfg.Method,
		bodyTemplate:  cfg.Body,
		headers:       sharedHeaders,
		secrets:       secrets,
		initialCursor: cfg.InitialCursor,
		ex:            checked.ex,
		cursor:        checked.cursor,
		style:         cfg.Pagination.Style,
		param:         cfg.Pagination.Param,
		maxPages:      1,
		conditional:   *cfg.Conditional && cfg.Method == http.MethodGet,
		deletes:       cfg.EmitDeletes,
		client:        upstream.Client(deps),
		logger:        deps.Logger,
		now:           time.Now,
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

// headerSets shares the headers of connectors that send the same ones
// (nearly all of a template's); they are only read.
var headerSets shared[http.Header]

// poller keeps only its config between polls; State carries the rest.
type poller struct {
	urlTemplate   string
	method        string
	bodyTemplate  string
	headers       *http.Header // shared: only read
	secrets       []string
	initialCursor string
	ex            expressions
	cursor        cursorRule
	style         string
	param         string
	start         int
	maxPages      int
	conditional   bool
	deletes       bool
	client        *http.Client
	logger        *slog.Logger
	now           func() time.Time // a field so tests can stop the clock
}
