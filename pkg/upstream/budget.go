package upstream

import (
	"context"
	"errors"
	"time"
)

// ErrDeferred is wrapped by the error of a request whose rate-limit budget
// is spent for longer than the poll can wait: the poll is deferred to a
// later tick, not failed, and not retried.
var ErrDeferred = errors.New("deferred by its rate-limit budget")

// Budget is the rate-limit budget a poll's requests draw from
// (*budget.Share): every request the client sends, pages, retries and
// redirects included, takes from it first, and an upstream's word on its
// own limit is passed on to it.
type Budget interface {
	// Take returns once a request may go, or with an error that wraps
	// ErrDeferred when the wait would outlast the request.
	Take(ctx context.Context) error
	// Follow says the upstream has remaining requests left until until
	// (0: Retry-After, or its limit is spent).
	Follow(ctx context.Context, until time.Time, remaining int)
}

type budgetKey struct{}

// WithBudget returns a context whose requests draw from b.
func WithBudget(ctx context.Context, b Budget) context.Context {
	return context.WithValue(ctx, budgetKey{}, b)
}

func budgetFrom(ctx context.Context) Budget {
	b, _ := ctx.Value(budgetKey{}).(Budget)
	return b
}
