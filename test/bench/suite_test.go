//go:build bench

package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/test/harness"
)

// scenario is one benchmark: run measures and returns the markdown body of
// its results.
type scenario struct {
	id    string
	title string
	run   func(t *testing.T, s *suite) string
	// asked: run only when BENCH names it, not in a run of all (it needs
	// more time or memory than `make bench` should take by default).
	asked bool
	// connectors is how many connectors it defines when more than
	// 100,000: nats-server's GOMEMLIMIT is sized for them (natsMemLimitFor).
	connectors int
}

// scenarios in the order the results show them; BENCH picks among the ids.
var scenarios = []scenario{
	{id: "e2e", title: "1. End to end vs the raw loop", run: benchE2E},
	{id: "scheduler", title: "2. Scheduler alone", run: benchScheduler},
	{id: "startup", title: "3. Config load and first tick", run: benchStartup},
	{id: "scale", title: "4. 100,000 connectors at 60 s, whole system", run: benchScale},
	{id: "failover", title: "5. Failover after SIGKILL of a worker", run: benchFailover},
	{id: "catalog", title: "6. Control plane: 100,000 connectors applied with pollctl", run: benchCatalog},
	{id: "million", title: "7. Control plane: 1,000,000 connectors applied", run: benchMillion, asked: true,
		connectors: millionConnectors},
	{id: "adaptive", title: "8. Issue 18: adaptive intervals", run: benchAdaptive},
	{id: "cluster", title: "9. Beyond one box: a NATS cluster (R3) and a Redis Cluster", run: benchCluster, asked: true},
}

// suite holds the options of one `make bench` and what it learns once
// (server versions) for the result headers.
type suite struct {
	only     map[string]bool // nil: every scenario
	quick    bool
	reps     int
	scale    float64
	out      string // results file; "" writes nothing
	quietFor time.Duration
	profile  string // BENCH_PROFILE: where CPU profiles go; "" takes none
	// natsMemLimit is the GOMEMLIMIT of every nats-server the running
	// scenario starts (natsMemLimitFor); "" runs it without one.
	natsMemLimit string
	// natsMemLimitAsked is BENCH_NATS_GOMEMLIMIT when set ("" for off).
	natsMemLimitAsked *string
	command           string
	started           time.Time
	commit            string

	mu           sync.Mutex
	natsVersion  string
	redisVersion string
	quiet        map[string][]Quiet // per scenario, per run
	others       map[string][]float64
}

// TestBench runs the scenarios BENCH names (all by default) and writes
// their results into docs/benchmarks.md. See docs/benchmarks.md for the
// options; `make bench` is the usual way in.
func TestBench(t *testing.T) {
	s := newSuite(t)
	t.Logf("bench: scenarios %v, quick %v, %d repetitions, scale %g, results to %q", s.ids(), s.quick, s.reps, s.scale, s.out)
	// Compile everything first: the go builds must not land in a measured
	// run, nor keep the machine busy while a run waits for it to be quiet.
	for _, pkg := range []string{
		"github.com/nats-io/nats-server/v2",
		"github.com/pollgrid/pollgrid/services/scheduler",
		"github.com/pollgrid/pollgrid/services/worker",
		"github.com/pollgrid/pollgrid/services/aggregator",
		"github.com/pollgrid/pollgrid/services/pollctl",
		"github.com/pollgrid/pollgrid/test/bench/upstream",
		"github.com/pollgrid/pollgrid/test/bench/rawloop",
		"github.com/pollgrid/pollgrid/test/bench/downstream",
	} {
		harness.Build(t, pkg)
	}
	for _, sc := range scenarios {
		if !s.runs(sc) {
			continue
		}
		var body string
		s.natsMemLimit = s.natsMemLimitFor(sc)
		t.Run(sc.id, func(t *testing.T) { body = sc.run(t, s) })
		if body == "" {
			continue // failed before it could report: keep the previous results
		}
		section := "### " + sc.title + "\n\n" + s.header(sc.id) + "\n\n" + body
		t.Logf("results of %s:\n\n%s", sc.id, section)
		if s.out != "" {
			require.NoError(t, SpliceFile(s.out, ids(scenarios), map[string]string{sc.id: section}), "write the results")
		}
	}
}

func ids(scs []scenario) []string {
	var out []string
	for _, sc := range scs {
		out = append(out, sc.id)
	}
	return out
}

func (s *suite) ids() []string {
	var out []string
	for _, sc := range scenarios {
		if s.runs(sc) {
			out = append(out, sc.id)
		}
	}
	return out
}

// runs says whether this invocation runs sc.
func (s *suite) runs(sc scenario) bool {
	if s.only == nil {
		return !sc.asked
	}
	return s.only[sc.id]
}

