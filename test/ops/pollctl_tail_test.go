package ops

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/test/harness"
)

// tail says when it is subscribed, and shows the last signals stored in
// SIGNALS (--last) or those since a time (--since) before the new ones.
func TestPollctlTail(t *testing.T) {
	up := harness.NewUpstream(t, fixtureBody(t))
	s := startStack(t, nil, connector{name: "hourly", interval: "1h", upstream: up})
	env := map[string]string{"NATS_URL": s.env["NATS_URL"]}
	require.Eventually(t, func() bool { return s.status("hourly").SeenItems == 2 }, 30*time.Second, 20*time.Millisecond,
		"the first poll stores its 2 signals")
	const subject = "signals.weather-noaa.hourly"

	code, out, stderr := pollctl(t, env, "tail", "--last", "1", "--count", "1", subject)
	require.Equal(t, 0, code, stderr)
	last := lines(out)
	require.Len(t, last, 1)
	assert.Regexp(t, `created\s+weather-noaa/hourly\s+urn:oid:`, last[0])
	assert.Contains(t, stderr, "pollctl: reading SIGNALS on nats://")
	assert.Contains(t, stderr, "1 stored signal on "+subject+" (the last 1 asked for)")

	pollctlBin := harness.Build(t, "github.com/pollgrid/pollgrid/services/pollctl")
	stored := harness.StartProcess(t, pollctlBin, env, "tail", "--last", "5")
	require.Eventually(t, func() bool {
		return strings.Contains(stored.Stderr.String(), "2 stored signals above; waiting for new ones")
	},
		30*time.Second, 20*time.Millisecond, "tail says where the stored signals end")
	assert.Contains(t, stored.Stderr.String(), "2 stored signals on signals.> (the last 5 asked for)")
	both := lines(stored.Stdout.String())
	require.Len(t, both, 2, "only 2 are stored")
	assert.Equal(t, last[0], both[1], "the last one is the newest")

	code, out, stderr = pollctl(t, env, "tail", "--since", "1h", "--count", "2", "--json", subject)
	require.Equal(t, 0, code, stderr)
	assert.Len(t, lines(out), 2)
	assert.Contains(t, lines(out)[0], `"connector":"hourly"`)

	code, _, stderr = pollctl(t, env, "tail", "--since", "tomorrow")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, `--since "tomorrow" is neither a duration`)

	// Live: it says it is subscribed, then prints what is published; the
	// tail of the stored ones goes on with the new ones.
	live := harness.StartProcess(t, pollctlBin, env, "tail", "--count", "2", subject)
	require.Eventually(t, func() bool {
		return strings.Contains(live.Stderr.String(), "pollctl: subscribed to "+subject+" on nats://")
	},
		30*time.Second, 20*time.Millisecond, "tail says when it listens")
	code, out, _ = pollctl(t, env, "reset", "hourly", "--yes")
	require.Equal(t, 0, code, out)
	code, out, _ = pollctl(t, env, "trigger", "hourly")
	require.Equal(t, 0, code, out)
	require.Equal(t, 0, live.Wait(30*time.Second), live.Stderr.String())
	assert.Len(t, lines(live.Stdout.String()), 2)
	require.Eventually(t, func() bool { return len(lines(stored.Stdout.String())) == 4 }, 30*time.Second, 20*time.Millisecond,
		"the stored tail prints the new signals too")
	require.NoError(t, stored.Cmd.Process.Signal(os.Interrupt))
	assert.Equal(t, 0, stored.Wait(30*time.Second), "Ctrl-C is a clean stop")
}

// A config every process rejects is printed once with its problems, under
// the processes that rejected it.
func TestPollctlReloadPrintsTheProblemsOnce(t *testing.T) {
	up := harness.NewUpstream(t, fixtureBody(t))
	s := startStack(t, nil, connector{name: "hourly", interval: "1h", upstream: up})
	harness.WriteFileAt(t, s.env["CONNECTORS_FILE"], `{"connectors": [{"name": "hourly", "type": "weather-noaa", "interval": "5",
		"config": {"area": "AZ", "user_agent": "(x, x@example.com)"}}]}`)
	code, out, stderr := pollctl(t, map[string]string{"NATS_URL": s.env["NATS_URL"]}, "reload")
	assert.Equal(t, 1, code)
	assert.Regexp(t, `(?m)^rejected by aggregator \S+, scheduler first, worker w1; the catalog stays as it was:$`, out)
	assert.Equal(t, 1, strings.Count(out, `connectors[0].interval: "5" is not a duration`), out)
	assert.Equal(t, "pollctl: 3 of 3 processes rejected the config: fix the problems above, then reload again\n", stderr)
	assert.Equal(t, admin.HealthOK, s.status("hourly").Health, "the running config stays")
}

// An operator tails SIGNALS's stored signals under the example server
// config, deploy/nats/pollgrid.conf, as shipped; a viewer's refused verb
// says it was refused.
func TestPollctlTailUnderTheExampleNATSPermissions(t *testing.T) {
	urlFor := exampleNATS(t)
	up := harness.NewUpstream(t, fixtureBody(t))
	s := startStackOn(t, urlFor("pollgrid"), nil, connector{name: "hourly", interval: "1h", upstream: up})
	require.Eventually(t, func() bool { return s.status("hourly").SeenItems == 2 }, 30*time.Second, 20*time.Millisecond)

	operator := map[string]string{"NATS_URL": urlFor("operator")}
	code, out, stderr := pollctl(t, operator, "tail", "--last", "2", "--count", "2")
	require.Equal(t, 0, code, stderr)
	assert.Len(t, lines(out), 2)
	code, out, stderr = pollctl(t, operator, "tail", "--since", "1h", "--count", "1", "signals.weather-noaa.hourly")
	require.Equal(t, 0, code, stderr)
	assert.Len(t, lines(out), 1)

	// A refusal is said once, in pollctl's error: whose, and of what.
	code, _, stderr = pollctl(t, map[string]string{"NATS_URL": urlFor("viewer")}, "trigger", "hourly", "--timeout", "1s")
	assert.Equal(t, 4, code)
	require.Len(t, lines(stderr), 1, stderr)
	assert.Contains(t, stderr, `(NATS refused it: nats: permissions violation: Permissions Violation for Publish to "pollgrid.admin.trigger")`)
}

func lines(s string) []string {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
