package ops

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	devstack "github.com/pollgrid/pollgrid/services/devstack/stack"
	"github.com/pollgrid/pollgrid/test/harness"
)

// make run is the README's front door: it starts the whole stack, and
// Ctrl-C (SIGINT to the terminal's whole process group: make and the stack)
// stops it cleanly: the stack exits 0 and make reports no error. (GNU make
// itself always ends by the SIGINT it received, once its recipe has ended,
// as every program interrupted from a terminal does: the shell's $? is 130.)
func TestMakeRunStopsCleanlyOnCtrlC(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	repo := filepath.Join(filepath.Dir(file), "..", "..")
	httpPort := freeRun(t, devstack.Workers+2)
	natsPort := freeRun(t, 1)
	connectors := filepath.Join(t.TempDir(), "connectors.json")
	// One connector whose upstream is nowhere: its polls fail, which is
	// what a machine without internet sees, and must not keep Ctrl-C from
	// ending the stack.
	require.NoError(t, os.WriteFile(connectors, []byte(`{"connectors": [{"name": "nowhere", "type": "http-json",
		"interval": "1s", "config": {"url": "http://127.0.0.1:9/items", "items": ".[]", "id": ".id", "version": ".v"}}]}`), 0o600))

	var out harness.SyncBuffer // make's output, written while the test reads it
	cmd := exec.Command("make", "-s", "run")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "HTTP_PORT="+strconv.Itoa(httpPort), "NATS_PORT="+strconv.Itoa(natsPort),
		"CONNECTORS_FILE="+connectors, "REDIS_URL=", "NATS_URL=", "LOG_FORMAT=text")
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })

	healthz := fmt.Sprintf("http://127.0.0.1:%d/healthz", httpPort)
	deadline := time.Now().Add(5 * time.Minute) // make run builds the stack first
	for {
		resp, err := http.Get(healthz)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("make run ended before the stack answered (%v):\n%s", err, out.String())
		case <-time.After(200 * time.Millisecond):
		}
		require.True(t, time.Now().Before(deadline), "the stack never answered %s:\n%s", healthz, out.String())
	}
	time.Sleep(2 * time.Second) // a few polls (and failures) under way

	require.NoError(t, syscall.Kill(-cmd.Process.Pid, syscall.SIGINT), "Ctrl-C")
	select {
	case err := <-done:
		var exit *exec.ExitError
		if err != nil {
			require.ErrorAs(t, err, &exit, "make run: %v", err)
			status := exit.Sys().(syscall.WaitStatus)
			assert.True(t, status.Signaled() && status.Signal() == syscall.SIGINT,
				"make ends by the Ctrl-C it got, not with an error of its recipe (%v):\n%s", err, out.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("make run did not end within 60 s of Ctrl-C:\n%s", out.String())
	}
	assert.NotContains(t, out.String(), "make: ***", "make reports no error")
	assert.Contains(t, out.String(), "pollgrid devstack: stopped cleanly")
}

// freeRun returns the first of n consecutive loopback ports nothing
// listens on (the dev stack takes HTTP_PORT and the ports after it).
func freeRun(t *testing.T, n int) int {
	t.Helper()
	for range 100 {
		base := 20000 + rand.IntN(20000)
		free := true
		for p := base; p < base+n && free; p++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				free = false
				continue
			}
			l.Close()
		}
		if free {
			return base
		}
	}
	t.Fatal("no run of free ports")
	return 0
}
