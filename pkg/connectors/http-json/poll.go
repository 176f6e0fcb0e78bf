package httpjson

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

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
	started := p.now()
	cursor := cmp.Or(state.Cursor, p.initialCursor)
	sent := p.cursor.request(cursor) // less the margin
	firstURL, err := url.Parse(strings.ReplaceAll(p.urlTemplate, cursorPlaceholder, url.QueryEscape(sent)))
	if err != nil {
		return connector.Result{}, fmt.Errorf("http-json: url with the cursor %q is not a URL: %w", sent, errors.Unwrap(err))
	}
	body := p.expandBody(sent)

	result := connector.Result{State: connector.State{Cursor: state.Cursor}}
	var newest *mark // the greatest time over the items
	position := 0
	pageURL := firstURL
	if p.style == StylePage {
		pageURL = withQueryParam(firstURL, p.param, strconv.Itoa(p.start))
	}
	pages := upstream.NewPages(p.maxPages, pageURL.String())
	for page := 1; ; page++ {
		prefix := fmt.Sprintf("http-json %s %s", p.method, upstream.ShowURL(pageURL))
		if page > 1 {
			prefix += fmt.Sprintf(" (page %d)", page)
		}
		answer, err := p.fetch(ctx, pageURL, body, page == 1, state)
		if err != nil {
			return connector.Result{}, fmt.Errorf("%s: %w", prefix, err)
		}
		if answer.NotModified {
			// A 304 may carry a fresher ETag; the cursor stays.
			return connector.Result{NotModified: true, State: answer.State(state)}, nil
		}
		if page == 1 && p.conditional {
			result.State = answer.State(result.State)
		}
		values, err := p.runItems(ctx, answer.doc)
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
			if t != nil && (newest == nil || p.cursor.after(*t, *newest)) {
				newest = t
			}
		}

		next, err := p.nextURL(ctx, answer, firstURL, page, len(values))
		if err != nil {
			return connector.Result{}, fmt.Errorf("%s: %w", prefix, err)
		}
		if next == nil {
			result.Complete = p.deletes // every page read: the listing is whole
			break
		}
		if err := pages.Next(next.String()); err != nil {
			// A loop would repeat the same items forever; past max_pages the
			// rest waits for a later poll. Either way, what was read stands.
			p.logger.WarnContext(ctx, "http-json: stopping pagination with what was read",
				"reason", err.Error(), "max_pages", p.maxPages, "items", len(result.Items))
			break
		}
		pageURL = next
	}
	if newest != nil {
		// Compared with initial_cursor too: it is a floor, like a stored cursor.
		next, dropped := p.cursor.next(cursor, *newest, started)
		if dropped != nil {
			p.logger.WarnContext(ctx, "http-json: the cursor the poll started from does not read as cursor_kind says; the newest item's time replaces it",
				"reason", dropped.Error())
		}
		result.State.Cursor = next
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

// fetched is one page's answer, its body decoded.
type fetched struct {
	upstream.Answer
	doc any
}

func (p *poller) fetch(ctx context.Context, pageURL *url.URL, body string, first bool, state connector.State) (fetched, error) {
	request := upstream.Request{Method: p.method, URL: pageURL.String(), Header: *p.headers}
	if p.method == http.MethodPost {
		request.Body = []byte(body)
	}
	if first && p.conditional {
		request.Validators = state
	}
	answer, err := upstream.Fetch(ctx, p.client, request)
	if err != nil || answer.NotModified {
		return fetched{Answer: answer}, err
	}
	doc, err := decode(answer.Body)
	if err != nil {
		return fetched{}, fmt.Errorf("%w%s", err, answer.ContentType())
	}
	return fetched{Answer: answer, doc: doc}, nil
}

// decode checks the body with the shared rules (UTF-8, nesting depth, valid
// JSON), then decodes numbers as json.Number: ids and times keep every digit
// (a float64 would round a 64-bit id).
func decode(raw []byte) (any, error) {
	if err := upstream.CheckJSON(raw); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc any
	err := dec.Decode(&doc)
	if err == nil {
		if _, end := dec.Token(); end != io.EOF {
			err = errors.New("more than one value")
		}
	}
	if err != nil {
		// Decoded again only to say what is wrong the way every connector does.
		if uerr := upstream.DecodeJSON(raw, new(json.RawMessage)); uerr != nil {
			return nil, uerr
		}
		return nil, fmt.Errorf("response is not the JSON expected: %w", err)
	}
	return doc, nil
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
