// Package clock holds the one way pollgrid's loops wait: Sleep, a
// time.Sleep that the context ends early.
package clock

import (
	"context"
	"time"
)

// Sleep returns nil once d has passed, or the context's cause
// (context.Cause) if it ends first. A d of zero or less returns nil at
// once, whatever the context.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}
