package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/service"
)

// How single values of the chart behave: the connectors, what it refuses,
// the consumer KEDA watches, the images, several releases side by side.

// The chart reads deploy/prometheus/alerts.yml and connectors.json through
// links (Helm reads only files inside a chart): one copy of each.
func TestHelmChartFilesAreTheRepositorys(t *testing.T) {
	for link, target := range map[string]string{
		"alerts.yml":      repoPath("deploy", "prometheus", "alerts.yml"),
		"connectors.json": repoPath("connectors.json"),
	} {
		got, err := filepath.EvalSymlinks(filepath.Join(chartDir(), "files", link))
		require.NoError(t, err)
		want, err := filepath.EvalSymlinks(target)
		require.NoError(t, err)
		assert.Equal(t, want, got, "files/%s must link to %s, not be a copy", link, target)
	}
}

func TestHelmChartRefuses(t *testing.T) {
	big := `{"connectors": [], "padding": "` + strings.Repeat("x", 1<<20) + `"}`
	for _, tc := range []struct {
		name, values, want string
	}{
		{"KEDA and a CPU autoscaler", "keda: {enabled: true}\nworker: {hpa: {enabled: true}}", "turn worker.hpa off"},
		{"an http:// Redis", "redis: {url: 'http://redis:6379'}", `redis.url "http://redis:6379": write redis://`},
		{"a Redis URL with a typo", "redis: {url: 'redis-sentinal://s:26379/m'}", "redis-sentinel://"},
		{"an http:// NATS node", "nats: {url: 'nats://a:4222,http://b:4222'}", `nats.url: "http://b:4222" is not a nats:// or tls:// URL`},
		{"no Redis at all", "redis: {url: ''}", "put NATS_URL and REDIS_URL in the Secret named by secret.existingSecret"},
		{"connectors that are not JSON", "connectors: 'connectors: []'", "connectors: not a connectors.json"},
		{"connectors without the list", `connectors: '{"sources": []}'`, `no "connectors" key`},
		{"connectors over 1 MiB", "connectors: '" + big + "'", "over the 1 MiB (1048576 bytes) a Kubernetes ConfigMap holds"},
		{"connectors over 1 MiB, with the way out", "connectors: '" + big + "'", "set connectorsJob.enabled=false and run pollctl apply"},
		{"a ${VAR} nobody sets", `connectors: '{"connectors": [{"name": "a", "type": "feed", "config": {"url": "${FEED_URL}"}}]}'`,
			"connectors.json uses ${FEED_URL}: set secret.workerEnv.FEED_URL"},
		{"a ${VAR} set for the scheduler only", `connectors: '{"connectors": [{"name": "a", "type": "feed", "config": {"url": "${FEED_URL}"}}]}'
scheduler: {extraEnv: [{name: FEED_URL, value: "https://feed.example"}]}`,
			"connectors.json uses ${FEED_URL}: set secret.workerEnv.FEED_URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := renderChart(t, releaseName, values(t, tc.values))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}

	// Without the Job the chart neither holds nor checks the connectors:
	// pollctl apply from the user's pipeline has no size limit.
	m := render(t, releaseName, values(t, "connectorsJob: {enabled: false}\nconnectors: '"+big+"'"))
	assert.Empty(t, m.jobs)
	assert.NotContains(t, m.configMaps, "pollgrid-connectors")
}

func TestHelmChartConnectors(t *testing.T) {
	repo, err := os.ReadFile(repoPath("connectors.json"))
	require.NoError(t, err)
	connectorsOf := func(m *manifests) string {
		cm := m.configMaps["pollgrid-connectors"]
		require.NotNil(t, cm)
		return cm.Data["connectors.json"]
	}
	checksum := func(m *manifests) string {
		return m.jobs["pollgrid-connectors-apply"].Annotations["checksum/connectors"]
	}

	def := render(t, releaseName, values(t, ""))
	assert.JSONEq(t, string(repo), connectorsOf(def), "the default is the repository's connectors.json")
	loadConnectors(t, []byte(connectorsOf(def)))
	checkConnectorsJob(t, def, true)

	// helm install --set-file connectors=my.json: the file, as it is.
	mine := `{"connectors": [{"name": "wiki", "type": "feed", "interval": "5m", "config": {"url": "https://wiki.example/feed", "token": "${WIKI_TOKEN}"}}]}`
	m := render(t, releaseName, map[string]any{"connectors": mine, "secret": map[string]any{"workerEnv": map[string]any{"WIKI_TOKEN": "t0k"}}})
	assert.Equal(t, mine, strings.TrimSpace(connectorsOf(m)))
	assert.NotEqual(t, checksum(def), checksum(m), "another connectors.json: another Job")
	same := render(t, releaseName, map[string]any{"secret": map[string]any{"workerEnv": map[string]any{"WIKI_TOKEN": "t0k"}}})
	for svc := range goServices {
		assert.Equal(t, same.deployments["pollgrid-"+svc].Spec.Template.Annotations, m.deployments["pollgrid-"+svc].Spec.Template.Annotations,
			"%s: another connectors.json rolls no pod", svc)
		assert.NotEqual(t, def.deployments["pollgrid-"+svc].Spec.Template.Annotations, m.deployments["pollgrid-"+svc].Spec.Template.Annotations,
			"%s: a secret.workerEnv value rolls the pods (the workers read it at start)", svc)
	}
	assert.Equal(t, "t0k", m.secrets["pollgrid-worker"].StringData["WIKI_TOKEN"], "the ${VAR} reaches the workers from the chart's worker Secret")
	assert.NotContains(t, m.secrets["pollgrid"].StringData, "WIKI_TOKEN", "the secret is in no other Secret")
	for svc := range goServices {
		var refs []string
		for _, ef := range m.deployments["pollgrid-"+svc].Spec.Template.Spec.Containers[0].EnvFrom {
			refs = append(refs, secretName(ef))
		}
		if svc == "worker" {
			assert.Contains(t, refs, "pollgrid-worker")
		} else {
			assert.NotContains(t, refs, "pollgrid-worker", "%s gets the connectors' secrets: only workers resolve them", svc)
		}
	}
	for _, ef := range m.jobs["pollgrid-connectors-apply"].Spec.Template.Spec.Containers[0].EnvFrom {
		assert.NotEqual(t, "pollgrid-worker", secretName(ef), "pollctl writes ${VAR} unresolved: no secret")
	}

	// Or written as YAML in my-values.yaml.
	m = render(t, releaseName, values(t, `
connectors:
  connectors:
    - {name: wiki, type: feed, interval: 5m, config: {url: "https://wiki.example/feed"}}
`))
	assert.JSONEq(t, `{"connectors": [{"name": "wiki", "type": "feed", "interval": "5m", "config": {"url": "https://wiki.example/feed"}}]}`, connectorsOf(m))
	loadConnectors(t, []byte(connectorsOf(m)))

	// Same connectors, same Job: rendering is stable.
	assert.Equal(t, checksum(def), checksum(render(t, releaseName, values(t, ""))))

	// GitOps: no Job, no ConfigMap; the pods are the same.
	off := render(t, releaseName, values(t, "connectorsJob: {enabled: false}"))
	checkConnectorsJob(t, off, false)
	for svc := range goServices {
		assert.Equal(t, def.deployments["pollgrid-"+svc].Spec, off.deployments["pollgrid-"+svc].Spec, svc)
	}

	// Without --prune: connectors applied around the chart stay.
	keep := render(t, releaseName, values(t, "connectorsJob: {prune: false}"))
	assert.NotContains(t, keep.jobs["pollgrid-connectors-apply"].Spec.Template.Spec.Containers[0].Args, "--prune")
}

// checkConnectorsJob: with the Job, connectors.json is applied by pollctl
// after every install and upgrade, from a ConfigMap only the Job mounts;
// without it, neither is rendered.
func checkConnectorsJob(t *testing.T, m *manifests, enabled bool) {
	t.Helper()
	if !enabled {
		assert.Empty(t, m.jobs, "no Job")
		assert.NotContains(t, m.configMaps, "pollgrid-connectors", "no ConfigMap")
		return
	}
	job := m.jobs["pollgrid-connectors-apply"]
	require.NotNil(t, job, "the connectors Job")
	assert.Equal(t, "post-install,post-upgrade,post-rollback", job.Annotations["helm.sh/hook"])
	assert.Equal(t, "before-hook-creation", job.Annotations["helm.sh/hook-delete-policy"], "an upgrade replaces the last Job")
	require.NotNil(t, job.Spec.BackoffLimit)
	assert.Positive(t, *job.Spec.BackoffLimit, "retried while NATS or the scheduler does not answer yet")
	require.NotNil(t, job.Spec.TTLSecondsAfterFinished)
	pod := job.Spec.Template.Spec
	assert.Equal(t, corev1.RestartPolicyNever, pod.RestartPolicy)
	require.NotNil(t, pod.AutomountServiceAccountToken)
	assert.False(t, *pod.AutomountServiceAccountToken)
	require.NotNil(t, pod.SecurityContext)
	require.NotNil(t, pod.SecurityContext.RunAsNonRoot)
	assert.True(t, *pod.SecurityContext.RunAsNonRoot)
	require.Len(t, pod.Containers, 1)
	c := pod.Containers[0]
	assert.Equal(t, "pollgrid/pollctl:"+chartAppVersion(t), c.Image, "the image make images builds")
	require.NotNil(t, c.SecurityContext)
	require.NotNil(t, c.SecurityContext.ReadOnlyRootFilesystem)
	assert.True(t, *c.SecurityContext.ReadOnlyRootFilesystem)
	require.GreaterOrEqual(t, len(c.Args), 3)
	assert.Equal(t, "apply", c.Args[0])
	assert.Contains(t, c.Args, "--prune", "the file is the whole set")
	file := c.Args[len(c.Args)-1]
	assert.Equal(t, "-f", c.Args[len(c.Args)-2])

	var mounted string
	for _, vm := range c.VolumeMounts {
		if rel, ok := strings.CutPrefix(file, vm.MountPath+"/"); ok {
			assert.True(t, vm.ReadOnly)
			for _, v := range pod.Volumes {
				if v.Name == vm.Name && v.ConfigMap != nil {
					cm := m.configMaps[v.ConfigMap.Name]
					require.NotNil(t, cm, "ConfigMap %s", v.ConfigMap.Name)
					assert.Contains(t, cm.Data, rel)
					mounted = v.ConfigMap.Name
				}
			}
		}
	}
	assert.Equal(t, "pollgrid-connectors", mounted, "-f %s is mounted from the connectors ConfigMap", file)

	// It reaches NATS as the services do: their Secret, and its URL there.
	var refs []string
	for _, ef := range c.EnvFrom {
		refs = append(refs, secretName(ef))
	}
	assert.Contains(t, refs, "pollgrid")
	assert.NotEmpty(t, m.secrets["pollgrid"].StringData["NATS_URL"])
}

// A stopping worker gets SIGKILL after terminationGracePeriodSeconds: it
// must have time to finish its longest poll and then WORKER_GRACE.
func TestHelmChartWorkerDrains(t *testing.T) {
	m := render(t, releaseName, values(t, ""))
	d := m.deployments["pollgrid-worker"]
	longest, name := longestPoll(loadConnectors(t, []byte(m.configMaps["pollgrid-connectors"].Data["connectors.json"])))
	graceValue, ok := envValue(d.Spec.Template.Spec.Containers[0], "WORKER_GRACE")
	require.True(t, ok)
	grace, err := time.ParseDuration(graceValue)
	require.NoError(t, err)
	period := time.Duration(*d.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	assert.Greater(t, period, longest+grace,
		"terminationGracePeriodSeconds must exceed the longest poll (%s, %s) + WORKER_GRACE (%s)", longest, name, grace)
}

// KEDA must watch the consumer the workers use, which is named after
// worker.types and worker.connectors; a wrong name reads as the whole stream
// pending and scales to the maximum.
func TestHelmChartKEDAWatchesTheWorkersConsumer(t *testing.T) {
	for _, f := range []bus.Filter{
		{},
		{Types: []string{"github-releases"}},
		{Types: []string{"feed", "http-json"}, Names: []string{"wiki"}},
		{Types: []string{"weather-noaa", "usgs-earthquakes", "github-releases", "datadog-events"}}, // past 48 characters: hashed
	} {
		t.Run(f.ConsumerName(), func(t *testing.T) {
			vals := map[string]any{"keda": map[string]any{"enabled": true},
				"worker": map[string]any{"types": toAny(f.Types), "connectors": toAny(f.Names)}}
			m := render(t, releaseName, vals)
			assert.Equal(t, f.ConsumerName(), dig(m.custom["ScaledObject"]["pollgrid-worker"], "spec", "triggers", 0, "metadata", "consumer"))
			c := m.deployments["pollgrid-worker"].Spec.Template.Spec.Containers[0]
			types, _ := envValue(c, "WORKER_TYPES")
			names, _ := envValue(c, "WORKER_CONNECTORS")
			lookup := config.MapEnv(map[string]string{"WORKER_TYPES": types, "WORKER_CONNECTORS": names})
			assert.Equal(t, f.ConsumerName(), bus.Filter{Types: service.List(lookup, "WORKER_TYPES"), Names: service.List(lookup, "WORKER_CONNECTORS")}.ConsumerName(),
				"the workers' environment names the same consumer")
		})
	}
}

func toAny(s []string) []any {
	out := []any{}
	for _, v := range s {
		out = append(out, v)
	}
	return out
}

// The chart's images are the ones docs/deploy.md builds and docker compose
// names: pollgrid/<service>, tagged with the release (the chart's appVersion).
func TestHelmChartImagesAreTheDocumentedOnes(t *testing.T) {
	version := chartAppVersion(t)
	assert.Regexp(t, `^v\d+\.\d+\.\d+$`, version, "appVersion is a release tag, as git describe and -version print it")
	doc, err := os.ReadFile(repoPath("docs", "deploy.md"))
	require.NoError(t, err)
	assert.Contains(t, string(doc), "-t pollgrid/worker:"+version, "docs/deploy.md builds the image the chart installs")
	p := loadCompose(t)
	for svc := range goServices {
		image := p.Services[svc].Image
		assert.Equal(t, "pollgrid/"+svc, image[:strings.LastIndex(image, ":")], "docker-compose.yml names the image as the chart does")
	}
	values, err := os.ReadFile(filepath.Join(chartDir(), "values.yaml"))
	require.NoError(t, err)
	assert.Regexp(t, regexp.MustCompile(`(?m)^  registry: pollgrid$`), string(values))
}

// Objects must never select pods of another release in the same namespace.
func TestHelmChartReleasesDoNotOverlap(t *testing.T) {
	a := render(t, "pollgrid", values(t, ""))
	b := render(t, "staging", values(t, ""))
	for svc := range goServices {
		sel, err := metav1.LabelSelectorAsSelector(a.deployments["pollgrid-"+svc].Spec.Selector)
		require.NoError(t, err)
		assert.False(t, sel.Matches(labels.Set(b.deployments["staging-pollgrid-"+svc].Spec.Template.Labels)), svc)
	}
}
