package bench

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseStatCPU(t *testing.T) {
	for _, tc := range []struct {
		name string
		stat string
		want int64
		err  bool
	}{
		{name: "plain", want: 1234 + 56,
			stat: "4242 (nats-server) S 1 4242 4242 0 -1 4194560 2000 0 0 0 1234 56 0 0 20 0 12 0 100 1000000 5000 18446744073709551615"},
		{name: "spaces and parentheses in the name", want: 7 + 3,
			stat: "17 (a (b) c) R 1 17 17 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 5 100 10"},
		{name: "truncated", stat: "17 (x) R 1 2 3", err: true},
		{name: "no name", stat: "17 x R", err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatCPU(tc.stat)
			if tc.err {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParseStatusRSS(t *testing.T) {
	status := "Name:\tredis-server\nVmPeak:\t  200000 kB\nVmHWM:\t   9000 kB\nVmRSS:\t    8192 kB\nThreads:\t5\n"
	rss, err := parseStatusKB(status, "VmRSS")
	require.NoError(t, err)
	assert.Equal(t, int64(8192*1024), rss)
	_, err = parseStatusKB("Name:\tx\n", "VmRSS")
	assert.Error(t, err, "a kernel thread has no VmRSS")
}

func TestParseSystemCPU(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	stat := "cpu  100 5 50 800 40 3 2 0 30 0\ncpu0 50 2 25 400 20 1 1 0 15 0\nintr 1 2 3\n"
	c, err := parseSystemCPU(stat)
	require.NoError(t, err)
	assert.Equal(t, int64(100+5+50+3+2), c.Busy, "idle and iowait are not busy; guest is inside user already")
	assert.Equal(t, int64(100+5+50+800+40+3+2), c.Total)

	later := SystemCPU{Busy: c.Busy + 20, Total: c.Total + 200}
	assert.InDelta(t, 0.10, BusyFraction(c, later), 1e-9)
	assert.Zero(t, BusyFraction(c, c), "no time passed")

	_, err = parseSystemCPU("intr 1 2 3\n")
	assert.Error(t, err)
}

// The live readers work on this very process.
func TestReadOwnProcess(t *testing.T) {
	_, err := ProcCPU(os.Getpid())
	require.NoError(t, err)
	rss, err := ProcRSS(os.Getpid())
	require.NoError(t, err)
	assert.Greater(t, rss, int64(1<<20), "a Go test binary holds more than 1 MiB")
	_, err = ReadSystemCPU()
	require.NoError(t, err)
	assert.Positive(t, ClockTick())
	_, err = ProcCPU(-1)
	assert.Error(t, err)
}
