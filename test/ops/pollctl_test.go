package ops

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/test/harness"
)

// pollctl runs the pollctl binary with env (plus PATH and HOME) and returns
// its exit code, standard output and standard error.
func pollctl(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	bin := harness.Build(t, "github.com/pollgrid/pollgrid/services/pollctl")
	p := harness.StartProcess(t, bin, env, args...)
	code := p.Wait(2 * time.Minute)
	require.NotEqual(t, -1, code, "pollctl %v did not end:\n%s", args, p.Stderr)
	return code, p.Stdout.String(), p.Stderr.String()
}

// validate lists every problem of a broken file, with its path, and exits 1;
// a good file exits 0.
func TestPollctlValidateListsEveryProblem(t *testing.T) {
	broken := harness.WriteFile(t, "broken.json", `{"connectors": [
		{"name": "Bad Name", "type": "weather-noaa", "interval": "5", "config": {"area": "AZ", "user_agent": "(x, x@example.com)"}},
		{"name": "ok", "type": "no-such-type"},
		{"name": "secret", "type": "github-releases", "config": {"repo": "nats-io/nats-server", "token": "${NOT_SET_ANYWHERE}"}},
		{"name": "ok", "type": "weather-noaa", "retries": {"max": 99}, "config": {"area": "AZ", "user_agent": "(x, x@example.com)"}}
	]}`)
	code, out, stderr := pollctl(t, nil, "validate", broken)
	assert.Equal(t, 1, code, "stdout:\n%s\nstderr:\n%s", out, stderr)
	for _, want := range []string{
		"connectors[0].name", "connectors[0].interval", `write "5s"`, "connectors[1].type", "no-such-type",
		"connectors[2].config.token", "NOT_SET_ANYWHERE", "connectors[3].name", "connectors[3].retries.max",
	} {
		assert.Contains(t, out, want)
	}
	assert.Contains(t, stderr, "is not valid")

	code, out, _ = pollctl(t, nil, "validate", "--json", broken)
	assert.Equal(t, 1, code)
	var r struct {
		OK       bool            `json:"ok"`
		Problems []admin.Problem `json:"problems"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &r), out)
	assert.False(t, r.OK)
	assert.GreaterOrEqual(t, len(r.Problems), 6)

	good := harness.WriteFile(t, "good.json", `{"connectors": [{"name": "noaa", "type": "weather-noaa",
		"config": {"area": "AZ", "user_agent": "(x, x@example.com)"}}]}`)
	code, out, _ = pollctl(t, nil, "validate", good)
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "ok, 1 connectors (1 enabled)")

	// A budget smaller than its connectors ask for is valid, with a warning
	// that says the rate each gets; an unknown budget is a problem.
	budgets := harness.WriteFile(t, "budgets.json", `{"budgets": {"gh": {"limit": 60, "per": "1m", "burst": 5}}, "connectors": [
		{"name": "a", "type": "weather-noaa", "interval": "1s", "budget": "gh", "config": {"area": "AZ", "user_agent": "(x, x@example.com)"}},
		{"name": "b", "type": "weather-noaa", "interval": "1s", "budget": "gh", "config": {"area": "TX", "user_agent": "(x, x@example.com)"}}]}`)
	code, out, _ = pollctl(t, nil, "validate", budgets)
	assert.Equal(t, 0, code, out)
	assert.Contains(t, out, "ok, 2 connectors (2 enabled)\n  warning: budgets.gh: 60 per 1m (burst 5) is less than its 2 connectors ask for "+
		"at their intervals (120 per 1m, one request a poll): each gets about one request every 2s")
	unknown := harness.WriteFile(t, "unknown-budget.json", `{"connectors": [
		{"name": "a", "type": "weather-noaa", "budget": "gh", "config": {"area": "AZ", "user_agent": "(x, x@example.com)"}}]}`)
	code, out, _ = pollctl(t, nil, "validate", unknown)
	assert.Equal(t, 1, code)
	assert.Contains(t, out, `connectors[0].budget: "gh" names no budget (declare it at the top of the file: "budgets": {"gh": `)
}

// Every verb of pollctl against a running stack: what a person reads,
// what a script parses, and the exit codes.
func TestPollctlVerbs(t *testing.T) {
	up := harness.NewUpstream(t, fixtureBody(t))
	s := startStack(t, nil, connector{name: "hourly", interval: "1h", upstream: up})
	env := map[string]string{"NATS_URL": s.env["NATS_URL"]}
	require.Eventually(t, func() bool {
		st := s.status("hourly")
		return st.Health == admin.HealthOK && len(st.Recent) == 1
	}, 30*time.Second, 20*time.Millisecond)

	code, out, _ := pollctl(t, env, "list")
	require.Equal(t, 0, code, out)
	assert.Regexp(t, `(?m)^HEALTH\s+NAME\s+TYPE`, out)
	assert.Regexp(t, `(?m)^ok\s+hourly\s+weather-noaa\s+1h0m0s`, out)

	code, out, _ = pollctl(t, env, "list", "--json")
	require.Equal(t, 0, code)
	var list admin.ListReply
	require.NoError(t, json.Unmarshal([]byte(out), &list), out)
	require.Len(t, list.Connectors, 1)
	assert.Equal(t, "hourly", list.Connectors[0].Name)

	code, out, _ = pollctl(t, env, "status", "hourly")
	require.Equal(t, 0, code)
	assert.Regexp(t, `health:\s+ok`, out)
	assert.Regexp(t, `seen items:\s+2`, out)
	assert.Contains(t, out, "recent polls:")

	code, out, _ = pollctl(t, env, "trigger", "hourly")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "hourly: success in")
	assert.Contains(t, out, "worker w1")

	// Pause: shows on list and status; resume.
	code, out, _ = pollctl(t, env, "pause", "hourly", "--by", "alice")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "paused hourly")
	code, out, _ = pollctl(t, env, "list")
	require.Equal(t, 0, code)
	assert.Regexp(t, `(?m)^paused\s+hourly.*paused by alice`, out)
	code, out, _ = pollctl(t, env, "resume", "hourly")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "resumed hourly")

	// Reset needs --yes; then tail sees the items again as created.
	code, _, stderr := pollctl(t, env, "reset", "hourly")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "add --yes")
	tail := harness.StartProcess(t, harness.Build(t, "github.com/pollgrid/pollgrid/services/pollctl"), env,
		"tail", "--count", "2", "signals.weather-noaa.hourly")
	waitSubscribed(t, s, "signals.weather-noaa.hourly")
	code, out, _ = pollctl(t, env, "reset", "hourly", "--yes")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "2 item versions forgotten, generation 1")
	code, _, _ = pollctl(t, env, "trigger", "hourly", "--json")
	require.Equal(t, 0, code)
	require.Equal(t, 0, tail.Wait(30*time.Second), tail.Stderr.String())
	lines := strings.Split(strings.TrimSpace(tail.Stdout.String()), "\n")
	require.Len(t, lines, 2)
	for _, l := range lines {
		assert.Regexp(t, `created\s+weather-noaa/hourly\s+urn:oid:`, l)
	}

	code, out, _ = pollctl(t, env, "reload")
	require.Equal(t, 0, code, out)
	assert.Regexp(t, `(?m)^scheduler first: ok, 1 connectors`, out)
	assert.Regexp(t, `(?m)^worker w1: ok`, out)
	assert.Regexp(t, `(?m)^aggregator \S+: ok`, out)

	// A failing poll exits 1 and says why, once: in its answer.
	up.Set(http.StatusServiceUnavailable, []byte(`{"title": "Service Unavailable"}`))
	code, out, stderr = pollctl(t, env, "trigger", "hourly")
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "hourly: failure")
	assert.Contains(t, out, "error: poll hourly: nws alerts: upstream answered 503 Service Unavailable")
	assert.Equal(t, 1, strings.Count(out+stderr, "503"), "the error is printed once")
	assert.Equal(t, "pollctl: the poll of hourly failed\n", stderr)

	// Unknown connector: 3. No NATS: 4. Bad flag: 2.
	code, _, stderr = pollctl(t, env, "status", "nope")
	assert.Equal(t, 3, code)
	assert.Contains(t, stderr, `no connector named "nope"`)
	code, _, stderr = pollctl(t, map[string]string{"NATS_URL": "nats://127.0.0.1:1"}, "list")
	assert.Equal(t, 4, code)
	assert.Contains(t, stderr, "connect to NATS")
	code, _, _ = pollctl(t, env, "list", "--no-such-flag")
	assert.Equal(t, 2, code)

	// Every subcommand's help has an example.
	for _, sub := range []string{"validate", "list", "status", "trigger", "pause", "resume", "reset", "reload", "tail", "dry-run"} {
		code, out, _ = pollctl(t, nil, sub, "--help")
		assert.Equal(t, 0, code)
		assert.Contains(t, out, "Examples:\n  pollctl "+sub, sub)
	}
}

// A NATS context, as the nats CLI keeps it, points pollctl at the server.
func TestPollctlUsesTheSelectedNATSContext(t *testing.T) {
	up := harness.NewUpstream(t, fixtureBody(t))
	s := startStack(t, nil, connector{name: "hourly", interval: "1h", upstream: up})
	home := t.TempDir()
	harness.WriteFileAt(t, home+"/nats/context/pollgrid-test.json", `{"description": "test", "url": "`+s.env["NATS_URL"]+`"}`)
	harness.WriteFileAt(t, home+"/nats/context.txt", "pollgrid-test\n")
	code, out, stderr := pollctl(t, map[string]string{"XDG_CONFIG_HOME": home}, "list", "--json")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, `"hourly"`)
	code, _, stderr = pollctl(t, map[string]string{"XDG_CONFIG_HOME": home}, "--context", "missing", "list")
	assert.Equal(t, 4, code)
	assert.Contains(t, stderr, `NATS context "missing"`)
}

// dry-run prints what one poll would publish and write, and changes
// nothing: not Redis, not a stream.
func TestPollctlDryRunChangesNothing(t *testing.T) {
	up := harness.NewUpstream(t, fixtureBody(t))
	s := startStack(t, nil, connector{name: "hourly", interval: "1h", upstream: up})
	// Let the first poll land everywhere: its signals, its state, its report.
	require.Eventually(t, func() bool {
		st := s.status("hourly")
		return st.SeenItems == 2 && len(st.Recent) == 1
	}, 30*time.Second, 20*time.Millisecond)
	env := map[string]string{"REDIS_URL": s.env["REDIS_URL"], "CONNECTORS_FILE": s.env["CONNECTORS_FILE"], "UPSTREAM_ALLOW": harness.LoopbackAllow}
	redisBefore, streamsBefore := redisSnapshot(t, s), streamsSnapshot(t, s.js)
	requests := up.Requests.Load()

	code, out, stderr := pollctl(t, env, "dry-run", "hourly")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "from the redis state: success")
	assert.Contains(t, out, "would publish 0 signals", "nothing changed since the last poll")
	assert.Regexp(t, `seen items:\s+2`, out)

	code, out, stderr = pollctl(t, env, "dry-run", "hourly", "--fresh", "--json")
	require.Equal(t, 0, code, stderr)
	var r struct {
		From    string `json:"from"`
		Outcome string `json:"outcome"`
		Signals []struct {
			Change  string          `json:"change"`
			Subject string          `json:"subject"`
			Data    json.RawMessage `json:"data"`
		} `json:"signals"`
		SeenItems int `json:"seen_items"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &r), out)
	assert.Equal(t, "fresh", r.From)
	assert.Equal(t, "success", r.Outcome)
	require.Len(t, r.Signals, 2, "from no state, both alerts are created")
	for _, sig := range r.Signals {
		assert.Equal(t, "created", sig.Change)
		assert.Equal(t, "signals.weather-noaa.hourly", sig.Subject)
		assert.Contains(t, string(sig.Data), `"event"`)
	}
	assert.Equal(t, 2, r.SeenItems)

	assert.Equal(t, requests+2, up.Requests.Load(), "each dry-run polled the upstream once")
	assert.Equal(t, redisBefore, redisSnapshot(t, s), "Redis is unchanged")
	assert.Equal(t, streamsBefore, streamsSnapshot(t, s.js), "every stream is unchanged")

	code, _, stderr = pollctl(t, env, "dry-run", "nope")
	assert.Equal(t, 3, code)
	assert.Contains(t, stderr, `no connector named "nope"`)
}

// redisSnapshot is every key with its value, read by type.
func redisSnapshot(t *testing.T, s *stack) map[string]string {
	rdb := s.redis.Client(t)
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	out := map[string]string{}
	for _, k := range keys {
		var v []string
		switch typ := rdb.Type(ctx, k).Val(); typ {
		case "string":
			v = []string{rdb.Get(ctx, k).Val()}
		case "hash":
			for f, val := range rdb.HGetAll(ctx, k).Val() {
				v = append(v, f+"="+val)
			}
		case "list":
			v = rdb.LRange(ctx, k, 0, -1).Val()
		case "set":
			v = rdb.SMembers(ctx, k).Val()
		case "zset":
			v = rdb.ZRange(ctx, k, 0, -1).Val()
		default:
			t.Fatalf("key %s has unexpected type %s", k, typ)
		}
		sort.Strings(v)
		out[k] = strings.Join(v, "\n")
	}
	return out
}

// streamsSnapshot is each stream's messages, bytes and sequences.
func streamsSnapshot(t *testing.T, js jetstream.JetStream) map[string]jetstream.StreamState {
	out := map[string]jetstream.StreamState{}
	for _, name := range []string{bus.TicksStream, bus.SignalsStream, bus.ReportsStream} {
		st, err := js.Stream(context.Background(), name)
		require.NoError(t, err)
		info, err := st.Info(context.Background())
		require.NoError(t, err)
		state := info.State
		state.FirstTime, state.LastTime = state.FirstTime.UTC(), state.LastTime.UTC()
		state.Consumers = 0
		out[name] = state
	}
	return out
}

// waitSubscribed waits until some client subscribes to exactly subject on
// the stack's NATS (so a test does not publish before a tail listens).
func waitSubscribed(t *testing.T, s *stack, subject string) {
	require.Eventually(t, func() bool {
		sz, err := s.ns.Subsz(&server.SubszOptions{Subscriptions: true, Test: subject, Limit: 1000})
		if err != nil {
			return false
		}
		for _, sub := range sz.Subs {
			if sub.Subject == subject {
				return true
			}
		}
		return false
	}, 30*time.Second, 20*time.Millisecond, "nothing subscribed to %s", subject)
}
