package bench

import (
	"strconv"
	"time"
)

// Coverage says whether every connector was polled every interval over a
// window, from the times the upstream saw each connector's requests.
type Coverage struct {
	// Connectors is how many connectors were expected.
	Connectors int
	// Polls is the number of requests started in the window.
	Polls int
	// Allowed is the polls per connector the window allows: floor(window / interval).
	Allowed int
	// Short counts connectors with fewer polls in the window than Allowed.
	Short int
	// Never counts connectors not polled at all in the window.
	Never int
	// Lateness holds, for each poll in the window that follows an earlier
	// poll of the same connector, the gap between the two minus the
	// interval, in seconds (negative when early).
	Lateness []float64
	// MaxGap is the longest time a connector went without a poll, counting
	// the gap still open at the end of the window.
	MaxGap time.Duration
}

// PollCoverage analyses request start times (unix milliseconds, ascending,
// one slice per connector) over [from, to).
func PollCoverage(times [][]int64, from, to time.Time, interval time.Duration) Coverage {
	f, t := from.UnixMilli(), to.UnixMilli()
	c := Coverage{Connectors: len(times), Allowed: int(to.Sub(from) / interval)}
	var maxGap int64
	for _, ts := range times {
		n := 0
		prev := int64(-1)
		for _, at := range ts {
			if at >= t {
				break
			}
			if at >= f {
				n++
				if prev >= 0 {
					gap := at - prev
					maxGap = max(maxGap, gap)
					c.Lateness = append(c.Lateness, float64(gap)/1000-interval.Seconds())
				}
			}
			prev = at
		}
		if prev >= 0 {
			maxGap = max(maxGap, t-max(prev, f))
		} else {
			maxGap = max(maxGap, t-f)
		}
		c.Polls += n
		if n == 0 {
			c.Never++
		}
		if n < c.Allowed {
			c.Short++
		}
	}
	c.MaxGap = time.Duration(maxGap) * time.Millisecond
	return c
}

// DueCoverage says whether connectors whose fires are pinned to a phase
// (fires at phase, phase + interval, ... from the Unix epoch, as a cron
// schedule fires them) were polled when due over a window. It needs no
// earlier poll of a connector, so it serves windows shorter than the
// interval, where PollCoverage has no gap to measure.
type DueCoverage struct {
	// Connectors is how many connectors were expected.
	Connectors int
	// Due counts the fires due in [from, to).
	Due int
	// Polled counts the due fires answered by a poll starting at or after
	// the due time less early, before until (and before the connector's
	// next fire less early).
	Polled int
	// Lateness holds, for each fire polled, its poll's start minus its due
	// time, in seconds; DueAt its due time (unix milliseconds).
	Lateness []float64
	DueAt    []int64
	// Polls is the number of requests started in [from, to); Extra those of
	// them that answered no due fire (a first poll of a connector, a retry).
	Polls, Extra int
}

// Missed is the number of due fires not polled before until.
func (c DueCoverage) Missed() int { return c.Due - c.Polled }

// PollsWhenDue analyses request start times (unix milliseconds, ascending,
// one slice per connector, each with its phase in phases) against the
// fires due in [from, to): a fire is polled by the connector's first
// request at or after due − early that starts before until.
func PollsWhenDue(times [][]int64, phases []time.Duration, interval time.Duration, from, to, until time.Time, early time.Duration) DueCoverage {
	f, t, u := from.UnixMilli(), to.UnixMilli(), until.UnixMilli()
	every, soon := interval.Milliseconds(), early.Milliseconds()
	c := DueCoverage{Connectors: len(times)}
	for i, ts := range times {
		for _, at := range ts {
			if at >= f && at < t {
				c.Polls++
			}
		}
		if i >= len(phases) || every <= 0 {
			continue
		}
		phase := phases[i].Milliseconds()
		// The first fire at or after from.
		due := phase + ceilDiv(f-phase, every)*every
		used := make([]bool, len(ts))
		next := 0
		for ; due < t; due += every {
			c.Due++
			for next < len(ts) && ts[next] < due-soon {
				next++
			}
			if next < len(ts) && ts[next] < u && ts[next] < due+every-soon {
				c.Polled++
				c.Lateness = append(c.Lateness, float64(ts[next]-due)/1000)
				c.DueAt = append(c.DueAt, due)
				used[next] = true
				next++
			}
		}
		for j, at := range ts {
			if at >= f && at < t && !used[j] {
				c.Extra++
			}
		}
	}
	return c
}

// Slice is the fires polled that were due in one slice of a window.
type Slice struct {
	// From is the slice's start after the window's.
	From     time.Duration
	Polled   int
	P99, Max float64
}

// Slices cuts the fires polled by their due time into slices of width
// from from: when in a window the late ones were due.
func (c DueCoverage) Slices(from time.Time, width time.Duration) []Slice {
	var by [][]float64
	for i, at := range c.DueAt {
		k := int((at - from.UnixMilli()) / width.Milliseconds())
		if k < 0 {
			continue
		}
		for len(by) <= k {
			by = append(by, nil)
		}
		by[k] = append(by[k], c.Lateness[i])
	}
	out := make([]Slice, len(by))
	for k, l := range by {
		_, p99, pmax := Quantiles(l)
		out[k] = Slice{From: time.Duration(k) * width, Polled: len(l), P99: p99, Max: pmax}
	}
	return out
}

// ceilDiv is a/b rounded up, for b > 0 and any a.
func ceilDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a > 0) == (b > 0) {
		q++
	}
	return q
}

// SignalRecord is one message read back from the SIGNALS stream.
type SignalRecord struct {
	Subject string
	// ID is the ce-id header.
	ID string
	// Version is the signal's version (the upstream's counter here).
	Version string
}

// SignalCheck is what a run's signals show.
type SignalCheck struct {
	Signals int
	// DuplicateIDs counts signals whose ce-id was seen before.
	DuplicateIDs int
	// Regressions counts signals whose version is not greater than the
	// previous one of the same subject (numeric versions compared as numbers).
	Regressions int
	// Last is the last version seen per subject.
	Last map[string]string
}

// CheckSignals verifies signals in stream order: no ce-id twice and, per
// subject, versions only increasing.
func CheckSignals(records []SignalRecord) SignalCheck {
	c := SignalCheck{Signals: len(records), Last: map[string]string{}}
	ids := make(map[string]struct{}, len(records))
	for _, r := range records {
		if _, dup := ids[r.ID]; dup {
			c.DuplicateIDs++
		}
		ids[r.ID] = struct{}{}
		if prev, ok := c.Last[r.Subject]; ok && !versionLess(prev, r.Version) {
			c.Regressions++
		}
		c.Last[r.Subject] = r.Version
	}
	return c
}

func versionLess(a, b string) bool {
	x, errA := strconv.ParseInt(a, 10, 64)
	y, errB := strconv.ParseInt(b, 10, 64)
	if errA == nil && errB == nil {
		return x < y
	}
	return a < b
}
