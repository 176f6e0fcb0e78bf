package deploy

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/service"
	"github.com/pollgrid/pollgrid/services/aggregator/aggregatord"
	"github.com/pollgrid/pollgrid/services/scheduler/schedulerd"
	"github.com/pollgrid/pollgrid/services/worker/workerd"
)

// loadCompose loads docker-compose.yml as `docker compose` would with an
// empty shell environment and no .env file, every profile enabled.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{repoPath("docker-compose.yml")},
		cli.WithWorkingDirectory(root), cli.WithEnv(nil), cli.WithProfiles([]string{"*"}),
		cli.WithInterpolation(true), cli.WithNormalization(true), cli.WithConsistency(true))
	require.NoError(t, err)
	p, err := opts.LoadProject(context.Background())
	require.NoError(t, err, "docker-compose.yml does not load")
	return p
}

func TestComposeProject(t *testing.T) {
	p := loadCompose(t)
	assert.Equal(t, "pollgrid", p.Name, "top-level name")
	want := []string{"aggregator", "apply", "grafana", "jaeger", "nats", "prometheus", "redis", "scheduler", "tail", "worker"}
	assert.ElementsMatch(t, want, p.ServiceNames())
}

func TestComposeEveryServiceHasAHealthcheck(t *testing.T) {
	for name, s := range loadCompose(t).Services {
		t.Run(name, func(t *testing.T) {
			if name == oneShot {
				// It runs once and exits: nothing to probe, and the image's
				// HEALTHCHECK asks an endpoint pollctl does not serve.
				require.NotNil(t, s.HealthCheck)
				assert.True(t, s.HealthCheck.Disable, "%s: turn the image's healthcheck off", name)
				return
			}
			require.NotNil(t, s.HealthCheck, "no healthcheck")
			assert.False(t, s.HealthCheck.Disable, "healthcheck disabled")
			require.NotEmpty(t, s.HealthCheck.Test)
			assert.Contains(t, []string{"CMD", "CMD-SHELL"}, s.HealthCheck.Test[0])
			require.NotNil(t, s.HealthCheck.Interval)
			require.NotNil(t, s.HealthCheck.Timeout)
			assert.Less(t, time.Duration(*s.HealthCheck.Timeout), time.Duration(*s.HealthCheck.Interval))
		})
	}
}

func TestComposeDependsOnWaitsForHealth(t *testing.T) {
	p := loadCompose(t)
	for name, s := range p.Services {
		for dep, d := range s.DependsOn {
			if dep == oneShot {
				// What makes up --wait wait for the apply, and fail with it.
				assert.Equal(t, types.ServiceConditionCompletedSuccessfully, d.Condition, "%s depends_on %s", name, dep)
				continue
			}
			assert.Equal(t, types.ServiceConditionHealthy, d.Condition, "%s depends_on %s", name, dep)
			assert.Contains(t, p.ServiceNames(), dep, "%s depends on an unknown service", name)
		}
	}
	for svc := range goServices {
		s := p.Services[svc]
		for _, dep := range []string{"nats", "redis"} {
			assert.Contains(t, s.DependsOn, dep, "%s starts before %s is healthy", svc, dep)
		}
	}
}

func TestComposeWorkerScales(t *testing.T) {
	p := loadCompose(t)
	w := p.Services["worker"]
	require.NotNil(t, w.Deploy)
	require.NotNil(t, w.Deploy.Replicas)
	assert.GreaterOrEqual(t, *w.Deploy.Replicas, 2, "worker replicas")
	assert.Empty(t, w.ContainerName, "a container_name allows one worker only")
	assert.Empty(t, w.Ports, "a host port allows one worker per host port: --scale worker=5 would fail")
	s := p.Services["scheduler"]
	require.NotNil(t, s.Deploy)
	require.NotNil(t, s.Deploy.Replicas)
	assert.Equal(t, 2, *s.Deploy.Replicas, "two schedulers show HA")
	assert.Empty(t, s.ContainerName)
	assert.Empty(t, s.Ports)
	agg := p.Services["aggregator"]
	require.Len(t, agg.Ports, 1)
	assert.Equal(t, "8080", agg.Ports[0].Published)
	assert.EqualValues(t, 8080, agg.Ports[0].Target)
}

// pinned reports whether an image reference names a version: a digest, or
// a tag other than latest.
func pinned(ref string) bool {
	if strings.Contains(ref, "@sha256:") {
		return true
	}
	slash := strings.LastIndex(ref, "/")
	colon := strings.LastIndex(ref, ":")
	if colon <= slash {
		return false
	}
	tag := ref[colon+1:]
	return tag != "" && tag != "latest" && !strings.Contains(tag, "$")
}

