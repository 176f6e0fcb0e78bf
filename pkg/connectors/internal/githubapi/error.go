package githubapi

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pollgrid/pollgrid/pkg/upstream"
)

// maxMessageRunes keeps a GitHub message from flooding logs and reports.
const maxMessageRunes = 300

// Error is a GitHub answer other than 2xx and 304. Its text is
// "github: <code> <status text>: <GitHub's message>", then a hint in
// parentheses when there is one to give, e.g.
//
//	github: 422 Unprocessable Entity: Validation Failed
//	github: 403 Forbidden: API rate limit exceeded for 192.0.2.1. (rate limit exhausted until 2022-07-19T05:36:39Z)
//
// It unwraps to the *upstream.StatusError of the same answer.
type Error struct {
	StatusCode int
	// Message and DocumentationURL are GitHub's {"message", "documentation_url"}.
	Message          string
	DocumentationURL string
	// RateLimited is true for a 403 or 429 with X-RateLimit-Remaining: 0
	// (the primary limit); RateLimitReset is its X-RateLimit-Reset, zero
	// when GitHub did not say.
	RateLimited    bool
	RateLimitReset time.Time
	// RetryAfter is the Retry-After of a 403 or 429 that is not the primary
	// limit (a secondary rate limit); zero when absent.
	RetryAfter time.Duration

	authenticated bool
	status        *upstream.StatusError
}

func newError(status *upstream.StatusError, authenticated bool) *Error {
	e := &Error{StatusCode: status.StatusCode, authenticated: authenticated, status: status}
	var parsed struct {
		Message          string `json:"message"`
		DocumentationURL string `json:"documentation_url"`
	}
	if upstream.DecodeJSON(status.Body, &parsed) == nil {
		e.Message = upstream.OneLine(parsed.Message, maxMessageRunes)
		e.DocumentationURL = parsed.DocumentationURL
	}
	if status.StatusCode != http.StatusForbidden && status.StatusCode != http.StatusTooManyRequests {
		return e
	}
	header := status.Header
	if strings.TrimSpace(header.Get("X-RateLimit-Remaining")) == "0" {
		e.RateLimited = true
		if secs, err := strconv.ParseInt(strings.TrimSpace(header.Get("X-RateLimit-Reset")), 10, 64); err == nil && secs > 0 {
			e.RateLimitReset = time.Unix(secs, 0).UTC()
		}
		return e
	}
	if secs, err := strconv.ParseInt(strings.TrimSpace(header.Get("Retry-After")), 10, 64); err == nil && secs >= 0 {
		e.RetryAfter = time.Duration(secs) * time.Second
	}
	return e
}

func (e *Error) Error() string {
	statusText := http.StatusText(e.StatusCode)
	msg := strings.TrimSpace(fmt.Sprintf("github: %d %s", e.StatusCode, statusText))
	if e.Message != "" && !strings.EqualFold(e.Message, statusText) {
		msg += ": " + e.Message
	}
	if hint := e.hint(); hint != "" {
		msg += " (" + hint + ")"
	}
	return msg
}

func (e *Error) hint() string {
	var hints []string
	switch {
	case e.RateLimited:
		if e.RateLimitReset.IsZero() {
			hints = append(hints, "rate limit exhausted; GitHub sent no X-RateLimit-Reset")
		} else {
			hints = append(hints, "rate limit exhausted until "+e.RateLimitReset.Format(time.RFC3339))
		}
		if !e.authenticated {
			hints = append(hints, "without config.token GitHub allows 60 requests an hour, with one 5,000")
		}
	case e.RetryAfter > 0 || (e.StatusCode == http.StatusTooManyRequests) ||
		strings.Contains(strings.ToLower(e.Message), "secondary rate limit"):
		if e.RetryAfter > 0 {
			hints = append(hints, "secondary rate limit; GitHub asks to retry after "+e.RetryAfter.String())
		} else {
			hints = append(hints, "secondary rate limit; GitHub asks to wait at least a minute")
		}
	case e.StatusCode == http.StatusUnauthorized:
		hints = append(hints, "GitHub refused config.token: check that it is valid and not expired")
	case e.StatusCode == http.StatusNotFound && !e.authenticated:
		hints = append(hints, "check config.owner and config.repo; a private repository needs config.token")
	case e.StatusCode == http.StatusNotFound:
		hints = append(hints, "check config.owner and config.repo, and that config.token can read the repository")
	}
	return strings.Join(hints, "; ")
}

// Unwrap gives callers the generic *upstream.StatusError.
func (e *Error) Unwrap() error {
	if e.status == nil {
		return nil
	}
	return e.status
}
