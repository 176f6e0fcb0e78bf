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
		{"a ${VAR} nobody sets", `connectors: '{"connectors": [{"name": "a", "type": "feed", "config": {"url": "${FEED_URL}"}}]}'`,
			"connectors.json uses ${FEED_URL}: set secret.env.FEED_URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := renderChart(t, releaseName, values(t, tc.values))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
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
		return m.deployments["pollgrid-worker"].Spec.Template.Annotations["checksum/connectors"]
	}

	def := render(t, releaseName, values(t, ""))
	assert.JSONEq(t, string(repo), connectorsOf(def), "the default is the repository's connectors.json")
	loadConnectors(t, []byte(connectorsOf(def)))

	// helm install --set-file connectors=my.json: the file, as it is.
	mine := `{"connectors": [{"name": "wiki", "type": "feed", "interval": "5m", "config": {"url": "https://wiki.example/feed", "token": "${WIKI_TOKEN}"}}]}`
	m := render(t, releaseName, map[string]any{"connectors": mine, "secret": map[string]any{"env": map[string]any{"WIKI_TOKEN": "t0k"}}})
	assert.Equal(t, mine, strings.TrimSpace(connectorsOf(m)))
	assert.NotEqual(t, checksum(def), checksum(m), "another connectors.json rolls the pods")
	assert.Equal(t, "t0k", m.secrets["pollgrid"].StringData["WIKI_TOKEN"], "the ${VAR} reaches the pods from the chart's Secret")

	// Or written as YAML in my-values.yaml.
	m = render(t, releaseName, values(t, `
connectors:
  connectors:
    - {name: wiki, type: feed, interval: 5m, config: {url: "https://wiki.example/feed"}}
`))
	assert.JSONEq(t, `{"connectors": [{"name": "wiki", "type": "feed", "interval": "5m", "config": {"url": "https://wiki.example/feed"}}]}`, connectorsOf(m))
	loadConnectors(t, []byte(connectorsOf(m)))

	// Same connectors, same pods: rendering is stable.
	assert.Equal(t, checksum(def), checksum(render(t, releaseName, values(t, ""))))
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
