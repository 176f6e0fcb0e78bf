package upstream

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/jsondepth"
)

// MaxJSONDepth bounds nesting in upstream JSON: deeper is an attack or a bug.
const MaxJSONDepth = 256

// maxSnippet is how many characters of an error body a StatusError quotes.
const maxSnippet = 300

// Conditional adds If-None-Match / If-Modified-Since from the stored
// validators. Use it on the first request of a poll only.
func Conditional(req *http.Request, s connector.State) {
	if s.ETag != "" {
		req.Header.Set("If-None-Match", s.ETag)
	}
	if s.LastModified != "" {
		req.Header.Set("If-Modified-Since", s.LastModified)
	}
}

// Validators returns s with the response's ETag and Last-Modified. A 304
// keeps a stored validator its answer leaves out (RFC 9110 requires a 304 to
// repeat the ETag, not the Last-Modified); a 200 without one drops it.
func Validators(resp *http.Response, s connector.State) connector.State {
	etag, lastModified := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	if resp.StatusCode == http.StatusNotModified {
		if etag == "" {
			etag = s.ETag
		}
		if lastModified == "" {
			lastModified = s.LastModified
		}
	}
	s.ETag, s.LastModified = etag, lastModified
	return s
}

// StatusError is an upstream answer that is neither 2xx nor 304. Its text
// is "upstream answered <status>", then the API's own message (or the start
// of the body), then a hint in parentheses when a connector gave one:
//
//	upstream answered 401 Unauthorized: Client must be authenticated to access this resource. (check config.email and config.api_token)
type StatusError struct {
	StatusCode int
	Status     string
	// Header is the answer's header (rate limits, Retry-After).
	Header http.Header
	// Body is the start of the body, as sent (at most 64 KiB), for a
	// connector that reads the API's own error JSON.
	Body []byte
	// Snippet is the start of the body on one line, for the error text;
	// of an HTML page, its title and text (no markup), quoted and shorter.
	Snippet string
	// Message is the API's own message when a connector read one out of
	// Body (Request.Explain); it stands in the text instead of Snippet.
	Message string
	// Hint says what to check or change, in the connector's words.
	Hint string
}

func (e *StatusError) Error() string {
	msg := "upstream answered " + e.Status
	if detail := cmp.Or(e.Message, e.Snippet); detail != "" {
		msg += ": " + detail
	}
	if e.Hint != "" {
		msg += " (" + e.Hint + ")"
	}
	return msg
}

// maxErrorBody caps what CheckStatus reads of an error body.
const maxErrorBody = 64 << 10

// CheckStatus returns nil for 2xx and 304, else a *StatusError carrying the
// header and the start of the body.
func CheckStatus(resp *http.Response) error {
	if resp.StatusCode/100 == 2 || resp.StatusCode == http.StatusNotModified {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	status := resp.Status
	if status == "" {
		status = fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	snippet := OneLine(string(b), maxSnippet)
	if isHTML(resp.Header, b) {
		// A proxy's or a CDN's error page: its words, not its markup.
		snippet = htmlSnippet(status, b)
	}
	return &StatusError{StatusCode: resp.StatusCode, Status: status, Header: resp.Header, Body: b, Snippet: snippet}
}

// OneLine folds s onto one line of valid UTF-8 and cuts it at maxRunes
// runes, marking the cut with "...": for upstream text quoted in errors,
// which end up in state and in poll reports.
func OneLine(s string, maxRunes int) string {
	s = strings.Join(strings.Fields(strings.ToValidUTF8(s, "?")), " ")
	// Cut at a rune boundary: a split rune would make the text invalid UTF-8.
	if utf8.RuneCountInString(s) > maxRunes {
		s = string([]rune(s)[:maxRunes]) + "..."
	}
	return s
}

// ReadBody reads the whole (capped) body, in one allocation when the
// upstream says how long it is.
func ReadBody(resp *http.Response) ([]byte, error) {
	var buf bytes.Buffer
	if n := resp.ContentLength; n > 0 && n <= DefaultMaxBodyBytes {
		buf.Grow(int(n) + bytes.MinRead) // ReadFrom wants room to see the end
	}
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return nil, fmt.Errorf("read response body: %w", err)
	}
	return buf.Bytes(), nil
}

// CheckJSON checks what a decoder would not: the body is UTF-8 (encoding/json
// would silently turn bad bytes into U+FFFD) and nested at most MaxJSONDepth
// deep. It reads the body once and allocates nothing.
func CheckJSON(body []byte) error {
	if !utf8.Valid(body) {
		return errors.New("response is not valid UTF-8")
	}
	return checkDepth(body, MaxJSONDepth)
}

// DecodeJSON checks a body with CheckJSON, then decodes it into v.
func DecodeJSON(body []byte, v any) error {
	if err := CheckJSON(body); err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("response is not the JSON expected: %w (starts %q)", err, head(body))
	}
	return nil
}

// ReadJSON is ReadBody then DecodeJSON.
func ReadJSON(resp *http.Response, v any) error {
	body, err := ReadBody(resp)
	if err != nil {
		return err
	}
	return DecodeJSON(body, v)
}

func checkDepth(b []byte, max int) error {
	if jsondepth.Over(b, max) >= 0 {
		return fmt.Errorf("response JSON nests deeper than %d levels", max)
	}
	return nil
}

func head(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 60 {
		b = b[:60]
	}
	return string(b)
}
