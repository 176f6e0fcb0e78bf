package bench

import (
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
