package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/poll"
	"github.com/pollgrid/pollgrid/pkg/store"
)

// pausedReason is why a tick of a paused connector polls nothing.
func pausedReason(st store.State) error {
	by := ""
	if st.PausedBy != "" {
		by = " by " + st.PausedBy
	}
	return fmt.Errorf("paused since %s%s (pollctl resume)", st.PausedAt.UTC().Format(time.RFC3339), by)
}

// waitReason is why a tick of a waiting connector polls nothing, and whose
// wait it is: the upstream's (Retry-After, a rate limit), or ours after
// failed polls.
func waitReason(st store.State) error {
	until := st.NotBefore.UTC().Format(time.RFC3339)
	if st.NotBeforeBy == store.WaitUpstream {
		return fmt.Errorf("the upstream asked to wait until %s (Retry-After or its rate-limit headers)", until)
	}
	return fmt.Errorf("backing off until %s after %d failed polls in a row (pollctl trigger polls now); the last: %s",
		until, st.ConsecutiveFailures, st.LastError)
}

// seenCap says when the connector's seen_cap acted: a warning that names
// the setting, and the metric.
func (w *Worker) seenCap(ctx context.Context, c config.Connector, out poll.Outcome, st store.State) {
	if out.Forgotten > 0 {
		w.metrics.seenCap.WithLabelValues(c.Type, "forgotten").Add(float64(out.Forgotten))
		w.log.WarnContext(ctx, "the connector reached its seen_cap: forgot the items seen longest ago (should one come back "+
			"it is published as created); raise seen_cap if they may still change upstream",
			"seen_cap", c.SeenCap, "remembered", st.SeenCount, "forgotten", out.Forgotten)
	}
	if out.Untracked > 0 {
		w.metrics.seenCap.WithLabelValues(c.Type, "untracked").Add(float64(out.Untracked))
		w.log.ErrorContext(ctx, "the answer holds more items than the connector's seen_cap: the new items past it are not "+
			"published (reported as failed items) until seen_cap is raised",
			"seen_cap", c.SeenCap, "untracked", out.Untracked, "first", out.Failed[len(out.Failed)-out.Untracked].ID)
	}
}
