package connector

import (
	"bytes"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestFailNamesAnItemWithoutAnIdByItsPosition(t *testing.T) {
	var r Result
	r.Fail(ItemError{Err: errors.New("no key")}, "issues", 3)
	r.Fail(ItemError{ID: "PROJ-7", Err: errors.New("bad date")}, "issues", 4)
	assert.Equal(t, []string{"issues[3]", "PROJ-7"}, []string{r.Failed[0].ID, r.Failed[1].ID})
	assert.EqualError(t, r.Failed[0].Err, "no key")
}

func TestTimeCursor(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	ctx := t.Context()

	assert.True(t, TimeCursor(ctx, logger, "", "reading the lookback instead").IsZero())
	want := time.Date(2024, 7, 18, 13, 5, 0, 123000000, time.UTC)
	assert.True(t, want.Equal(TimeCursor(ctx, logger, "2024-07-18T13:05:00.123Z", "reading the lookback instead")))
	assert.Empty(t, logs.String(), "nothing to warn about")

	assert.True(t, TimeCursor(ctx, logger, "page-7", "reading the lookback instead").IsZero(), "an unreadable cursor reads from the start")
	assert.Contains(t, logs.String(), "stored cursor is not an RFC 3339 time; reading the lookback instead")
	assert.Contains(t, logs.String(), "cursor=page-7")
}
