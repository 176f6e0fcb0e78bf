package harness

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

// NATSServer is a real nats-server process with JetStream, built from the
// nats-server module the test module requires (no binary to install).
type NATSServer struct {
	*Process
	// URL is the client URL, nats://127.0.0.1:<port>.
	URL string
	// Monitor is the monitoring base URL (/healthz, /varz, /jsz).
	Monitor string
}

// StartNATSServer runs nats-server -js on free loopback ports with its store
// in a test temp dir and waits until JetStream is healthy.
func StartNATSServer(t testing.TB) *NATSServer {
	t.Helper()
	bin := Build(t, "github.com/nats-io/nats-server/v2")
	port, monitor := Port(t, FreeAddr(t)), Port(t, FreeAddr(t))
	p := StartProcess(t, bin, nil, "-js", "-a", "127.0.0.1", "-p", strconv.Itoa(port),
		"-m", strconv.Itoa(monitor), "-sd", t.TempDir(), "--name", fmt.Sprintf("test-%d", port))
	n := &NATSServer{Process: p, URL: fmt.Sprintf("nats://127.0.0.1:%d", port), Monitor: fmt.Sprintf("http://127.0.0.1:%d", monitor)}
	p.WaitHTTP(t, n.Monitor+"/healthz?js-enabled-only=true", 30*time.Second)
	return n
}
