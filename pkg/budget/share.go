package budget

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pollgrid/pollgrid/pkg/clock"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

// DeferredError ends a poll whose budget is spent for longer than the poll
// could wait: the poll is skipped (not failed, no back-off) and the
// connector is polled at a later tick. It wraps upstream.ErrDeferred.
type DeferredError struct {
	Budget string
	// Until is when the budget allows a request at the poll's priority.
	Until time.Time
}

func (e *DeferredError) Error() string {
	return fmt.Sprintf("budget %s is spent: it refills at %s; deferred to a later tick", e.Budget, e.Until.UTC().Format(time.RFC3339))
}

func (e *DeferredError) Unwrap() error { return upstream.ErrDeferred }

// Share is one poll's draw on its connector's budget: upstream.Budget, for
// the poll's requests (a connector may send them concurrently).
type Share struct {
	l   *Limiter
	b   config.Budget
	log *slog.Logger

	mu       sync.Mutex
	level    int
	deferred *DeferredError
}

// Share starts a poll's draws on b. lastPoll is when the connector was
// last polled (zero: never): the longer ago, compared with the budget's
// fair share (config.Budget.Fair), the higher the poll's priority, so
// that the connectors on a budget take turns and none starves: a
// connector polled just now draws only from a full budget, one whose turn
// came a whole turn ago (twice Fair since its last poll) may take the
// last request. After its first request a poll draws at the highest
// level, so that its next pages are not deferred for a newcomer.
func (l *Limiter) Share(b config.Budget, lastPoll, now time.Time, log *slog.Logger) *Share {
	top := Levels(b)
	level := top
	if fair := b.Fair(); !lastPoll.IsZero() && fair > 0 {
		// The top level is for the connectors overdue by a whole turn: a
		// few at any time, and they go first.
		level = min(top, int(int64(top+1)*int64(now.Sub(lastPoll))/int64(2*fair)))
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Share{l: l, b: b, level: level, log: log}
}

// Level is the priority the poll's next draw has.
func (s *Share) Level() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.level
}

// Deferred is the poll's deferral, nil when its requests all went.
func (s *Share) Deferred() *DeferredError {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deferred
}

// maxWait bounds one wait for the budget when the request has no deadline.
const maxWait = time.Second

// Take waits until the budget allows one request, as long as the wait
// leaves the request at least half of what remains of its deadline; else
// it defers the poll (a *DeferredError). A Redis that does not answer lets
// the request go: the budget is a courtesy to the upstream, and its own
// limit still answers 429.
func (s *Share) Take(ctx context.Context) error {
	for {
		d, err := s.l.Draw(ctx, s.b, s.Level())
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			s.log.WarnContext(ctx, "budget draw failed; the request goes without it", "budget", s.b.Name, "error", err)
			return nil
		}
		if d.Allowed {
			s.mu.Lock()
			s.level = Levels(s.b)
			s.mu.Unlock()
			return nil
		}
		limit := maxWait
		if deadline, ok := ctx.Deadline(); ok {
			limit = time.Until(deadline) / 2
		}
		if d.RetryAfter > limit {
			s.l.metrics.deferrals.WithLabelValues(s.b.Name).Inc()
			deferred := &DeferredError{Budget: s.b.Name, Until: time.Now().Add(d.RetryAfter).Round(time.Second)}
			s.mu.Lock()
			s.deferred = deferred
			s.mu.Unlock()
			return deferred
		}
		s.l.metrics.waits.WithLabelValues(s.b.Name).Inc()
		if err := clock.Sleep(ctx, d.RetryAfter); err != nil {
			return err
		}
	}
}

// Follow lowers the budget to the upstream's word for every worker on it:
// at most remaining requests before until (none: Retry-After, an
// exhausted limit). An upstream that has at least the budget's burst left
// costs nothing: no Redis call.
func (s *Share) Follow(ctx context.Context, until time.Time, remaining int) {
	if remaining >= s.b.Burst || !until.After(time.Now()) {
		return
	}
	// The request's context may be about to end; the cap is worth its
	// round trip.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := s.l.Cap(ctx, s.b, until, remaining); err != nil {
		s.log.WarnContext(ctx, "following the upstream's rate limit failed", "budget", s.b.Name, "error", err)
	}
}
