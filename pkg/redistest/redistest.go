// Package redistest starts a real redis-server for tests, one per test, on a
// free loopback port, so that leases, TTLs, Lua scripts and fencing are tested
// against the semantics production runs on (not an emulation).
package redistest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pollgrid/pollgrid/pkg/testport"
)

// NotFoundMessage is the test failure when redis-server is not installed.
const NotFoundMessage = `redis-server not found: run "make test" (it installs it) or apt-get install redis-server`

const (
	// startAttempts bounds the retries when another process takes the free
	// port between our probe and redis-server's bind.
	startAttempts = 5
	// readyTimeout bounds how long a fresh server may take to answer PING.
	readyTimeout = 10 * time.Second
)

// Server is one redis-server process owned by a test.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int

	mu   sync.Mutex
	proc *process // nil while stopped
}

type process struct {
	cmd    *exec.Cmd
	output *syncBuffer
	exited chan struct{} // closed once cmd.Wait returns
}

// Start runs a fresh redis-server (no persistence) on a free random loopback
// port and waits until it answers PING. The server is killed when the test
// ends. A missing binary fails the test: a skipped Redis test would hide that
// the guarantees it checks were never checked.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal(NotFoundMessage)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	t.Cleanup(s.Kill)

	var lastErr error
	for range startAttempts {
		port, err := testport.Free()
		if err != nil {
			t.Fatalf("redistest: find a free port: %v", err)
		}
		s.port = port
		if lastErr = s.start(); lastErr == nil {
			return s
		}
	}
	t.Fatalf("redistest: start redis-server after %d attempts: %v", startAttempts, lastErr)
	return nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is the server's address as a REDIS_URL.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Client returns a client of this server, closed when the test ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// Stop shuts the server down gracefully (SIGTERM) and waits for it to exit.
// It does nothing when the server is already stopped.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

// Kill ends the server at once (SIGKILL), as a crash or a cut network would,
// and waits for it to exit. It does nothing when the server is already stopped.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

// Restart stops the server and starts an empty one on the same port, so that
// existing clients reconnect to it. Data does not survive: persistence is off.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var err error
	// The port was ours a moment ago; another process may still grab it, or
	// the kernel may briefly refuse the bind, so retry on the same port.
	for range startAttempts {
		if err = s.start(); err == nil {
			return
		}
	}
	s.t.Fatalf("redistest: restart redis-server on port %d: %v", s.port, err)
}

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	<-p.exited
}

// start launches redis-server on s.port and waits until that very process
// answers. It checks the answering server's process id, because when another
// process won the port race our redis-server exits and someone else's server
// could answer PING on that port.
func (s *Server) start() error {
	out := &syncBuffer{}
	cmd := exec.Command(s.bin,
		"--save", "",
		"--appendonly", "no",
		"--bind", "127.0.0.1",
		"--port", strconv.Itoa(s.port),
		"--dir", s.dir,
		"--daemonize", "no",
	)
	cmd.Stdout = out
	cmd.Stderr = out
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", s.bin, err)
	}
	p := &process{cmd: cmd, output: out, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()

	if err := waitReady(s.Addr(), p); err != nil {
		_ = cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%w\nredis-server output:\n%s", err, out.String())
	}
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	return nil
}

func waitReady(addr string, p *process) error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{
		Addr:         addr,
		DialTimeout:  time.Second,
		MaxRetries:   -1,
		PoolSize:     1,
		ReadTimeout:  time.Second,
		WriteTimeout: time.Second,
	})
	defer rdb.Close()

	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	want := strconv.Itoa(p.cmd.Process.Pid)
	for {
		info, err := rdb.Info(ctx, "server").Result()
		if err == nil {
			if pid := infoField(info, "process_id"); pid == want {
				return nil
			}
			err = errors.New("another process answers on this port")
		}
		select {
		case <-p.exited:
			return fmt.Errorf("redis-server exited before answering on %s", addr)
		case <-ctx.Done():
			return fmt.Errorf("redis-server did not answer on %s within %s: %w", addr, readyTimeout, err)
		case <-tick.C:
		}
	}
}

func infoField(info, name string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// syncBuffer collects the server's output for failure messages; the process
// writes to it from exec's copying goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
