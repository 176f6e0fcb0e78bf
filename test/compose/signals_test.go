//go:build compose

package compose

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/test/bench"
)

// connectorsOf is the names of the connectors whose signals arrived.
func connectorsOf(msgs []*nats.Msg) []string {
	seen := map[string]bool{}
	for _, m := range msgs {
		if sig, err := bus.DecodeSignal(m.Data); err == nil {
			seen[sig.GetConnector()] = true
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// duplicateIDs counts the messages whose ce-id an earlier one had.
func duplicateIDs(msgs []*nats.Msg) int {
	ids := map[string]bool{}
	dup := 0
	for _, m := range msgs {
		id := m.Header.Get("ce-id")
		if ids[id] {
			dup++
		}
		ids[id] = true
	}
	return dup
}

// recorder reads the SIGNALS stream from its start, as a durable consumer
// of the signals would.
type recorder struct {
	mu      sync.Mutex
	recs    []bench.SignalRecord
	lastSeq uint64
}

func record(t *testing.T, nc *nats.Conn) *recorder {
	t.Helper()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, bus.SignalsStream)
	require.NoError(t, err, "the services create SIGNALS")
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	r := &recorder{}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		rec := bench.SignalRecord{Subject: msg.Subject(), ID: msg.Headers().Get("ce-id")}
		if sig, err := bus.DecodeSignal(msg.Data()); err == nil {
			rec.Version = sig.GetVersion()
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.recs = append(r.recs, rec)
		if meta, err := msg.Metadata(); err == nil {
			r.lastSeq = meta.Sequence.Stream
		}
	})
	require.NoError(t, err)
	t.Cleanup(cc.Stop)
	return r
}

// caughtUp waits until the recorder has read every message SIGNALS holds.
func (r *recorder) caughtUp(t *testing.T, js jetstream.JetStream) []bench.SignalRecord {
	t.Helper()
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stream, err := js.Stream(ctx, bus.SignalsStream)
		if err != nil {
			return false
		}
		info, err := stream.Info(ctx)
		if err != nil {
			return false
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.lastSeq >= info.State.LastSeq
	}, time.Minute, 100*time.Millisecond, "reading SIGNALS to its end")
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.recs)
}