func TestPinned(t *testing.T) {
	for ref, want := range map[string]bool{
		"nats:2.15.2-alpine": true, "nats": false, "nats:latest": false, "localhost:5000/nats": false,
		"localhost:5000/nats:2.1": true, "redis@sha256:0123": true, "grafana/grafana:": false,
	} {
		assert.Equal(t, want, pinned(ref), ref)
	}
}

func TestComposeImagesArePinned(t *testing.T) {
	for name, s := range loadCompose(t).Services {
		assert.True(t, pinned(s.Image), "%s: image %q has no version tag or digest", name, s.Image)
	}
}

// readVariables lists the environment variables the pollgrid services read,
// from their source: the shared ones (pkg/service's ReadEnv) and each
// service's own (its wiring, services/<name>/<name>d).
func readVariables(t *testing.T) (shared []string, own map[string][]string) {
	t.Helper()
	envVar := regexp.MustCompile(`^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$`)
	literals := func(n ast.Node) (names []string) {
		ast.Inspect(n, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if v, _ := strconv.Unquote(lit.Value); envVar.MatchString(v) {
					names = append(names, v)
				}
			}
			return true
		})
		return names
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, repoPath("pkg", "service", "env.go"), nil, 0)
	require.NoError(t, err)
	for _, decl := range f.Decls {
		if fn, ok := decl.(*ast.FuncDecl); ok && fn.Name.Name == "ReadEnv" {
			shared = literals(fn)
		}
	}
	own = map[string][]string{}
	for svc := range goServices {
		dir := repoPath("services", svc, svc+"d")
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		require.NoError(t, err)
		require.NotEmpty(t, files, "the %s service's wiring is in %s", svc, dir)
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, file, nil, 0)
			require.NoError(t, err)
			own[svc] = append(own[svc], literals(f)...)
		}
	}
	require.Contains(t, shared, "NATS_URL", "the source scan found the shared variables")
	require.Contains(t, own["worker"], "WORKER_GRACE", "the source scan found the worker's variables")
	// Read outside pkg/service: the trace exporter (pkg/telemetry).
	// CONNECTORS_FILE is read too (pkg/config) but must stay unset where
	// pollctl apply fills the catalog: notSet.
	shared = append(shared, "OTEL_EXPORTER_OTLP_ENDPOINT")
	return shared, own
}

// notSet are variables the services read that the deployments must not
// set: a process started with CONNECTORS_FILE owns the catalog (it applies
// the file with prune at start and on SIGHUP), undoing what pollctl apply
// writes; the one-shot apply service and the chart's Job apply the file.
var notSet = []string{"CONNECTORS_FILE"}

// oneShot is docker-compose.yml's service that applies connectors.json to
// the catalog with pollctl, and exits.
const oneShot = "apply"

// perReplica variables default to host name and pid: one value in the
// compose file would give every replica the same id.
var perReplica = map[string]bool{"SCHEDULER_ID": true, "WORKER_ID": true}

func environment(s types.ServiceConfig) map[string]string {
	env := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	return env
}

func TestComposeSetsEveryVariableTheServicesRead(t *testing.T) {
	p := loadCompose(t)
	shared, own := readVariables(t)
	for svc := range goServices {
		t.Run(svc, func(t *testing.T) {
			s := p.Services[svc]
			env := environment(s)
			for _, v := range append(append([]string{}, shared...), own[svc]...) {
				if perReplica[v] {
					assert.NotContains(t, env, v, "%s must differ per replica: leave it to its default", v)
					continue
				}
				assert.Contains(t, env, v, "%s reads %s: set it (with a default) in docker-compose.yml", svc, v)
			}
			for _, v := range notSet {
				assert.NotContains(t, env, v, "%s must not be set: the apply service fills the catalog", v)
			}
			// The values are the ones the service accepts.
			lookup := config.MapEnv(env)
			_, err := service.ReadEnv(lookup, "")
			assert.NoError(t, err)
			for _, v := range own[svc] {
				if strings.HasSuffix(v, "_TTL") || strings.HasSuffix(v, "_WAIT") || strings.HasSuffix(v, "_GRACE") || strings.HasSuffix(v, "_WINDOW") {
					_, err := service.Duration(lookup, v, time.Second)
					assert.NoError(t, err)
				}
			}
			assert.Equal(t, "http://jaeger:4318", env["OTEL_EXPORTER_OTLP_ENDPOINT"])
			assert.Equal(t, "nats://nats:4222", env["NATS_URL"])
			assert.Equal(t, "redis://redis:6379/0", env["REDIS_URL"])
		})
	}
}

