package upstream

import (
	"errors"
	"fmt"
)

// ErrMaxPages says a poll read as many pages as it may while the upstream
// had more: the rest is left for a later poll.
var ErrMaxPages = errors.New("more pages than max_pages")

// PageLoopError is a next-page token (a URL or a cursor) that names a page
// this poll has already read: following it would read the same pages
// forever.
type PageLoopError struct {
	// Page is the page that would have come next; Repeats is the page it repeats.
	Page, Repeats int
}

func (e *PageLoopError) Error() string {
	return fmt.Sprintf("page %d would be page %d again: the next-page token points back, so the upstream's pagination loops", e.Page, e.Repeats)
}

// Pages bounds one poll's pagination: at most max pages, and no page twice.
// Every connector that pages uses it, so a loop or a long listing ends the
// same way everywhere; what a connector does then (stop with a warning, or
// fail the poll) is its own call, documented in its README.
type Pages struct {
	max  int
	seen map[string]int // token → page number
}

// NewPages starts a pagination whose first page is named by first ("" for
// a first request without a token) and that reads at most max pages.
func NewPages(max int, first string) *Pages {
	return &Pages{max: max, seen: map[string]int{first: 1}}
}

// Read is how many pages have been started.
func (p *Pages) Read() int { return len(p.seen) }

// Next records the token of the page after the last one. It returns a
// *PageLoopError when that page was read already, ErrMaxPages when max
// pages were read, else nil: go on.
func (p *Pages) Next(token string) error {
	if first, ok := p.seen[token]; ok {
		return &PageLoopError{Page: len(p.seen) + 1, Repeats: first}
	}
	if len(p.seen) >= p.max {
		return ErrMaxPages
	}
	p.seen[token] = len(p.seen) + 1
	return nil
}
