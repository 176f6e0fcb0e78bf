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

func TestSkipPausedUnlessTriggered(t *testing.T) {
	ctx := context.Background()
	assert.NoError(t, skipPaused(ctx, store.State{}), "not paused")
	paused := store.State{PausedAt: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), PausedBy: "alice"}
	err := skipPaused(ctx, paused)
	assert.EqualError(t, err, "paused since 2026-12-01T10:00:00Z by alice (pollctl resume)")
	assert.NoError(t, skipPaused(context.WithValue(ctx, triggeredKey{}, true), paused), "an operator's trigger polls a paused connector")
}

func TestRateLimitedIsA429(t *testing.T) {
	assert.True(t, rateLimited(fmt.Errorf("poll x: %w", &upstream.StatusError{StatusCode: http.StatusTooManyRequests})))
	assert.False(t, rateLimited(fmt.Errorf("poll x: %w", &upstream.StatusError{StatusCode: http.StatusServiceUnavailable})))
	assert.False(t, rateLimited(context.DeadlineExceeded))
}
