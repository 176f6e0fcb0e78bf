package bench

import (
	"context"
	"time"
)

// Quiet is how a run's start found the machine.
type Quiet struct {
	// OK is false when the machine never became quiet before the give-up
	// time: the run went ahead anyway and its numbers say so.
	OK bool
	// Busy is the share of all CPUs busy in the last sample, 0..1.
	Busy float64
	// Waited is how long it took.
	Waited time.Duration
}

// String is how the results show it.
func (q Quiet) String() string {
	if q.OK {
		return "quiet"
	}
	return "NOT QUIET"
}

// QuietOptions say what quiet means.
type QuietOptions struct {
	// Threshold is the busy share under which the machine is quiet; default 0.10.
	Threshold float64
	// Sample is how long each reading lasts; default 2s.
	Sample time.Duration
	// GiveUp is how long to wait at most; default 3m.
	GiveUp time.Duration
}

// WaitQuiet waits until less than Threshold of the machine's CPU was busy
// over one Sample (read from /proc/stat), or GiveUp passes.
func WaitQuiet(ctx context.Context, o QuietOptions) Quiet {
	if o.Threshold <= 0 {
		o.Threshold = 0.10
	}
	if o.Sample <= 0 {
		o.Sample = 2 * time.Second
	}
	if o.GiveUp <= 0 {
		o.GiveUp = 3 * time.Minute
	}
	began := time.Now()
	q := Quiet{Busy: 1}
	for {
		before, err := ReadSystemCPU()
		if err != nil {
			return Quiet{Busy: -1, Waited: time.Since(began)}
		}
		select {
		case <-ctx.Done():
			q.Waited = time.Since(began)
			return q
		case <-time.After(o.Sample):
		}
		after, err := ReadSystemCPU()
		if err != nil {
			return Quiet{Busy: -1, Waited: time.Since(began)}
		}
		q.Busy = BusyFraction(before, after)
		q.Waited = time.Since(began)
		if q.Busy < o.Threshold {
			q.OK = true
			return q
		}
		if q.Waited >= o.GiveUp {
			return q
		}
	}
}
