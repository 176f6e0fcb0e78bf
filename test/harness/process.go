package harness

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var (
	buildMu  sync.Mutex
	buildDir string
	built    = map[string]string{}
)

// Build compiles a main package of the workspace once per test binary and
// returns the executable's path.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	return BuildTagged(t, pkg, "")
}

// BuildTagged is Build with build tags (comma-separated, as go build -tags
// takes them), e.g. "failpoints" for a worker the fault suite kills at a
// named point of its poll.
func BuildTagged(t testing.TB, pkg, tags string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	key := pkg + " " + tags
	if path, ok := built[key]; ok {
		return path
	}
	if buildDir == "" {
		removeStaleBuilds()
		dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-*", buildPrefix, os.Getpid()))
		require.NoError(t, err)
		buildDir = dir
	}
	out := filepath.Join(buildDir, filepath.Base(pkg))
	if tags != "" {
		out += "-" + strings.ReplaceAll(tags, ",", "-")
	}
	cmd := exec.Command("go", "build", "-tags", tags, "-o", out, pkg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Run(), "go build %s: %s", pkg, stderr.String())
	built[key] = out
	return out
}

// buildPrefix names the folders Build writes, each with the test process's
// pid: a test binary cannot remove its own when it exits (no hook runs
// then), so the next one removes those whose process is gone.
const buildPrefix = "pollgrid-bin-pid"

// removeStaleBuilds removes the build folders of test processes that no
// longer run (about 200 MB each).
func removeStaleBuilds() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), buildPrefix+"*"))
	for _, dir := range dirs {
		pid, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(filepath.Base(dir), buildPrefix), "-", 2)[0])
		if err != nil || pid == os.Getpid() {
			continue // not named so, or this process's
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(dir)
		}
	}
}

// Process is a real OS process under test.
type Process struct {
	Cmd    *exec.Cmd
	Stdout *SyncBuffer
	Stderr *SyncBuffer
	done   chan struct{}
	err    error
}

// StartProcess runs bin with exactly env (plus PATH and HOME) and kills it
// at the end of the test if it still runs.
func StartProcess(t testing.TB, bin string, env map[string]string, args ...string) *Process {
	t.Helper()
	p := &Process{Cmd: exec.Command(bin, args...), Stdout: &SyncBuffer{}, Stderr: &SyncBuffer{}, done: make(chan struct{})}
	p.Cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		p.Cmd.Env = append(p.Cmd.Env, k+"="+v)
	}
	p.Cmd.Stdout, p.Cmd.Stderr = p.Stdout, p.Stderr
	require.NoError(t, p.Cmd.Start())
	go func() { p.err = p.Cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		if !p.Exited() {
			_ = p.Cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s stdout:\n%s\nstderr (last 4000 bytes):\n%s", bin, p.Stdout, tail(p.Stderr.String(), 4000))
		}
	})
	return p
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits up to d for the process to end and returns its exit code
// (-1 when it did not end in time or was killed by a signal).
func (p *Process) Wait(d time.Duration) int {
	select {
	case <-p.done:
		return p.Cmd.ProcessState.ExitCode()
	case <-time.After(d):
		return -1
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[strings.LastIndex(s[:len(s)-n], "\n")+1:]
}
