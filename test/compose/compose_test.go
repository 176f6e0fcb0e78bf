//go:build compose

package compose

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/test/bench"
	"github.com/pollgrid/pollgrid/test/harness"
)

const (
	// connectors is how many compose-test.yml's upstream serves and
	// connectors.json polls: c0 … c5, every 2 s.
	connectors = 6
	workers    = 3
	// recoveryBound is how soon after a worker is killed its connectors
	// must be polled again (WORKER_ACK_WAIT and lease_ttl are 2 s).
	recoveryBound = 3 * time.Second
)

func TestComposeUp(t *testing.T) {
	p := newProject(t)
	// Nothing of an earlier run, so that what down -v leaves is this run's.
	p.must(5*time.Minute, "down", "--volumes", "--remove-orphans", "--timeout", "5")
	before := engineState(t)
	downDone := false
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := p.run(time.Minute, "logs", "--no-color", "--timestamps", "--tail", "60")
			t.Logf("docker compose logs (the last lines of each container):\n%s", logs)
		}
		if !downDone {
			if _, err := p.run(5*time.Minute, "down", "--volumes", "--remove-orphans", "--timeout", "5"); err != nil {
				t.Logf("cleaning up: %v", err)
			}
		}
	})

	start := time.Now()
	p.must(10*time.Minute, "up", "--detach", "--no-build", "--wait", "--wait-timeout", "300", "--scale", "worker="+strconv.Itoa(workers))
	t.Logf("docker compose up --wait: every healthcheck passed after %s", time.Since(start).Round(100*time.Millisecond))

	t.Run("every container runs and is healthy, the apply ran once and succeeded", func(t *testing.T) {
		count := map[string]int{}
		for _, c := range p.containers() {
			count[c.Service]++
			if c.Service == "apply" { // the one-shot: pollctl apply --prune, then exit
				assert.Equal(t, "exited", c.State, "%s", c.Name)
				assert.Zero(t, c.ExitCode, "%s: pollctl apply failed (docker compose logs apply)", c.Name)
				continue
			}
			assert.Equal(t, "running", c.State, "%s", c.Name)
			if c.Service != "upstream" { // the one container without a healthcheck (scratch, no probe)
				assert.Equal(t, "healthy", c.Health, "%s", c.Name)
			}
		}
		assert.Equal(t, workers, count["worker"], "worker replicas")
		assert.Equal(t, 2, count["scheduler"], "scheduler replicas")
		for _, svc := range []string{"nats", "redis", "prometheus", "aggregator", "upstream", "apply"} {
			assert.Equal(t, 1, count[svc], svc)
		}
	})

	up := upstream{t: t, url: "http://" + p.endpoint("upstream", 8090)}
	nc, err := nats.Connect("nats://"+p.endpoint("nats", 4222), nats.Name("compose-test"))
	require.NoError(t, err, "NATS on the published port 4222")
	defer nc.Close()
	sub := harness.CollectSignals(t, nc) // a plain subscriber of signals.>, as `nats sub` is
	stream := record(t, nc)

	t.Run("a subscriber of signals.> receives every connector's signals", func(t *testing.T) {
		require.Eventually(t, func() bool { return len(connectorsOf(sub.All())) == connectors }, time.Minute, 200*time.Millisecond,
			"signals from every connector (c0 … c%d); seen from %v", connectors-1, connectorsOf(sub.All()))
		for _, m := range sub.All() {
			name := m.Subject[strings.LastIndex(m.Subject, ".")+1:]
			assert.Equal(t, bus.SignalSubject("http-json", name), m.Subject)
			assert.Len(t, m.Header.Get("ce-id"), 32, "%s: ce-id", m.Subject)
			assert.Equal(t, "/connectors/"+name, m.Header.Get("ce-source"), m.Subject)
			assert.Regexp(t, `^pollgrid\.http-json\.(created|updated)$`, m.Header.Get("ce-type"), m.Subject)
		}
	})

	aggregator := "http://" + p.endpoint("aggregator", 8080)
	t.Run("the status page answers", func(t *testing.T) {
		resp, err := client.Get(aggregator + "/")
		require.NoError(t, err)
		page, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Contains(t, resp.Header.Get("Content-Type"), "text/html")
		assert.Contains(t, string(page), "pollgrid")
		var list admin.ListReply
		require.Eventually(t, func() bool {
			if getJSON(aggregator+"/api/connectors", &list) != nil {
				return false
			}
			return list.Counts[admin.HealthOK] == connectors
		}, time.Minute, 500*time.Millisecond, "every connector ok on the status page: %+v", list.Counts)
		assert.Equal(t, connectors, list.Total)
	})

	t.Run("prometheus scrapes every replica", func(t *testing.T) {
		prometheus := "http://" + p.endpoint("prometheus", 9090)
		want := map[string]int{"scheduler": 2, "worker": workers, "aggregator": 1}
		var got map[string]int
		// DNS service discovery and scrapes every 15 s.
		require.Eventually(t, func() bool {
			var targets struct {
				Data struct {
					ActiveTargets []struct {
						Labels map[string]string `json:"labels"`
						Health string            `json:"health"`
					} `json:"activeTargets"`
				} `json:"data"`
			}
			if getJSON(prometheus+"/api/v1/targets?state=active", &targets) != nil {
				return false
			}
			got = map[string]int{}
			for _, tg := range targets.Data.ActiveTargets {
				if tg.Health == "up" {
					got[tg.Labels["job"]]++
				}
			}
			return got["scheduler"] == want["scheduler"] && got["worker"] == want["worker"] && got["aggregator"] == want["aggregator"]
		}, 2*time.Minute, time.Second, "targets up per job: want %v", want)
		t.Logf("targets up: %v", got)
	})

	t.Run("a connector added to connectors.json is polled once apply runs again", func(t *testing.T) {
		// As docs/deploy.md says: edit the file, then
		// docker compose run --rm apply. No process is signalled: the
		// scheduler follows the catalog, the workers read it per tick.
		addConnector(t, p.connectors, connectors)
		applyAt := time.Now()
		out := p.must(2*time.Minute, "run", "--rm", "apply")
		t.Logf("docker compose run --rm apply:\n%s", strings.TrimSpace(out))
		assert.Contains(t, out, "c"+strconv.Itoa(connectors)+" created", "pollctl apply names the connector it created")
		assert.Contains(t, out, fmt.Sprintf(": 1 created, 0 changed, 0 deleted, %d unchanged", connectors), "only the difference is written")
		require.Eventually(t, func() bool {
			polls := up.polls(applyAt)
			return len(polls) > connectors && len(polls[connectors]) > 0
		}, time.Minute, 200*time.Millisecond, "c%d, added to connectors.json, polled", connectors)
		var list admin.ListReply
		require.Eventually(t, func() bool {
			return getJSON(aggregator+"/api/connectors", &list) == nil && list.Counts[admin.HealthOK] == connectors+1
		}, time.Minute, 500*time.Millisecond, "c%d ok on the status page: %+v", connectors, list.Counts)
		t.Logf("c%d polled and ok on the status page %s after the apply", connectors, time.Since(applyAt).Round(100*time.Millisecond))
	})

	t.Run("a killed worker's connectors are polled again within 3 s", func(t *testing.T) {
		// A kill that cuts a poll: the killed worker had one running. A poll
		// can end between the look and the kill; then another worker is
		// killed, up to all but one.
		var (
			killAt time.Time
			cuts   []bench.UpstreamCut
		)
		for attempt := 1; len(cuts) == 0 && attempt < workers; attempt++ {
			victim := busyWorker(t, p)
			killAt = time.Now()
			docker(t, "kill", victim.ID)
			t.Logf("docker kill %s", victim.Name)
			cuts = cutsOf(t, up, killAt)
			if len(cuts) == 0 {
				t.Logf("the kill of %s cut no poll: its poll ended first", victim.Name)
			}
		}
		require.NotEmpty(t, cuts, "no kill cut a poll: nothing was tested")
		for _, c := range cuts {
			after := time.Unix(0, c.NextNS).Sub(killAt)
			t.Logf("c%d: its poll cut by the kill, polled again %s after it", c.Connector, after.Round(time.Millisecond))
			assert.LessOrEqual(t, after, recoveryBound, "c%d polled again %s after the kill", c.Connector, after)
		}

		// Every connector, whether the killed worker held it or not.
		var polls [][]int64
		require.Eventually(t, func() bool {
			polls = up.polls(killAt)
			return !slices.ContainsFunc(polls, func(starts []int64) bool { return len(starts) == 0 })
		}, time.Minute, 100*time.Millisecond, "every connector polled again after the kill")
		var slowest time.Duration
		for i, starts := range polls {
			first := time.UnixMilli(starts[0]).Sub(killAt)
			assert.LessOrEqual(t, first, recoveryBound, "c%d first polled %s after the kill", i, first)
			slowest = max(slowest, first)
		}
		t.Logf("every connector polled again at most %s after the kill", slowest.Round(time.Millisecond))
	})

	t.Run("no signal lost or duplicated, no connector polled twice at once", func(t *testing.T) {
		// Stop the ticks: the schedulers, then the schedules they installed in
		// NATS (which would go on firing), and let the queued ticks be polled.
		p.must(2*time.Minute, "stop", "scheduler")
		js, err := jetstream.New(nc)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ticks, err := js.Stream(ctx, bus.TicksStream)
		require.NoError(t, err)
		require.NoError(t, ticks.Purge(ctx, jetstream.WithPurgeSubject(bus.SchedulePrefix+".>")))
		waitIdle(t, up)

		check := bench.CheckSignals(stream.caughtUp(t, js))
		st := up.stats()
		t.Logf("SIGNALS: %d signals, %d duplicate ce-ids, %d versions out of order; upstream: %+v; a core subscriber saw %d (%d ce-ids twice: re-publishes JetStream dropped)",
			check.Signals, check.DuplicateIDs, check.Regressions, st, len(sub.All()), duplicateIDs(sub.All()))
		assert.Zero(t, check.DuplicateIDs, "a ce-id twice in SIGNALS")
		assert.Zero(t, check.Regressions, "a connector's versions out of order in SIGNALS")
		assert.Zero(t, st.Overlaps, "a connector polled twice at once")
		for i, v := range up.versions() {
			require.NotEmpty(t, v, "c%d never answered whole", i)
			last := check.Last[bus.SignalSubject("http-json", "c"+strconv.Itoa(i))]
			got, _ := strconv.ParseInt(last, 10, 64)
			want, _ := strconv.ParseInt(v, 10, 64)
			assert.GreaterOrEqual(t, got, want, "c%d: the upstream's last answer (version %s) never reached SIGNALS (last %q)", i, v, last)
		}
	})

	t.Run("docker compose down -v leaves nothing behind", func(t *testing.T) {
		p.must(5*time.Minute, "down", "--volumes")
		downDone = true
		assert.Empty(t, p.containers(), "containers of the project")
		after := engineState(t)
		for kind, list := range before {
			assert.Equal(t, list, after[kind], "%s before up and after down -v", kind)
		}
	})
}

