//go:build compose

package compose

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/test/bench"
)

// project runs `docker compose` on the compose files of COMPOSE_FILE (as
// docker compose itself reads it), or on docker-compose.yml and
// compose-test.yml when it is unset, with the apply service applying the
// test's own copy of connectors.json.
type project struct {
	t     *testing.T
	files string
	// connectors is the connectors file the apply service mounts.
	connectors string
}

func newProject(t *testing.T) *project {
	t.Helper()
	files := os.Getenv("COMPOSE_FILE")
	if files == "" {
		real, err := filepath.Abs("../../docker-compose.yml")
		require.NoError(t, err)
		extra, err := filepath.Abs("compose-test.yml")
		require.NoError(t, err)
		files = real + string(filepath.ListSeparator) + extra
	}
	_, err := exec.LookPath("docker")
	require.NoError(t, err, "the tests run docker compose: make compose-test brings it")
	data, err := os.ReadFile("connectors.json")
	require.NoError(t, err)
	connectors := filepath.Join(t.TempDir(), "connectors.json")
	require.NoError(t, os.WriteFile(connectors, data, 0o644)) // read by pollctl's user, 65532
	return &project{t: t, files: files, connectors: connectors}
}

// run runs docker compose with args, and returns its standard output.
func (p *project) run(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", append([]string{"compose"}, args...)...)
	cmd.Env = append(os.Environ(), "COMPOSE_FILE="+p.files, "POLLGRID_TEST_CONNECTORS="+p.connectors)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), &commandError{args: cmd.Args, err: err, stderr: stderr.String()}
	}
	return stdout.String(), nil
}

// must is run that fails the test on an error.
func (p *project) must(timeout time.Duration, args ...string) string {
	p.t.Helper()
	out, err := p.run(timeout, args...)
	require.NoError(p.t, err)
	return out
}

type commandError struct {
	args   []string
	err    error
	stderr string
}

func (e *commandError) Error() string {
	return strings.Join(e.args, " ") + ": " + e.err.Error() + "\n" + strings.TrimSpace(e.stderr)
}

// container is one line of `docker compose ps --format json`.
type container struct {
	ID       string
	Name     string
	Service  string
	State    string
	Health   string
	ExitCode int
}

// containers lists the project's containers, stopped ones too.
func (p *project) containers() []container {
	p.t.Helper()
	out := p.must(time.Minute, "ps", "--all", "--format", "json")
	var list []container
	// One JSON object a line (compose 2.21 and later), or one array.
	if strings.HasPrefix(strings.TrimSpace(out), "[") {
		require.NoError(p.t, json.Unmarshal([]byte(out), &list))
		return list
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var c container
		require.NoError(p.t, json.Unmarshal(sc.Bytes(), &c), "docker compose ps: %s", sc.Text())
		list = append(list, c)
	}
	return list
}

// endpoint is host:port where a service's container port is published,
// reachable from this host (a port published on every address is asked on
// the loopback one, as a user's localhost would).
func (p *project) endpoint(service string, port int) string {
	p.t.Helper()
	out := strings.TrimSpace(p.must(time.Minute, "port", service, strconv.Itoa(port)))
	host, hostPort, err := net.SplitHostPort(out)
	require.NoError(p.t, err, "docker compose port %s %d: %q", service, port, out)
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, hostPort)
}

// docker runs a plain docker command and returns its standard output.
func docker(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "docker %s: %s", strings.Join(args, " "), stderr.String())
	return string(out)
}

// engineState is what the engine holds of the kinds `down -v` removes:
// kind → sorted ids or names.
func engineState(t *testing.T) map[string][]string {
	t.Helper()
	state := map[string][]string{}
	for kind, args := range map[string][]string{
		"containers": {"ps", "--all", "--quiet", "--no-trunc"},
		"volumes":    {"volume", "ls", "--quiet"},
		"networks":   {"network", "ls", "--quiet", "--no-trunc"},
	} {
		list := strings.Fields(docker(t, args...))
		slices.Sort(list)
		state[kind] = list
	}
	return state
}

// upstream reads the local upstream's record of what pollgrid did to it
// (test/bench/upstream).
type upstream struct {
	t   *testing.T
	url string
}

func (u upstream) get(path string, v any) {
	u.t.Helper()
	require.NoError(u.t, getJSON(u.url+path, v), "the upstream's %s", path)
}

func (u upstream) stats() bench.UpstreamStats {
	var s bench.UpstreamStats
	u.get("/stats", &s)
	return s
}

// polls is, per connector, the unix milliseconds of its requests since.
func (u upstream) polls(since time.Time) [][]int64 {
	var p bench.UpstreamPolls
	u.get("/polls?since="+strconv.FormatInt(since.UnixMilli(), 10), &p)
	return p.Times
}

func (u upstream) cuts(since time.Time) []bench.UpstreamCut {
	var c []bench.UpstreamCut
	u.get("/cuts?since="+strconv.FormatInt(since.UnixNano(), 10), &c)
	return c
}

func (u upstream) versions() []string {
	var v bench.UpstreamVersions
	u.get("/versions", &v)
	return v.Last
}

var client = &http.Client{Timeout: 10 * time.Second}

func getJSON(url string, v any) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &httpError{url: url, status: resp.Status}
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

type httpError struct{ url, status string }

func (e *httpError) Error() string { return "GET " + e.url + ": " + e.status }

// metric sums the samples of one metric in a Prometheus text exposition.
func metric(text, name string) (float64, bool) {
	var sum float64
	found := false
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue // another metric whose name starts with this one
		}
		fields := strings.Fields(rest[strings.LastIndex(rest, "}")+1:])
		if len(fields) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(fields[0], 64); err == nil {
			sum += v
			found = true
		}
	}
	return sum, found
}
