package poll

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/egress"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

// Fetch is one call of a connector: its state in, its result out.
type Fetch func(ctx context.Context, in connector.State) (connector.Result, error)

// Middleware wraps a Fetch with one concern, as Watermill's handler
// middleware does: recovery from a panic, a timeout per attempt, retries.
// Run composes them for each poll (Chain); each is tested alone.
type Middleware func(next Fetch) Fetch

// Chain wraps f in mw, the first outermost: Chain(f, Retry(p), Recover)
// retries calls that Recover guards.
func Chain(f Fetch, mw ...Middleware) Fetch {
	for i := len(mw) - 1; i >= 0; i-- {
		f = mw[i](f)
	}
	return f
}

// PanicError is a connector's panic, recovered: the poll fails with it
// and the worker logs the stack, instead of the process dying (and every
// worker after it, as the tick goes round).
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("connector panicked: %v", e.Value) }

// Recover turns a panic of next into a *PanicError.
func Recover(next Fetch) Fetch {
	return func(ctx context.Context, in connector.State) (res connector.Result, err error) {
		defer func() {
			if v := recover(); v != nil {
				err = &PanicError{Value: v, Stack: debug.Stack()}
			}
		}()
		return next(ctx, in)
	}
}

// Timeout bounds each call of next by d.
func Timeout(d time.Duration) Middleware {
	return func(next Fetch) Fetch {
		return func(ctx context.Context, in connector.State) (connector.Result, error) {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			return next(ctx, in)
		}
	}
}

// RetryPolicy says how Retry retries.
type RetryPolicy struct {
	// Max is the number of retries after the first call.
	Max int
	// Backoff is the longest wait before the first retry; it doubles for
	// each next one, and each wait is drawn at random up to it (full
	// jitter), so failing connectors do not retry in step.
	Backoff time.Duration
	// Sleep waits, or returns early with ctx's error.
	Sleep func(ctx context.Context, d time.Duration) error
	// Asked, if set, reports that the upstream asked to wait (Retry-After,
	// an exhausted rate limit): retrying now would be rude.
	Asked func() bool
	// Calls, if set, receives the number of calls made.
	Calls *int
}

// Retry calls next again after a failure, up to p.Max times. It gives up at
// once on a panic (a bug: it would panic again), a refusal of the outbound
// guard (only a config change lets it through), a request its rate-limit
// budget deferred, an upstream's client error (see clientError), the end of
// ctx, and an upstream that asked to wait. The error is the last call's.
func Retry(p RetryPolicy) Middleware {
	return func(next Fetch) Fetch {
		return func(ctx context.Context, in connector.State) (connector.Result, error) {
			var last error
			for attempt := 0; attempt <= p.Max; attempt++ {
				if attempt > 0 {
					backoff := p.Backoff << (attempt - 1)
					if err := p.Sleep(ctx, time.Duration(rand.Int64N(int64(backoff)+1))); err != nil {
						return connector.Result{}, fmt.Errorf("%w (last error: %w)", err, last)
					}
				}
				if p.Calls != nil {
					*p.Calls = attempt + 1
				}
				res, err := next(ctx, in)
				if err == nil {
					return res, nil
				}
				last = err
				if errors.As(err, new(*PanicError)) || errors.Is(err, egress.ErrRefused) || errors.Is(err, upstream.ErrDeferred) ||
					clientError(err) || ctx.Err() != nil || (p.Asked != nil && p.Asked()) {
					break
				}
			}
			return connector.Result{}, last
		}
	}
}

// clientError reports an upstream answer of 4xx that a second attempt
// within the same tick would get again (a wrong token, a missing resource,
// a bad query) or must not make so soon (429): every 4xx but 408 Request
// Timeout and 425 Too Early. The next tick asks again.
func clientError(err error) bool {
	var status *upstream.StatusError
	if !errors.As(err, &status) {
		return false
	}
	code := status.StatusCode
	return code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooEarly
}
