package bench

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMeterOnThisProcess(t *testing.T) {
	m, err := StartMeter([]Proc{{Name: "self", PID: os.Getpid()}, {Name: "upstream", PID: os.Getpid(), Apart: true}})
	require.NoError(t, err)
	w := m.Stop()
	require.Len(t, w.Procs, 2)
	self, ok := w.Get("self")
	require.True(t, ok)
	require.NoError(t, self.Err)
	assert.GreaterOrEqual(t, self.CPU, time.Duration(0))
	assert.Positive(t, self.MaxRSS)
	assert.Equal(t, self.CPU, w.Sum(), "a process kept apart is not in the sum")
	assert.GreaterOrEqual(t, w.Others(), 0.0)

	// What the machine did beyond the processes measured.
	w = Window{Wall: 10 * time.Second, Machine: 12 * time.Second, Self: time.Second,
		Procs: []Usage{{CPU: 3 * time.Second}, {Proc: Proc{Apart: true}, CPU: 2 * time.Second}}}
	assert.InDelta(t, 0.6, w.Others(), 1e-9, "12 s busy − 1 s self − 5 s measured over 10 s")
	assert.Zero(t, Window{Wall: time.Second}.Others(), "unknown")

	_, err = StartMeter([]Proc{{Name: "gone", PID: -1}})
	assert.Error(t, err, "a process that is not running cannot be measured")
}

func TestWaitQuietReturnsOnceQuiet(t *testing.T) {
	q := WaitQuiet(context.Background(), QuietOptions{Threshold: 1.01, Sample: 10 * time.Millisecond})
	assert.True(t, q.OK, "nothing is busier than all CPUs")
	assert.Equal(t, "quiet", q.String())
	assert.Equal(t, "NOT QUIET", Quiet{}.String())
}
