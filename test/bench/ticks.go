package bench

import (
	"time"

	"github.com/nats-io/nats.go"

	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// ScheduleNextHeader is set by nats-server on a message fired from a
// message schedule: the schedule's next fire time (RFC 3339).
const ScheduleNextHeader = "Nats-Schedule-Next"

// IntendedTime is when a tick was meant to fire: its Nats-Schedule-Next
// header minus its interval for a tick fired by NATS from a schedule, else
// its due_at (a tick the scheduler published itself). False when the tick
// says neither.
func IntendedTime(h nats.Header, tick *pollgridv1.Tick) (time.Time, bool) {
	if next := h.Get(ScheduleNextHeader); next != "" && tick.GetInterval() != nil {
		if at, err := time.Parse(time.RFC3339Nano, next); err == nil {
			return at.Add(-tick.GetInterval().AsDuration()), true
		}
	}
	if due := tick.GetDueAt(); due != nil {
		return due.AsTime(), true
	}
	return time.Time{}, false
}

// TickRecord is one tick a benchmark consumer received.
type TickRecord struct {
	// Connector is i of connector c<i>.
	Connector int
	Received  time.Time
	// Intended is zero when the tick did not say (see IntendedTime).
	Intended time.Time
}

// TickWindow is what the ticks of one measurement window show.
type TickWindow struct {
	// Delivered counts ticks received in the window.
	Delivered int
	// Lateness holds received − intended, in seconds, of the ticks
	// received in the window.
	Lateness []float64
	// NoIntended counts ticks received in the window that gave no
	// intended time.
	NoIntended int
	// Allowed is the ticks per connector the window allows: floor(window / interval).
	Allowed int
	// Missed counts connectors with fewer than Allowed ticks intended in
	// the window and received by its end plus grace.
	Missed int
}

// AnalyseTicks looks at the ticks of connectors 0..n-1 over [from, to).
// Fires are counted by intended time, so that a tick a little late at
// either edge of the window is not taken for a missed one; a tick later
// than grace after the window counts as missed.
func AnalyseTicks(recs []TickRecord, n int, from, to time.Time, interval, grace time.Duration) TickWindow {
	w := TickWindow{Allowed: int(to.Sub(from) / interval)}
	fires := make([]int, n)
	for _, r := range recs {
		if !r.Received.Before(from) && r.Received.Before(to) {
			w.Delivered++
			if r.Intended.IsZero() {
				w.NoIntended++
			} else {
				w.Lateness = append(w.Lateness, r.Received.Sub(r.Intended).Seconds())
			}
		}
		if r.Connector >= 0 && r.Connector < n && !r.Intended.IsZero() &&
			!r.Intended.Before(from) && r.Intended.Before(to) && !r.Received.After(to.Add(grace)) {
			fires[r.Connector]++
		}
	}
	for _, f := range fires {
		if f < w.Allowed {
			w.Missed++
		}
	}
	return w
}
