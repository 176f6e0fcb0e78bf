package bench

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestPollCoverage(t *testing.T) {
	from := time.UnixMilli(100_000)
	to := from.Add(3 * time.Minute)
	ms := func(sec float64) int64 { return from.UnixMilli() + int64(sec*1000) }
	times := [][]int64{
		{ms(-30), ms(30), ms(90), ms(150)},   // on time, every 60 s
		{ms(-50), ms(10), ms(70.5), ms(131)}, // a little later each time
		{ms(-10), ms(50), ms(170)},           // skipped an interval
		{},                                   // never polled
		{ms(-60), ms(0), ms(60), ms(120), ms(180)}, // the poll at "to" is outside [from, to)
	}
	c := PollCoverage(times, from, to, time.Minute)
	assert.Equal(t, 5, c.Connectors)
	assert.Equal(t, 3, c.Allowed)
	assert.Equal(t, 3+3+2+0+3, c.Polls)
	assert.Equal(t, 2, c.Short, "the one that skipped and the one never polled")
	assert.Equal(t, 1, c.Never)
	assert.Equal(t, 3*time.Minute, c.MaxGap, "never polled: the whole window")
	assert.ElementsMatch(t, []float64{0, 0, 0, 0, 0.5, 0.5, 0, 60, 0, 0, 0}, roundAll(c.Lateness))

	c = PollCoverage(times[:3], from, to, time.Minute)
	assert.Equal(t, 120*time.Second, c.MaxGap, "the skipped interval")
}

func TestPollsWhenDue(t *testing.T) {
	const interval = 600 * time.Second
	from := time.Unix(6_000, 0) // a multiple of the interval: phases count from here
	to := from.Add(5 * time.Minute)
	until := to.Add(30 * time.Second)
	ms := func(sec float64) int64 { return from.UnixMilli() + int64(sec*1000) }
	phases := []time.Duration{
		10 * time.Second,  // due at 10 s: polled 0.2 s late
		100 * time.Second, // due at 100 s: polled on time, and once more at 150 s (extra)
		200 * time.Second, // due at 200 s: never polled
		400 * time.Second, // due at 400 s: outside the window, its poll at 50 s is extra
		290 * time.Second, // due at 290 s: polled 20 s late, after to but before until
		590 * time.Second, // due at −10 s (before the window) and 590 s: not due in it
		30 * time.Second,  // due at 30 s: polled 0.5 s early (within early), counts as on time
		60 * time.Second,  // due at 60 s: polled only after until
	}
	times := [][]int64{
		{ms(-400), ms(10.2)},
		{ms(100), ms(150)},
		{ms(-500)},
		{ms(50)},
		{ms(310)},
		{ms(-10.1)},
		{ms(29.5)},
		{ms(331)},
	}
	c := PollsWhenDue(times, phases, interval, from, to, until, time.Second)
	assert.Equal(t, 8, c.Connectors)
	assert.Equal(t, 6, c.Due, "every phase in [0 s, 300 s)")
	assert.Equal(t, 4, c.Polled)
	assert.Equal(t, 2, c.Missed(), "the one never polled and the one polled after until")
	want := []float64{0.2, 0, 20, -0.5}
	if assert.Len(t, c.Lateness, len(want)) {
		for i, w := range want {
			assert.InDelta(t, w, c.Lateness[i], 1e-9)
		}
	}
	assert.Equal(t, 5, c.Polls, "requests started in [from, to)")
	assert.Equal(t, 2, c.Extra, "the second poll at 150 s, the poll of the connector not due")

	// By due time, in slices of 100 s: 10 s and 30 s; 100 s; none; 290 s.
	slices := c.Slices(from, 100*time.Second)
	if assert.Len(t, slices, 3) {
		assert.Equal(t, Slice{From: 0, Polled: 2, P99: 0.2, Max: 0.2}, slices[0].rounded())
		assert.Equal(t, Slice{From: 100 * time.Second, Polled: 1, P99: 0, Max: 0}, slices[1].rounded())
		assert.Equal(t, Slice{From: 200 * time.Second, Polled: 1, P99: 20, Max: 20}, slices[2].rounded())
	}
}

// rounded is s with its seconds to the millisecond (float sums).
func (s Slice) rounded() Slice {
	s.P99, s.Max = math.Round(s.P99*1000)/1000, math.Round(s.Max*1000)/1000
	return s
}

func roundAll(xs []float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = float64(int64(x*1000+0.5)) / 1000
	}
	return out
}

func TestCheckSignals(t *testing.T) {
	c := CheckSignals([]SignalRecord{
		{Subject: "s.a", ID: "a:1", Version: "9"},
		{Subject: "s.a", ID: "a:2", Version: "10"}, // numeric: 10 > 9
		{Subject: "s.b", ID: "b:1", Version: "5"},
		{Subject: "s.a", ID: "a:2", Version: "10"}, // duplicate id, and not increasing
		{Subject: "s.b", ID: "b:0", Version: "4"},  // back in time
	})
	assert.Equal(t, 5, c.Signals)
	assert.Equal(t, 1, c.DuplicateIDs)
	assert.Equal(t, 2, c.Regressions)
	assert.Equal(t, map[string]string{"s.a": "10", "s.b": "4"}, c.Last)
	assert.Zero(t, CheckSignals(nil).Regressions)
}
