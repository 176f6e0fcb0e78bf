package harness

import (
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Terminate sends SIGTERM and waits up to d for the process to end; it
// returns the exit code (-1: still running after d, or killed by a signal).
func (p *Process) Terminate(d time.Duration) int {
	if p.Exited() {
		return p.Cmd.ProcessState.ExitCode()
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	return p.Wait(d)
}

// Kill ends the process at once with SIGKILL (a crash) and waits for it.
func (p *Process) Kill() {
	if !p.Exited() {
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
}

// WaitHTTP waits up to d for url to answer 200, failing the test if the
// process exits first or the time runs out.
func (p *Process) WaitHTTP(t testing.TB, url string, d time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		require.False(t, p.Exited(), "%s exited while waiting for %s:\n%s", p.Cmd.Path, url, tail(p.Stderr.String(), 2000))
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
	require.Failf(t, "not ready", "%s did not answer 200 within %s", url, d)
}
