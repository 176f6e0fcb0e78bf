package worker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/poll"
	"github.com/pollgrid/pollgrid/pkg/store"
)

// A connector polled at least one and a half intervals (its tick's) after
// its previous poll fell behind: a fire replaced its waiting tick.
func TestBehindBy(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		prev      store.State
		polled    time.Time
		scheduled time.Duration
		gap       time.Duration
		behind    bool
	}{
		{"on time", store.State{LastPoll: t0}, t0.Add(1200 * time.Millisecond), time.Second, 1200 * time.Millisecond, false},
		{"a fire replaced", store.State{LastPoll: t0}, t0.Add(2800 * time.Millisecond), time.Second, 2800 * time.Millisecond, true},
		{"never polled", store.State{}, t0, time.Second, 0, false},
		{"a back-off counts from its end", store.State{LastPoll: t0, NotBefore: t0.Add(time.Minute)}, t0.Add(61 * time.Second), time.Second, time.Second, false},
		{"a pause counts from the resume", store.State{LastPoll: t0, ResumedAt: t0.Add(time.Hour)}, t0.Add(time.Hour + time.Second), time.Second, time.Second, false},
		{"too long to be the workers' pace", store.State{LastPoll: t0}, t0.Add(time.Hour), time.Minute, time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gap, behind := behindBy(tc.prev, tc.polled, tc.scheduled)
			assert.Equal(t, tc.behind, behind)
			if tc.gap > 0 {
				assert.Equal(t, tc.gap, gap)
			}
		})
	}
}

// What a worker asks of the scheduler for a connector that is not adaptive,
// poll after poll: a sparser schedule when it fell behind (not again while
// the scheduler takes it), its own interval once the stretched ticks come
// on time (at most once per AdaptEvery), nothing at its own interval.
func TestPaceRequests(t *testing.T) {
	c := feed() // every minute
	clock := &fakeClock{now: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	w := &Worker{opts: Options{Now: clock.Now, AdaptEvery: DefaultAdaptEvery}}
	in := &instance{cfg: c, revision: 7}
	var st store.State
	// poll runs one poll at the clock, of a tick fired every scheduled.
	poll := func(scheduled time.Duration) *adaptRequest {
		out := poll.Outcome{}
		out.Commit.State = st
		out.Commit.State.LastPoll = clock.Now()
		req := w.adapt(in, st, &out, scheduled)
		st = out.Commit.State
		return req
	}

	assert.Nil(t, poll(time.Minute), "the first poll")
	clock.advance(time.Minute)
	assert.Nil(t, poll(time.Minute), "on time")
	assert.True(t, st.AdaptRequestedAt.IsZero())

	clock.advance(170 * time.Second)
	req := poll(time.Minute)
	if assert.NotNil(t, req, "a poll almost three minutes after the last") {
		assert.Equal(t, bus.Adapt{Connector: "feed", Type: feedType, BehindSeconds: 170, ScheduledSeconds: 60, Revision: 7}, req.Adapt)
	}
	clock.advance(170 * time.Second)
	assert.Nil(t, poll(time.Minute), "behind again, but asked already: the stretch is on its way")

	// The schedule fires every 3 minutes now, and the polls come on time.
	clock.advance(3 * time.Minute)
	req = poll(3 * time.Minute)
	if assert.NotNil(t, req, "caught up") {
		assert.Equal(t, bus.Adapt{Connector: "feed", Type: feedType, IntervalSeconds: 60, Revision: 7}, req.Adapt)
	}
	clock.advance(time.Minute + 50*time.Second)
	assert.Nil(t, poll(2*time.Minute), "caught up again, within AdaptEvery of the last request")
	clock.advance(2 * time.Minute)
	assert.NotNil(t, poll(2*time.Minute), "caught up again, AdaptEvery later")
	clock.advance(time.Minute)
	assert.Nil(t, poll(time.Minute), "back at its interval")
	assert.True(t, st.AdaptRequestedAt.IsZero())
	assert.Nil(t, poll(0), "a triggered poll asks nothing")
}