func newSuite(t *testing.T) *suite {
	s := &suite{reps: 3, scale: 1, quietFor: 3 * time.Minute, started: time.Now(),
		quiet: map[string][]Quiet{}, others: map[string][]float64{}, commit: commit()}
	var cmd []string
	if v := strings.TrimSpace(os.Getenv("BENCH")); v != "" && v != "all" {
		s.only = map[string]bool{}
		for _, id := range strings.Split(v, ",") {
			id = strings.TrimSpace(id)
			switch {
			case id == "micro" || id == "":
				// the go micro-benchmarks: make bench runs them, not this test
			case slices.Contains(ids(scenarios), id):
				s.only[id] = true
			default:
				t.Fatalf("BENCH=%s: unknown scenario %q (known: %s, micro, all)", v, id, strings.Join(ids(scenarios), ", "))
			}
		}
		cmd = append(cmd, "BENCH="+v)
	}
	if os.Getenv("BENCH_QUICK") != "" && os.Getenv("BENCH_QUICK") != "0" {
		s.quick, s.reps, s.quietFor = true, 1, 20*time.Second
		cmd = append(cmd, "BENCH_QUICK=1")
	}
	if v := os.Getenv("BENCH_REPS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err, "BENCH_REPS=%q: want a whole number", v)
		require.Positive(t, n, "BENCH_REPS")
		s.reps = n
		cmd = append(cmd, "BENCH_REPS="+v)
	}
	if v := os.Getenv("BENCH_SCALE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		require.NoError(t, err, "BENCH_SCALE=%q: want a number such as 0.1", v)
		require.True(t, f > 0 && f <= 1, "BENCH_SCALE=%q: want a number in (0, 1]", v)
		s.scale = f
		cmd = append(cmd, "BENCH_SCALE="+v)
	}
	if v := os.Getenv("BENCH_QUIET_WAIT"); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err, "BENCH_QUIET_WAIT=%q: want a duration such as 3m", v)
		s.quietFor = d
		cmd = append(cmd, "BENCH_QUIET_WAIT="+v)
	}
	if v := os.Getenv("BENCH_PROFILE"); v != "" {
		dir, err := filepath.Abs(v)
		require.NoError(t, err)
		require.NoError(t, os.MkdirAll(dir, 0o755), "BENCH_PROFILE=%q: want a directory to write profiles into", v)
		s.profile = dir
		cmd = append(cmd, "BENCH_PROFILE="+v)
	}
	if v, set := os.LookupEnv("BENCH_NATS_GOMEMLIMIT"); set {
		switch strings.TrimSpace(v) {
		case "", "off", "0":
			s.natsMemLimitAsked = new("")
		default:
			require.Regexp(t, `^[0-9]+(B|KiB|MiB|GiB|TiB)?$`, v, "BENCH_NATS_GOMEMLIMIT=%q: want a Go memory limit such as 200MiB, or off", v)
			s.natsMemLimitAsked = new(v)
		}
		cmd = append(cmd, "BENCH_NATS_GOMEMLIMIT="+v)
	}
	switch v := os.Getenv("BENCH_OUT"); v {
	case "-":
		cmd = append(cmd, "BENCH_OUT=-")
	case "":
		s.out = filepath.Join(repoRoot(t), "docs", "benchmarks.md")
	default:
		s.out, _ = filepath.Abs(v)
		cmd = append(cmd, "BENCH_OUT="+v)
	}
	s.command = strings.TrimSpace(strings.Join(cmd, " ") + " make bench")
	return s
}

func repoRoot(t *testing.T) string {
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err == nil {
		return strings.TrimSpace(string(out))
	}
	abs, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	return abs
}

// commit names the code measured: HEAD, and whether the work tree differs
// from it (the results file aside: the suite writes it).
func commit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no", "--", ":/", ":(top,exclude)docs/benchmarks.md").Output()
	if err == nil && len(st) > 0 {
		c += " (with uncommitted changes)"
	}
	return c
}

// scaled is n times BENCH_SCALE, at least 1.
func (s *suite) scaled(n int) int { return max(1, int(math.Round(float64(n)*s.scale))) }

// pick returns quick in quick mode, else full.
func pick[T any](s *suite, full, quick T) T {
	if s.quick {
		return quick
	}
	return full
}

// waitQuiet waits for a quiet machine before a run of scenario id, and
// remembers how it found it.
func (s *suite) waitQuiet(t *testing.T, id string) Quiet {
	t.Helper()
	q := WaitQuiet(context.Background(), QuietOptions{GiveUp: s.quietFor})
	s.mu.Lock()
	s.quiet[id] = append(s.quiet[id], q)
	s.mu.Unlock()
	if q.OK {
		t.Logf("machine quiet (%.0f%% busy) after %s", q.Busy*100, q.Waited.Round(time.Second))
	} else {
		t.Logf("machine NOT quiet after %s (%.0f%% busy): running anyway, the results say so", q.Waited.Round(time.Second), q.Busy*100)
	}
	return q
}

// natsMemLimit is the GOMEMLIMIT the suite gives nats-server unless
// BENCH_NATS_GOMEMLIMIT says otherwise: the value docker-compose.yml and
// deploy/nats/values.yaml ship, for up to 100,000 connectors
// (docs/deploy.md, "Sizing NATS"; docs/benchmarks.md, "nats-server memory").
const natsMemLimit = "200MiB"