// The connectors reach the catalog through the one-shot apply service,
// which alone mounts connectors.json (read-only) and runs pollctl apply
// --prune on it; the services mount no file. The ${VAR} secrets come from
// .env, and only the workers, which resolve them, get it.
func TestComposeAppliesTheConfigAndGivesSecretsToWorkersOnly(t *testing.T) {
	p := loadCompose(t)
	example, err := os.ReadFile(repoPath(".env.example"))
	require.NoError(t, err)
	ignore, err := os.ReadFile(repoPath(".gitignore"))
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^/?\.env$`, string(ignore), ".env must be git-ignored")
	for _, v := range secretVars(t) {
		assert.Regexp(t, `(?m)^#?\s*`+v+`=`, string(example), ".env.example must list %s (connectors.json uses it)", v)
	}

	apply := p.Services[oneShot]
	assert.Equal(t, "pollgrid/pollctl", apply.Image[:strings.LastIndex(apply.Image, ":")], "the image make images builds")
	require.NotNil(t, apply.Build)
	assert.Equal(t, "pollctl", *apply.Build.Args["SERVICE"])
	require.Len(t, apply.Volumes, 1)
	mount := apply.Volumes[0]
	assert.True(t, mount.ReadOnly, "connectors.json must be mounted read-only")
	assert.Equal(t, "connectors.json", mount.Source[strings.LastIndex(mount.Source, "/")+1:])
	_, err = os.Stat(mount.Source)
	assert.NoError(t, err)
	assert.Equal(t, []string{"apply", "--prune", "-f", mount.Target}, []string(apply.Command), "the file is the whole set")
	assert.Regexp(t, `^on-failure(:\d+)?$`, apply.Restart, "retried until NATS and the scheduler answer")
	assert.Equal(t, "nats://nats:4222", environment(apply)["NATS_URL"])
	assert.Equal(t, types.ServiceConditionHealthy, apply.DependsOn["scheduler"].Condition, "the scheduler serves the admin verbs")
	assert.Empty(t, apply.EnvFiles, "pollctl writes ${VAR} unresolved: it needs no secret")
	waits := false
	for _, s := range p.Services {
		waits = waits || s.DependsOn[oneShot].Condition == types.ServiceConditionCompletedSuccessfully
	}
	assert.True(t, waits, "up --wait fails on a one-shot that exited, unless a service waits for it to complete")

	for svc := range goServices {
		t.Run(svc, func(t *testing.T) {
			s := p.Services[svc]
			for _, v := range s.Volumes {
				assert.NotContains(t, v.Source, "connectors", "%s mounts %s: the services read the catalog", svc, v.Source)
			}
			if svc != "worker" {
				assert.Empty(t, s.EnvFiles, "%s gets .env: the secrets reach the workers only", svc)
				return
			}
			require.Len(t, s.EnvFiles, 1, "secrets come from .env")
			assert.Equal(t, ".env", s.EnvFiles[0].Path[strings.LastIndex(s.EnvFiles[0].Path, "/")+1:])
			assert.False(t, bool(s.EnvFiles[0].Required), "docker compose up must work without a .env")
		})
	}
}

// probePort returns the port a Go service's healthcheck asks, and checks
// that it uses the binary's own probe (the image has no shell).
func probePort(t *testing.T, s types.ServiceConfig) (port, path string) {
	t.Helper()
	test := []string(s.HealthCheck.Test)
	require.Len(t, test, 4, "%s: healthcheck %v", s.Name, test)
	assert.Equal(t, []string{"CMD", "/usr/local/bin/pollgrid", "-probe"}, test[:3], "%s: use the binary's -probe", s.Name)
	u, err := url.Parse(test[3])
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1", u.Hostname(), "%s: the probe asks its own container", s.Name)
	return u.Port(), u.Path
}

