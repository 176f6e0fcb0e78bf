package connector

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Fail records an item the upstream listed that could not be made an Item.
// One whose id could not be read is named by its position in the listing,
// e.g. "issues[3]" for listing "issues" and position 3.
func (r *Result) Fail(e ItemError, listing string, position int) {
	if e.ID == "" {
		e.ID = fmt.Sprintf("%s[%d]", listing, position)
	}
	r.Failed = append(r.Failed, e)
}

// TimeCursor reads a cursor stored as an RFC 3339 time; an empty one is the
// zero time. An unreadable one is dropped with a warning that says what the
// poll does instead (instead, e.g. "reading the lookback"), and is the zero
// time too: reading from the start again re-sends items, which change
// detection drops, whereas failing every poll would stop the connector.
func TimeCursor(ctx context.Context, logger *slog.Logger, cursor, instead string) time.Time {
	if cursor == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, cursor)
	if err != nil {
		logger.WarnContext(ctx, "stored cursor is not an RFC 3339 time; "+instead, "cursor", cursor)
		return time.Time{}
	}
	return t
}
