package httpjson

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strconv"
	"strings"

	"github.com/pollgrid/pollgrid/pkg/upstream"
)

// nextURL finds the next page by the configured style; nil when there is
// none. A URL the upstream gives (a Link header, a next URL in the body) is
// resolved against the page it came from and must stay on url's scheme and
// host: the configured headers, and the credentials in them, never go
// elsewhere.
func (p *poller) nextURL(ctx context.Context, answer fetched, firstURL *url.URL, pageIndex, items int) (*url.URL, error) {
	var ref, what string
	switch p.style {
	case StyleLinkHeader:
		ref, what = upstream.NextLink(answer.Header), `Link rel="next"`
	case StyleNextURL:
		v, err := p.runNext(ctx, answer.doc)
		if err != nil {
			return nil, err
		}
		ref, what = v, "pagination.next"
	case StyleCursor:
		v, err := p.runNext(ctx, answer.doc)
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
	}
	if ref == "" {
		return nil, nil
	}
	next, err := upstream.NextPage(answer.URL, ref, firstURL, "config.url")
	if err != nil {
		return nil, fmt.Errorf("pagination: %s: %w", what, err)
	}
	return next, nil
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
