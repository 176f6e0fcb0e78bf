//go:build bench

package bench

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/bus"
)

// tickRecorder is the stand-in for the workers in the scheduler
// benchmarks: it acks every tick at once and records when it came.
type tickRecorder struct {
	mu    sync.Mutex
	keep  time.Time // records ticks received from then on; zero: none
	recs  []TickRecord
	total int
	bad   int
	// first is the first tick: when it was received and when nats-server
	// stored it.
	firstReceived, firstStored time.Time
}

// consumeTicks creates the durable "workers" consumer on TICKS, filtered
// to tick subjects (TICKS may also hold message-schedule definitions on
// pollgrid.schedule.>, which must never be consumed), and records into rec.
func (st *stack) consumeTicks(rec *tickRecorder) {
	t := st.t
	t.Helper()
	stream := st.waitStream(bus.TicksStream, 3*time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:        "workers",
		FilterSubjects: []string{bus.TickPrefix + ".>"},
		AckPolicy:      jetstream.AckExplicitPolicy,
		MaxAckPending:  20_000,
		MaxDeliver:     -1,
	})
	require.NoError(t, err, "create the tick consumer")
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		received := time.Now()
		_ = msg.Ack()
		rec.add(received, msg)
	}, jetstream.PullMaxMessages(2_000))
	require.NoError(t, err)
	t.Cleanup(cc.Stop)
}

func (r *tickRecorder) add(received time.Time, msg jetstream.Msg) {
	tick, err := bus.DecodeTick(msg.Data())
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total++
	if r.total == 1 {
		r.firstReceived = received
		if meta, err := msg.Metadata(); err == nil {
			r.firstStored = meta.Timestamp
		}
	}
	if err != nil {
		r.bad++
		return
	}
	if r.keep.IsZero() || received.Before(r.keep) {
		return
	}
	intended, _ := IntendedTime(msg.Headers(), tick)
	r.recs = append(r.recs, TickRecord{Connector: connectorIndex(tick.GetConnector()), Received: received, Intended: intended})
}

func (r *tickRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}

// keepFrom starts recording ticks received from t on.
func (r *tickRecorder) keepFrom(t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keep = t
}

func (r *tickRecorder) records() []TickRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]TickRecord(nil), r.recs...)
}

// signalRecorder reads SIGNALS from its first message on, as a downstream
// consumer would.
type signalRecorder struct {
	mu      sync.Mutex
	recs    []SignalRecord
	lastSeq uint64
	bad     int
}

func (st *stack) recordSignals() *signalRecorder {
	t := st.t
	t.Helper()
	stream := st.waitStream(bus.SignalsStream, 3*time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	r := &signalRecorder{}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		rec := SignalRecord{Subject: msg.Subject(), ID: msg.Headers().Get("ce-id")}
		sig, err := bus.DecodeSignal(msg.Data())
		meta, _ := msg.Metadata()
		r.mu.Lock()
		defer r.mu.Unlock()
		if err != nil {
			r.bad++
		} else {
			rec.Version = sig.GetVersion()
		}
		r.recs = append(r.recs, rec)
		if meta != nil {
			r.lastSeq = meta.Sequence.Stream
		}
	})
	require.NoError(t, err)
	t.Cleanup(cc.Stop)
	return r
}

// waitCaughtUp waits until the recorder has read every message SIGNALS holds.
func (r *signalRecorder) waitCaughtUp(st *stack) []SignalRecord {
	st.t.Helper()
	stream := st.waitStream(bus.SignalsStream, time.Minute)
	waitFor(st.t, time.Minute, "the signal recorder to catch up", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		info, err := stream.Info(ctx)
		if err != nil {
			return false
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.lastSeq >= info.State.LastSeq
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]SignalRecord(nil), r.recs...)
}