// addConnector adds c<i> polling the upstream's /items/<i> to the
// connectors file at path, leaving the other entries as written (so that
// applying it changes only c<i>), and writing the file in place as an
// editor would (docker compose run makes a new apply container, whose bind
// mount would show a replaced file too).
func addConnector(t *testing.T, path string, i int) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var file struct {
		Connectors []map[string]any `json:"connectors"`
	}
	require.NoError(t, json.Unmarshal(data, &file))
	require.Len(t, file.Connectors, i)
	c := maps.Clone(file.Connectors[0])
	cfg := maps.Clone(c["config"].(map[string]any))
	c["name"] = "c" + strconv.Itoa(i)
	cfg["url"] = "http://upstream:8090/items/" + strconv.Itoa(i)
	c["config"] = cfg
	entry, err := json.Marshal(c)
	require.NoError(t, err)
	end := strings.LastIndex(string(data), "]")
	require.Positive(t, end, "the connectors list ends the file")
	data = []byte(strings.TrimRight(string(data[:end]), " \n") + ",\n    " + string(entry) + "\n  " + string(data[end:]))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	require.NoError(t, err)
	_, err = f.Write(data)
	require.NoError(t, errors.Join(err, f.Close()))
}

// busyWorker is a running worker container with a poll in flight (its
// pollgrid_polls_in_flight, read from its metrics port on the compose
// network), so that a kill cuts one; after 30 s, any worker.
func busyWorker(t *testing.T, p *project) container {
	t.Helper()
	var list []container
	metrics := map[string]string{}
	for _, c := range p.containers() {
		if c.Service == "worker" && c.State == "running" {
			list = append(list, c)
			ip := strings.Fields(docker(t, "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", c.ID))
			require.NotEmpty(t, ip, "%s has no address", c.Name)
			metrics[c.ID] = "http://" + ip[0] + ":8082/metrics"
		}
	}
	require.NotEmpty(t, list, "no worker runs")
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		// Ticks fire on whole seconds: look just after one, while the polls
		// it started run (half a second against compose-test.yml's upstream).
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 100*time.Millisecond)))
		for _, c := range list {
			resp, err := client.Get(metrics[c.ID])
			if err != nil {
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if v, ok := metric(string(body), "pollgrid_polls_in_flight"); ok && v >= 1 {
				return c
			}
		}
	}
	t.Logf("no worker had a poll in flight for 30 s (or their metrics were out of reach): killing %s", list[0].Name)
	return list[0]
}

