package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/test/harness"
)

// freePortRun finds n consecutive free loopback ports.
func freePortRun(t *testing.T, n int) int {
	for attempt := 0; attempt < 50; attempt++ {
		base := harness.Port(t, harness.FreeAddr(t))
		if base+n > 65535 {
			continue
		}
		ok := true
		for p := base; p < base+n && ok; p++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				continue
			}
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no run of free ports")
	return 0
}

// `make run` is `go run ./services/devstack`: the whole stack in one process
// with embedded NATS and the embedded Redis-protocol store.
func TestDevStackRunsTheWholeStack(t *testing.T) {
	body, err := os.ReadFile(fixture)
	require.NoError(t, err)
	upstream := harness.NewUpstream(t, body)
	bin := harness.Build(t, "github.com/pollgrid/pollgrid/services/devstack")
	natsPort := harness.Port(t, harness.FreeAddr(t))
	httpPort := freePortRun(t, 4)
	p := harness.StartProcess(t, bin, map[string]string{
		"NATS_PORT":       strconv.Itoa(natsPort),
		"HTTP_PORT":       strconv.Itoa(httpPort),
		"CONNECTORS_FILE": harness.WriteFile(t, "connectors.json", connectorsJSON(upstream.URL, "noaa-dev")),
		"LOG_LEVEL":       "warn",
	})
	require.Eventually(t, func() bool { return strings.Contains(p.Stdout.String(), "pollgrid is running") },
		60*time.Second, 50*time.Millisecond, "no banner")
	assert.Contains(t, p.Stdout.String(), fmt.Sprintf("nats://127.0.0.1:%d", natsPort))
	assert.Contains(t, p.Stdout.String(), fmt.Sprintf("http://127.0.0.1:%d/metrics/connectors", httpPort))
	assert.Contains(t, p.Stdout.String(), "loopback allowed for local upstreams (UPSTREAM_ALLOW=127.0.0.0/8,::1)",
		"make run polls upstreams on this machine, and says so")

	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", natsPort))
	require.NoError(t, err)
	defer nc.Close()
	sigs := harness.CollectSignals(t, nc)
	// The first poll may have run before we subscribed: wait for the data
	// to change once, which must then be signalled.
	require.Eventually(t, func() bool { return upstream.Requests.Load() >= 1 }, 30*time.Second, 50*time.Millisecond)
	updated := strings.Replace(string(body), firstSent, `"sent": "2024-07-18T13:05:00-07:00"`, 1)
	upstream.Set(http.StatusOK, []byte(updated))
	require.Eventually(t, func() bool {
		for _, m := range sigs.All() {
			if m.Subject == "signals.weather-noaa.noaa-dev" && m.Header.Get("ce-subject") == firstAlertID {
				return true
			}
		}
		return false
	}, 30*time.Second, 50*time.Millisecond, "no signal from the dev stack")

	// Poll reports reach the aggregator in batches, a second or two later.
	require.Eventually(t, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics/connectors/noaa-dev", httpPort))
		require.NoError(t, err)
		defer resp.Body.Close()
		var m connectorMetrics
		return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&m) == nil && m.Successes >= 1
	}, 30*time.Second, 100*time.Millisecond, "the aggregator never counted a success")

	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 0, p.Wait(30*time.Second), "SIGTERM shuts the stack down cleanly")
}

// Every service binary validates a config with -check-config: exit 1 and
// every problem listed, or exit 0.
func TestCheckConfigFlag(t *testing.T) {
	bin := harness.Build(t, "github.com/pollgrid/pollgrid/services/worker")
	bad := harness.WriteFile(t, "bad.json", `{"connectors": [
		{"name": "Bad Name", "type": "weather-noaa", "interval": "5", "config": {"area": "CA", "user_agent": "x"}},
		{"name": "ok", "type": "weather-nooa", "config": {}}]}`)
	p := harness.StartProcess(t, bin, map[string]string{"CONNECTORS_FILE": bad}, "-check-config")
	require.Equal(t, 1, p.Wait(30*time.Second))
	out := p.Stderr.String()
	assert.Contains(t, out, `connectors[0].name: "Bad Name" is not a valid name`)
	assert.Contains(t, out, `connectors[0].interval: "5" is not a duration (write "5s")`)
	assert.Contains(t, out, `connectors[1].type: unknown type "weather-nooa"`)
	assert.Contains(t, out, `did you mean "weather-noaa"?`)

	good := harness.WriteFile(t, "good.json", connectorsJSON("https://api.weather.gov", "fine"))
	p = harness.StartProcess(t, bin, map[string]string{"CONNECTORS_FILE": good}, "-check-config")
	require.Equal(t, 0, p.Wait(30*time.Second))
	assert.Contains(t, p.Stdout.String(), "ok, 1 connectors (1 enabled)")

	// Starting (not checking) with the bad file exits non-zero with the list.
	p = harness.StartProcess(t, bin, map[string]string{"CONNECTORS_FILE": bad})
	require.Equal(t, 1, p.Wait(30*time.Second))
	assert.Contains(t, p.Stderr.String(), "3 problems")
}
