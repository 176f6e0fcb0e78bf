package bench

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pollgrid/pollgrid/pkg/bus"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

func TestIntendedTime(t *testing.T) {
	due := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		header nats.Header
		tick   *pollgridv1.Tick
		want   time.Time
		ok     bool
	}{
		{name: "fired by NATS: next fire minus the interval",
			header: nats.Header{ScheduleNextHeader: {"2026-11-26T10:00:10Z"}},
			tick:   &pollgridv1.Tick{Interval: durationpb.New(10 * time.Second)},
			want:   due, ok: true},
		{name: "published by the scheduler: due_at",
			tick: &pollgridv1.Tick{DueAt: timestamppb.New(due)}, want: due, ok: true},
		{name: "header but no interval: due_at",
			header: nats.Header{ScheduleNextHeader: {"purge"}},
			tick:   &pollgridv1.Tick{DueAt: timestamppb.New(due)}, want: due, ok: true},
		{name: "neither", tick: &pollgridv1.Tick{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Through the wire, as the benchmark reads ticks.
			data, err := bus.EncodeTick(&pollgridv1.Tick{Connector: "c1", ConnectorType: "http-json",
				DueAt: tc.tick.DueAt, Interval: tc.tick.Interval})
			assert.NoError(t, err)
			tick, err := bus.DecodeTick(data)
			assert.NoError(t, err)
			got, ok := IntendedTime(tc.header, tick)
			assert.Equal(t, tc.ok, ok)
			assert.True(t, tc.want.Equal(got), "got %s", got)
		})
	}
}

func TestAnalyseTicks(t *testing.T) {
	from := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	to := from.Add(20 * time.Second)
	at := func(s float64) time.Time { return from.Add(time.Duration(s * float64(time.Second))) }
	recs := []TickRecord{
		// c0: on time.
		{Connector: 0, Intended: at(1), Received: at(1.1)},
		{Connector: 0, Intended: at(11), Received: at(11.1)},
		// c1: intended just before the window: not its fire, but received
		// inside, so delivered; its last fire lands after the window ends
		// within grace: still counted.
		{Connector: 1, Intended: at(-0.05), Received: at(0.2)},
		{Connector: 1, Intended: at(9.95), Received: at(10.2)},
		{Connector: 1, Intended: at(19.95), Received: at(20.2)},
		// c2: one fire only.
		{Connector: 2, Intended: at(5), Received: at(5.5)},
		// c3: a second fire far too late.
		{Connector: 3, Intended: at(3), Received: at(3)},
		{Connector: 3, Intended: at(13), Received: at(40)},
		// c4: no intended time.
		{Connector: 4, Received: at(2)},
		// before the window entirely.
		{Connector: 0, Intended: at(-9), Received: at(-8.9)},
	}
	w := AnalyseTicks(recs, 5, from, to, 10*time.Second, 2*time.Second)
	assert.Equal(t, 2, w.Allowed)
	assert.Equal(t, 7, w.Delivered)
	assert.Equal(t, 1, w.NoIntended)
	assert.Len(t, w.Lateness, 6)
	assert.InDelta(t, 0.25, w.Lateness[2], 1e-9)
	assert.Equal(t, 3, w.Missed, "c2 (one fire), c3 (too late) and c4 (no intended time)")
}
