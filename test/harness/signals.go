package harness

import (
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/bus"
)

// Signals records every message a plain core subscriber sees on signals.>.
type Signals struct {
	mu   sync.Mutex
	msgs []*nats.Msg
}

// CollectSignals subscribes nc to signals.> until the test ends. Subscribe
// before the first poll: a core subscriber misses what came before it.
func CollectSignals(t testing.TB, nc *nats.Conn) *Signals {
	t.Helper()
	s := &Signals{}
	sub, err := nc.Subscribe(bus.SignalPrefix+".>", func(m *nats.Msg) {
		s.mu.Lock()
		s.msgs = append(s.msgs, m)
		s.mu.Unlock()
	})
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return s
}

// All returns the messages seen so far.
func (s *Signals) All() []*nats.Msg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*nats.Msg(nil), s.msgs...)
}
