// Package topology runs the docker-compose.yml topology as local processes:
// real nats-server and redis-server, two schedulers, three workers and an
// aggregator, each its own OS process with the environment the compose file
// gives it (hosts and ports moved to loopback).
package topology

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/test/harness"
)

const fixtures = "../../pkg/connectors/weather-noaa/testdata"

// connectors are polled every second; their fixture is chosen by area.
var connectors = map[string]string{
	"noaa-wa": `"area": "WA"`, "noaa-az": `"area": "AZ"`, "noaa-or": `"zone": "ORZ004"`, "noaa-ca": `"area": "CA"`,
}

// upstream replays the NOAA fixtures: the WA area file for area=WA, the zone
// file for /alerts/active/zone/..., the point file for everything else.
func upstream(t *testing.T) *httptest.Server {
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(fixtures, name))
		require.NoError(t, err)
		return b
	}
	wa, zone, point := read("alerts_active_area_WA_2024.json"), read("alerts_active_zone_ORZ004_2019.json"), read("alerts_active_point_2024.json")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/geo+json")
		switch {
		case strings.Contains(r.URL.Path, "/zone/"):
			_, _ = w.Write(zone)
		case r.URL.Query().Get("area") == "WA":
			_, _ = w.Write(wa)
		default:
			_, _ = w.Write(point)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func connectorsFile(t *testing.T, baseURL string) string {
	var entries []string
	for name, where := range connectors {
		entries = append(entries, fmt.Sprintf(`{"name": %q, "type": "weather-noaa", "interval": "1s", "timeout": "900ms",
			"retries": {"max": 0}, "config": {%s, "user_agent": "(pollgrid topology test)", "base_url": %q}}`, name, where, baseURL))
	}
	return harness.WriteFile(t, "connectors.json", `{"connectors": [`+strings.Join(entries, ",\n")+`]}`)
}

// successes reads every connector's successful polls from the aggregator.
func successes(t *testing.T, aggregator string) map[string]int64 {
	out := map[string]int64{}
	for name := range connectors {
		resp, err := http.Get(aggregator + "/metrics/connectors/" + name)
		if err != nil {
			continue
		}
		var m struct {
			Successes int64 `json:"successes"`
		}
		if resp.StatusCode == http.StatusOK {
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&m))
			out[name] = m.Successes
		}
		resp.Body.Close()
	}
	return out
}

func isLeader(sp *harness.ServiceProcess) bool {
	resp, err := http.Get(sp.HTTP + "/metrics")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "pollgrid_scheduler_leader ") {
			return strings.TrimSpace(strings.TrimPrefix(line, "pollgrid_scheduler_leader ")) == "1"
		}
	}
	return false
}

func TestComposeTopologyAsProcesses(t *testing.T) {
	up := upstream(t)
	tp := harness.NewTopology(t, "../../docker-compose.yml", map[string]string{
		"CONNECTORS_FILE": connectorsFile(t, up.URL),
		"LOG_LEVEL":       "warn",
	})
	nc, err := nats.Connect(tp.NATS.URL)
	require.NoError(t, err)
	defer nc.Close()
	var mu sync.Mutex
	signalled := map[string]int{}
	_, err = nc.Subscribe("signals.>", func(m *nats.Msg) {
		mu.Lock()
		signalled[m.Subject]++
		mu.Unlock()
	})
	require.NoError(t, err)
	require.NoError(t, nc.Flush())

	agg := tp.Start("aggregator")
	for i := 0; i < 3; i++ {
		tp.Start("worker")
	}
	for i := 0; i < 2; i++ {
		tp.Start("scheduler")
	}
	// The compose environment reached the processes.
	assert.Equal(t, "20s", tp.Services["worker"][0].Env["WORKER_GRACE"])

	// Signals flow for every connector, and the aggregator counts the polls.
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for name := range connectors {
			if signalled["signals.weather-noaa."+name] == 0 {
				return false
			}
		}
		return true
	}, 30*time.Second, 50*time.Millisecond, "a signal from every connector")
	require.Eventually(t, func() bool { return len(successes(t, agg.HTTP)) == len(connectors) }, 15*time.Second, 100*time.Millisecond)

	// Stop the leading scheduler and one worker: every connector keeps being polled.
	var leader *harness.ServiceProcess
	require.Eventually(t, func() bool {
		for _, s := range tp.Running("scheduler") {
			if isLeader(s) {
				leader = s
				return true
			}
		}
		return false
	}, 15*time.Second, 100*time.Millisecond, "one scheduler leads")
	assert.Equal(t, 0, leader.Terminate(30*time.Second), "the leader exits cleanly on SIGTERM")
	assert.Equal(t, 0, tp.Running("worker")[0].Terminate(40*time.Second), "a worker exits cleanly on SIGTERM")
	before := successes(t, agg.HTTP)
	require.Eventually(t, func() bool {
		now := successes(t, agg.HTTP)
		for name := range connectors {
			if now[name] < before[name]+2 {
				return false
			}
		}
		return true
	}, 30*time.Second, 200*time.Millisecond, "every connector is still polled after losing the leader and a worker (before: %v)", before)
	require.Len(t, tp.Running("scheduler"), 1)
	// NATS fires the ticks, so polls never depended on the leader; the
	// standby takes over keeping the schedules at its next campaign.
	assert.Eventually(t, func() bool { return isLeader(tp.Running("scheduler")[0]) }, 15*time.Second, 100*time.Millisecond,
		"the other scheduler took over")

	// SIGTERM shuts each remaining process down cleanly.
	var wg sync.WaitGroup
	for _, svc := range []string{"scheduler", "worker", "aggregator"} {
		for _, sp := range tp.Running(svc) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				assert.Equal(t, 0, sp.Terminate(30*time.Second), "%s exit code after SIGTERM", sp.Name)
			}()
		}
	}
	wg.Wait()
}
