package worker

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/pollgrid/pollgrid/pkg/store"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

func TestSkipReasonsSayWhoseWaitItIs(t *testing.T) {
	paused := store.State{PausedAt: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), PausedBy: "alice"}
	assert.EqualError(t, pausedReason(paused), "paused since 2026-12-01T10:00:00Z by alice (pollctl resume)")

	until := time.Date(2026, 12, 1, 10, 5, 0, 0, time.UTC)
	upstream := store.State{NotBefore: until, NotBeforeBy: store.WaitUpstream, ConsecutiveFailures: 1}
	assert.EqualError(t, waitReason(upstream), "the upstream asked to wait until 2026-12-01T10:05:00Z (Retry-After or its rate-limit headers)")
	ours := store.State{NotBefore: until, NotBeforeBy: store.WaitBackoff, ConsecutiveFailures: 4, LastError: "poll x: upstream answered 500"}
	assert.EqualError(t, waitReason(ours), "backing off until 2026-12-01T10:05:00Z after 4 failed polls in a row "+
		"(pollctl trigger polls now); the last: poll x: upstream answered 500")
}

func TestRateLimitedIsA429(t *testing.T) {
	assert.True(t, rateLimited(fmt.Errorf("poll x: %w", &upstream.StatusError{StatusCode: http.StatusTooManyRequests})))
	assert.False(t, rateLimited(fmt.Errorf("poll x: %w", &upstream.StatusError{StatusCode: http.StatusServiceUnavailable})))
	assert.False(t, rateLimited(context.DeadlineExceeded))
}