// natsMemLimitFor is nats-server's GOMEMLIMIT in scenario sc:
// BENCH_NATS_GOMEMLIMIT when set, else what docs/deploy.md says to set:
// natsMemLimit, and 3 KiB more a connector beyond 100,000.
func (s *suite) natsMemLimitFor(sc scenario) string {
	if s.natsMemLimitAsked != nil {
		return *s.natsMemLimitAsked
	}
	if beyond := sc.connectors - 100_000; beyond > 0 {
		return fmt.Sprintf("%dMiB", 200+(beyond*3+1023)/1024)
	}
	return natsMemLimit
}

// busyOthers is the CPU, in cores, beyond which what ran besides the
// benchmark during a window is flagged in the results.
const busyOthers = 0.25

// noteWindow remembers how much CPU other processes took during a
// measurement window of scenario id.
func (s *suite) noteWindow(t *testing.T, id string, w Window) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.others[id] = append(s.others[id], w.Others())
	if o := w.Others(); o > busyOthers {
		t.Logf("other processes used %.2f cores of the machine during the window", o)
	}
}

func (s *suite) setVersions(nats, redis string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.natsVersion, s.redisVersion = nats, redis
}

// header says how, when and on what the results of scenario id were measured.
func (s *suite) header(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	model, _ := CPUInfo()
	var b strings.Builder
	fmt.Fprintf(&b, "`%s` (`cd test && go test -tags bench -run TestBench -timeout 3h -v ./bench`), %s, pollgrid %s. ",
		s.command, s.started.UTC().Format("2006-01-02 15:04 MST"), s.commit)
	fmt.Fprintf(&b, "%s, nats-server %s, redis-server %s; %d × %s (nproc %d), CLK_TCK %d.",
		runtime.Version(), or(s.natsVersion, "?"), or(s.redisVersion, "?"), runtime.NumCPU(), model, runtime.NumCPU(), ClockTick())
	if s.natsMemLimit != "" {
		fmt.Fprintf(&b, " nats-server runs with `GOMEMLIMIT=%s`, as docs/deploy.md sizes it for the scenario's connectors.", s.natsMemLimit)
	} else {
		b.WriteString(" nats-server runs without `GOMEMLIMIT`.")
	}
	var notes []string
	if s.quick {
		notes = append(notes, "**quick mode** (short windows, 1 repetition: for development, not for comparison)")
	}
	if s.scale != 1 {
		notes = append(notes, fmt.Sprintf("**connector counts scaled by %g** (BENCH_SCALE)", s.scale))
	}
	qs := s.quiet[id]
	quiet := 0
	var busy []string
	for _, q := range qs {
		if q.OK {
			quiet++
		}
		busy = append(busy, fmt.Sprintf("%.0f%%", q.Busy*100))
	}
	if len(qs) > 0 {
		line := fmt.Sprintf("machine quiet (< 10%% CPU busy over 2 s) before %d of %d runs (busy when starting: %s)",
			quiet, len(qs), strings.Join(busy, ", "))
		if quiet < len(qs) {
			line = "**NOT QUIET**: " + line + "; the other engineers' builds ran alongside, so read the ratios, not the absolute figures"
		}
		notes = append(notes, line)
	}
	if o := Summarize(s.others[id]); o.N > 0 {
		line := "CPU used outside the measured processes during the windows (other work on the machine, kernel threads): " +
			Range(o, func(v float64) string { return Num(v, 2) }) + " cores"
		if o.Max > busyOthers {
			line = "**busy machine**: " + line
		}
		notes = append(notes, line)
	}
	if len(notes) > 0 {
		b.WriteString(" " + strings.Join(notes, "; ") + ".")
	}
	return b.String()
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// sleep waits out a warm-up or a measurement window (nothing to wait
// on: the time itself is the point), failing when the test's deadline is
// too near for it.
func sleep(t *testing.T, d time.Duration) {
	t.Helper()
	if dl, ok := t.Deadline(); ok && time.Until(dl) < d+time.Minute {
		t.Fatalf("the test deadline is too close to wait %s more: raise -timeout", d)
	}
	time.Sleep(d)
}

// repeat runs one scenario's measurement s.reps times, each run a subtest
// (run-1, run-2, ...), and returns the results of the runs that did not fail.
func repeat[R any](t *testing.T, s *suite, run func(t *testing.T) R) []R {
	var out []R
	for rep := 1; rep <= s.reps; rep++ {
		t.Run(fmt.Sprintf("run-%d", rep), func(t *testing.T) { out = append(out, run(t)) })
	}
	return out
}

// collect summarizes one figure over a scenario's runs.
func collect[R any](runs []R, f func(R) float64) Summary {
	xs := make([]float64, len(runs))
	for i, r := range runs {
		xs[i] = f(r)
	}
	return Summarize(xs)
}
