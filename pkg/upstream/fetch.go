package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/pollgrid/pollgrid/pkg/connector"
)

// Request is one HTTP request of a poll.
type Request struct {
	// Method defaults to GET.
	Method string
	URL    string
	// Header is sent as given (User-Agent, Accept, credentials).
	Header http.Header
	// Body is sent with a POST.
	Body []byte
	// Validators make the request conditional (If-None-Match,
	// If-Modified-Since) when they hold an ETag or a Last-Modified. Set
	// them on the first request of a poll only: a 304 says nothing of the
	// pages after it.
	Validators connector.State
	// Explain, when set, reads the API's own error out of a *StatusError's
	// Header and Body and fills its Message and Hint.
	Explain func(*StatusError)
}

// Answer is a 2xx or 304 answer, its body read and closed.
type Answer struct {
	StatusCode int
	Header     http.Header
	Body       []byte
	// URL is where the answer came from, after redirects: relative links
	// in it resolve against this (RFC 3986 §5.1.3).
	URL *url.URL
	// NotModified is true for a 304 to a conditional request.
	NotModified bool
}

// State returns s with the answer's validators, as Validators does.
func (a Answer) State(s connector.State) connector.State {
	return Validators(&http.Response{StatusCode: a.StatusCode, Header: a.Header}, s)
}

// ContentType names the answer's Content-Type for an error about its body,
// as ` (Content-Type "text/html")`; "" when it had none.
func (a Answer) ContentType() string {
	if ct := a.Header.Get("Content-Type"); ct != "" {
		return fmt.Sprintf(" (Content-Type %q)", ct)
	}
	return ""
}

// ErrNotModifiedUnasked is a 304 to a request that was not conditional: the
// upstream (or a cache in front of it) answered a question nobody asked.
var ErrNotModifiedUnasked = errors.New("upstream answered 304 Not Modified to a request that was not conditional")

// Fetch sends r with ctx through client and reads the whole (capped) body:
// the one way connectors make a request, so that every connector words
// failures alike and never leaks a secret in them.
//
//   - Any failure once ctx is done wraps ctx.Err(): a cancelled poll is a
//     clean stop, whatever the transport made of it.
//   - A transport error names the URL as ShowURL does (Go's *url.Error
//     would print the query, and the key in it).
//   - An answer other than 2xx and 304 is a *StatusError, explained by
//     r.Explain when set.
//   - A 304 is NotModified when r was conditional, else ErrNotModifiedUnasked.
func Fetch(ctx context.Context, client *http.Client, r Request) (Answer, error) {
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if r.Body != nil {
		body = bytes.NewReader(r.Body)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.URL, body)
	if err != nil {
		return Answer{}, fmt.Errorf("build request for %s: %w", ShowRawURL(r.URL), stripURL(err))
	}
	for name, values := range r.Header {
		req.Header[name] = values
	}
	Conditional(req, r.Validators)

	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return Answer{}, ctx.Err()
		}
		if urlErr, ok := errors.AsType[*url.Error](err); ok {
			return Answer{}, fmt.Errorf("%s %s: %w", urlErr.Op, ShowURL(req.URL), urlErr.Err)
		}
		return Answer{}, err
	}
	defer resp.Body.Close()
	if err := CheckStatus(resp); err != nil {
		if ctx.Err() != nil {
			return Answer{}, ctx.Err()
		}
		if statusErr, ok := errors.AsType[*StatusError](err); ok && r.Explain != nil {
			r.Explain(statusErr)
		}
		return Answer{}, err
	}
	answer := Answer{StatusCode: resp.StatusCode, Header: resp.Header, URL: req.URL}
	if resp.Request != nil && resp.Request.URL != nil {
		answer.URL = resp.Request.URL
	}
	if resp.StatusCode == http.StatusNotModified {
		if r.Validators.ETag == "" && r.Validators.LastModified == "" {
			return Answer{}, ErrNotModifiedUnasked
		}
		answer.NotModified = true
		return answer, nil
	}
	if answer.Body, err = ReadBody(resp); err != nil {
		if ctx.Err() != nil {
			return Answer{}, ctx.Err()
		}
		return Answer{}, err
	}
	return answer, nil
}

// stripURL drops a *url.Error wrapper, whose text carries the whole URL.
func stripURL(err error) error {
	if urlErr, ok := errors.AsType[*url.Error](err); ok {
		return urlErr.Err
	}
	return err
}