// cutsOf is the polls the upstream saw cut by a kill at killAt (their
// connections closed within cutSettle of it), each with when its connector
// was asked next, once every one was asked again (or after a minute).
func cutsOf(t *testing.T, up upstream, killAt time.Time) []bench.UpstreamCut {
	t.Helper()
	const cutSettle = 2 * time.Second
	var cuts []bench.UpstreamCut
	require.Eventually(t, func() bool {
		cuts = cuts[:0]
		for _, c := range up.cuts(killAt) {
			if c.AtNS <= killAt.Add(cutSettle).UnixNano() {
				cuts = append(cuts, c)
			}
		}
		if time.Since(killAt) < cutSettle {
			return false
		}
		return !slices.ContainsFunc(cuts, func(c bench.UpstreamCut) bool { return c.NextNS == 0 })
	}, time.Minute, 100*time.Millisecond, "every cut poll followed by another")
	return cuts
}

// waitIdle waits until no request is in flight at the upstream and none
// began for 3 s.
func waitIdle(t *testing.T, up upstream) {
	t.Helper()
	var last bench.UpstreamStats
	stable := 0
	require.Eventually(t, func() bool {
		st := up.stats()
		if st == last && st.Requests == st.Completed+st.Cuts {
			stable++
		} else {
			stable = 0
		}
		last = st
		return stable >= 30
	}, 2*time.Minute, 100*time.Millisecond, "the upstream to go idle once the ticks stopped")
}
