package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// NATSServer is a real nats-server process with JetStream, built from the
// nats-server module the test module requires (no binary to install).
type NATSServer struct {
	*Process
	// URL is the client URL, nats://127.0.0.1:<port> (tls:// when the
	// server requires TLS).
	URL string
	// Monitor is the monitoring base URL (/healthz, /varz, /jsz).
	Monitor string
	// Name is the server's name (its cluster node name).
	Name string

	t    testing.TB
	bin  string
	args []string
}

// StartNATSServer runs nats-server -js on free loopback ports with its store
// in a test temp dir and waits until JetStream is healthy.
func StartNATSServer(t testing.TB) *NATSServer {
	t.Helper()
	port, monitor := Port(t, FreeAddr(t)), Port(t, FreeAddr(t))
	name := fmt.Sprintf("test-%d", port)
	n := &NATSServer{t: t, bin: Build(t, "github.com/nats-io/nats-server/v2"), Name: name,
		URL: fmt.Sprintf("nats://127.0.0.1:%d", port), Monitor: fmt.Sprintf("http://127.0.0.1:%d", monitor),
		args: []string{"-js", "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-m", strconv.Itoa(monitor), "-sd", t.TempDir(), "--name", name}}
	n.start()
	return n
}

// NATSConfig is what StartNATSServerConfig adds to a server's config file
// (the listen address, monitoring port, name and JetStream store are filled
// in).
type NATSConfig struct {
	// Extra is config text: tls {...}, authorization {...}, cluster {...}.
	Extra string
	// TLS makes the URL tls://.
	TLS bool
	// Port and ClusterPort are chosen when zero.
	Port, ClusterPort int
	// Name defaults to test-<port>.
	Name string
}

// StartNATSServerConfig runs nats-server with a config file built from c.
func StartNATSServerConfig(t testing.TB, c NATSConfig) *NATSServer {
	t.Helper()
	n := natsFromConfig(t, c)
	n.start()
	return n
}

func natsFromConfig(t testing.TB, c NATSConfig) *NATSServer {
	t.Helper()
	if c.Port == 0 {
		c.Port = Port(t, FreeAddr(t))
	}
	monitor := Port(t, FreeAddr(t))
	if c.Name == "" {
		c.Name = fmt.Sprintf("test-%d", c.Port)
	}
	scheme := "nats"
	if c.TLS {
		scheme = "tls"
	}
	conf := fmt.Sprintf("server_name: %q\nlisten: \"127.0.0.1:%d\"\nhttp: \"127.0.0.1:%d\"\njetstream { store_dir: %q }\n%s\n",
		c.Name, c.Port, monitor, t.TempDir(), c.Extra)
	path := filepath.Join(t.TempDir(), c.Name+".conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return &NATSServer{t: t, bin: Build(t, "github.com/nats-io/nats-server/v2"), Name: c.Name,
		URL: fmt.Sprintf("%s://127.0.0.1:%d", scheme, c.Port), Monitor: fmt.Sprintf("http://127.0.0.1:%d", monitor),
		args: []string{"-c", path}}
}

// StartNATSCluster runs a JetStream cluster of size nodes on loopback and
// waits until it has a meta leader. URLs lists every node for NATS_URL.
func StartNATSCluster(t testing.TB, size int) (nodes []*NATSServer, urls string) {
	t.Helper()
	ports := make([]int, size)
	clusterPorts := make([]int, size)
	for i := range size {
		ports[i], clusterPorts[i] = Port(t, FreeAddr(t)), Port(t, FreeAddr(t))
	}
	var routes []string
	for _, p := range clusterPorts {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	for i := range size {
		extra := fmt.Sprintf("cluster { name: pollgrid, listen: \"127.0.0.1:%d\", routes: [%s] }",
			clusterPorts[i], strings.Join(quoteAll(routes), ", "))
		nodes = append(nodes, natsFromConfig(t, NATSConfig{Extra: extra, Port: ports[i], Name: fmt.Sprintf("n%d", i+1)}))
	}
	// JetStream is healthy on a node only once the cluster has a leader:
	// launch every node, then wait for each.
	for _, n := range nodes {
		n.launch()
	}
	var all []string
	for _, n := range nodes {
		n.waitReady()
		all = append(all, n.URL)
	}
	return nodes, strings.Join(all, ",")
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = strconv.Quote(v)
	}
	return out
}

func (n *NATSServer) start() {
	n.t.Helper()
	n.launch()
	n.waitReady()
}

func (n *NATSServer) launch() { n.Process = StartProcess(n.t, n.bin, nil, n.args...) }

func (n *NATSServer) waitReady() {
	n.t.Helper()
	n.WaitHTTP(n.t, n.Monitor+"/healthz?js-enabled-only=true", 60*time.Second)
}

// Restart starts the server again with the same ports, config and store
// (after Kill or Terminate) and waits until JetStream is enabled.
func (n *NATSServer) Restart() {
	n.t.Helper()
	if !n.Exited() {
		n.Kill()
	}
	n.start()
}
