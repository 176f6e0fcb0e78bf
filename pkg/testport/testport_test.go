package testport

import (
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Free never repeats within the process, also when this test runs again
// in it (go test -count=N): the ports of earlier runs stay handed out.
func TestFreeNeverRepeatsAndIsFree(t *testing.T) {
	process.mu.Lock()
	before := map[int]bool{}
	for p := range process.handed {
		before[p] = true
	}
	process.mu.Unlock()

	seen := map[int]bool{}
	for range 500 {
		port, err := Free()
		require.NoError(t, err)
		require.False(t, seen[port], "port %d handed out twice", port)
		require.False(t, before[port], "port %d handed out by an earlier run too", port)
		seen[port] = true
	}
	port, err := Free()
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	require.NoError(t, err, "the port handed out is free to listen on")
	l.Close()
}

// When the kernel keeps offering ports already handed out (most of its
// range was, by a long -count run), Free finds unused ones itself, until
// none is left, and then says so.
func TestFreeLooksForPortsItselfWhenTheKernelRepeats(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	lo := busyPort - 10
	if lo < 1024 {
		lo = busyPort
	}
	hi := lo + 20
	a := &allocator{
		handed: map[int]bool{},
		ports:  func() (int, int) { return lo, hi },
	}
	first, err := kernelPort()
	require.NoError(t, err)
	a.offer = func() (int, error) { return first, nil } // always the same one
	got, err := a.free()
	require.NoError(t, err)
	assert.Equal(t, first, got, "the kernel's offer first")

	seen := map[int]bool{first: true}
	for {
		port, err := a.free()
		if err != nil {
			assert.ErrorContains(t, err, "were handed out by this process or are in use")
			break
		}
		require.False(t, seen[port], "port %d handed out twice", port)
		require.NotEqual(t, busyPort, port, "a port someone listens on is not free")
		require.True(t, port >= lo && port <= hi, "port %d is outside the range looked through", port)
		seen[port] = true
	}
	assert.GreaterOrEqual(t, len(seen), 2, "it found ports the kernel did not offer")
}