// scrapeTargets reads a Prometheus config: host → ports scraped, and which
// hosts are found by DNS service discovery (every replica of a service).
func scrapeTargets(t *testing.T, path string) (targets map[string][]string, dns map[string]bool) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err, "%s is missing: the observability work (issue 4) adds it; docker-compose.yml mounts it", path)
	var cfg struct {
		ScrapeConfigs []struct {
			JobName       string `json:"job_name"`
			MetricsPath   string `json:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `json:"targets"`
			} `json:"static_configs"`
			DNSSDConfigs []struct {
				Names []string `json:"names"`
				Type  string   `json:"type"`
				Port  int      `json:"port"`
			} `json:"dns_sd_configs"`
		} `json:"scrape_configs"`
	}
	require.NoError(t, yaml.Unmarshal(data, &cfg), "%s is not valid YAML", path)
	targets, dns = map[string][]string{}, map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			continue
		}
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				if host, port, err := net.SplitHostPort(tg); err == nil {
					targets[host] = append(targets[host], port)
				}
			}
		}
		for _, d := range sc.DNSSDConfigs {
			for _, n := range d.Names {
				host, port := n, strconv.Itoa(d.Port)
				if h, p, err := net.SplitHostPort(n); err == nil {
					host, port = h, p
				}
				targets[host] = append(targets[host], port)
				dns[host] = true
			}
		}
	}
	return targets, dns
}

func TestComposePortsMatchHealthchecksAndPrometheus(t *testing.T) {
	p := loadCompose(t)
	prom := p.Services["prometheus"]
	var promDir string
	for _, v := range prom.Volumes {
		if v.Target == "/etc/prometheus" {
			promDir = v.Source
		}
	}
	require.NotEmpty(t, promDir, "prometheus must mount deploy/prometheus at /etc/prometheus")
	targets, dns := scrapeTargets(t, promDir+"/prometheus.yml")
	defaults := map[string]service.Service{"scheduler": schedulerd.Service, "worker": workerd.Service, "aggregator": aggregatord.Service}
	for svc, port := range goServices {
		t.Run(svc, func(t *testing.T) {
			s := p.Services[svc]
			_, listen, err := net.SplitHostPort(environment(s)["HTTP_ADDR"])
			require.NoError(t, err, "HTTP_ADDR")
			assert.Equal(t, port, listen, "HTTP_ADDR")
			_, def, err := net.SplitHostPort(defaults[svc].DefaultHTTP)
			require.NoError(t, err)
			assert.Equal(t, listen, def, "the binary's default port (the image's HEALTHCHECK asks it)")
			probe, path := probePort(t, s)
			assert.Equal(t, listen, probe, "the healthcheck asks another port than HTTP_ADDR")
			assert.Equal(t, "/readyz", path, "healthy means NATS and Redis answer")
			assert.Equal(t, []string{listen}, targets[svc], "prometheus.yml must scrape %s:%s", svc, listen)
			if s.GetScale() > 1 {
				// A static target is one replica at a time (Docker's DNS
				// answers round-robin); dns_sd_configs scrapes each.
				assert.True(t, dns[svc], "%s has %d replicas: prometheus must find them with dns_sd_configs", svc, s.GetScale())
			}
		})
	}
}

func TestComposeGrafanaIsProvisioned(t *testing.T) {
	g := loadCompose(t).Services["grafana"]
	env := environment(g)
	assert.Equal(t, "true", env["GF_AUTH_ANONYMOUS_ENABLED"])
	assert.Equal(t, "Viewer", env["GF_AUTH_ANONYMOUS_ORG_ROLE"])
	var mounts []string
	for _, v := range g.Volumes {
		if v.Type == types.VolumeTypeBind {
			mounts = append(mounts, v.Target)
			st, err := os.Stat(v.Source)
			if assert.NoError(t, err, "grafana mounts %s: the observability work (issue 4) adds it", v.Source) {
				assert.True(t, st.IsDir())
			}
		}
	}
	sort.Strings(mounts)
	assert.Equal(t, []string{"/etc/grafana/provisioning", "/var/lib/grafana/dashboards"}, mounts)
}

// A stopped container gets SIGKILL after stop_grace_period (10s by
// default): a worker must have time to finish its longest poll and then
// WORKER_GRACE.
func TestComposeWorkerStopsAfterItsPolls(t *testing.T) {
	p := loadCompose(t)
	data, err := os.ReadFile(repoPath("connectors.json"))
	require.NoError(t, err)
	longest, name := longestPoll(loadConnectors(t, data))
	w := p.Services["worker"]
	grace, err := time.ParseDuration(environment(w)["WORKER_GRACE"])
	require.NoError(t, err)
	require.NotNil(t, w.StopGracePeriod, "worker needs a stop_grace_period")
	assert.Greater(t, time.Duration(*w.StopGracePeriod), longest+grace,
		"stop_grace_period must exceed the longest poll (%s, %s) + WORKER_GRACE (%s)", longest, name, grace)
	for _, svc := range []string{"scheduler", "aggregator"} {
		s := p.Services[svc]
		require.NotNil(t, s.StopGracePeriod, svc)
		assert.GreaterOrEqual(t, time.Duration(*s.StopGracePeriod), 10*time.Second, svc)
	}
}

func TestComposeTailWatchesSignals(t *testing.T) {
	p := loadCompose(t)
	tail := p.Services["tail"]
	assert.NotEmpty(t, tail.Profiles, "tail runs on demand: docker compose run --rm tail")
	assert.Equal(t, []string{"nats", "sub", "signals.>", "-s", "nats://nats:4222"}, []string(tail.Command))
	assert.Equal(t, types.ServiceConditionHealthy, tail.DependsOn["nats"].Condition)

	nats := p.Services["nats"]
	cmd := strings.Join(nats.Command, " ")
	assert.Contains(t, cmd, "-js", "JetStream on")
	assert.Contains(t, cmd, "-m 8222", "monitoring port")
	assert.NotEmpty(t, nats.Volumes, "JetStream data on a volume")
	redis := p.Services["redis"]
	assert.Contains(t, strings.Join(redis.Command, " "), "--appendonly yes", "AOF on")
	assert.NotEmpty(t, redis.Volumes)
}
