package harness

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/redistest"
)

// ComposeEnv is the environment docker-compose.yml gives service (with no
// .env and an empty shell environment: the defaults a first `docker compose
// up` runs with).
func ComposeEnv(t testing.TB, composeFile, service string) map[string]string {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{composeFile},
		cli.WithWorkingDirectory(filepath.Dir(composeFile)), cli.WithEnv(nil), cli.WithProfiles([]string{"*"}))
	require.NoError(t, err)
	p, err := opts.LoadProject(context.Background())
	require.NoError(t, err, "load %s", composeFile)
	s, ok := p.Services[service]
	require.True(t, ok, "no service %q in %s", service, composeFile)
	env := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	return env
}

// Topology is the docker-compose.yml topology as local OS processes: real
// nats-server and redis-server, and each pollgrid service a binary of its own.
// Fault and load suites add, stop and kill services on it.
type Topology struct {
	t        testing.TB
	compose  string
	override map[string]string
	NATS     *NATSServer
	Redis    *redistest.Server
	// Services are the pollgrid processes started so far, by service name.
	Services map[string][]*ServiceProcess
}

// ServiceProcess is one pollgrid service binary running.
type ServiceProcess struct {
	*Process
	Name string
	// HTTP is the base URL of its /healthz, /readyz and /metrics.
	HTTP string
	Env  map[string]string
}

// NewTopology starts nats-server and redis-server. Services get the env the
// compose file gives them, with NATS_URL, REDIS_URL and HTTP_ADDR pointed at
// loopback, the trace exporter off (no collector runs), UPSTREAM_ALLOW set
// to LoopbackAllow (the tests' upstreams run on loopback), and override on
// top (CONNECTORS_FILE at least).
func NewTopology(t testing.TB, composeFile string, override map[string]string) *Topology {
	t.Helper()
	return &Topology{
		t: t, compose: composeFile, override: override,
		NATS: StartNATSServer(t), Redis: redistest.Start(t),
		Services: map[string][]*ServiceProcess{},
	}
}

// Start runs one more replica of service (scheduler, worker, aggregator)
// and waits until its /readyz answers.
func (tp *Topology) Start(service string) *ServiceProcess {
	t := tp.t
	t.Helper()
	env := ComposeEnv(t, tp.compose, service)
	delete(env, "OTEL_EXPORTER_OTLP_ENDPOINT")
	addr := FreeAddr(t)
	env["NATS_URL"], env["REDIS_URL"], env["HTTP_ADDR"] = tp.NATS.URL, tp.Redis.URL(), addr
	env["UPSTREAM_ALLOW"] = LoopbackAllow
	for k, v := range tp.override {
		env[k] = v
	}
	bin := Build(t, "github.com/pollgrid/pollgrid/services/"+service)
	sp := &ServiceProcess{Process: StartProcess(t, bin, env), Name: fmt.Sprintf("%s-%d", service, len(tp.Services[service])+1),
		HTTP: "http://" + addr, Env: env}
	sp.WaitHTTP(t, sp.HTTP+"/readyz", 30*time.Second)
	tp.Services[service] = append(tp.Services[service], sp)
	return sp
}

// Running lists the processes of service that have not exited.
func (tp *Topology) Running(service string) []*ServiceProcess {
	var out []*ServiceProcess
	for _, sp := range tp.Services[service] {
		if !sp.Exited() {
			out = append(out, sp)
		}
	}
	return out
}
