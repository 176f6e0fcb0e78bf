package deploy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	release "helm.sh/helm/v4/pkg/release/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"sigs.k8s.io/yaml"
)

// The chart, rendered and linted through the Helm SDK as `helm template` and
// `helm lint --strict` would, for the release `helm install pollgrid
// deploy/helm/pollgrid -n pollgrid` makes.
const (
	releaseName      = "pollgrid"
	releaseNamespace = "pollgrid"
)

func chartDir() string { return repoPath("deploy", "helm", "pollgrid") }

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir())
	require.NoError(t, err, "the chart does not load")
	return c
}

// values parses a my-values.yaml.
func values(t *testing.T, doc string) map[string]any {
	t.Helper()
	out := map[string]any{}
	require.NoError(t, yaml.Unmarshal([]byte(doc), &out), "values:\n%s", doc)
	return out
}

// renderChart is `helm template <name> deploy/helm/pollgrid -n pollgrid -f
// values`: an install in client-only dry-run mode, where lookup finds nothing.
// The hooks (the connectors Job) follow the release's objects, as helm
// template prints them.
func renderChart(t *testing.T, name string, vals map[string]any) (string, error) {
	t.Helper()
	install := action.NewInstall(action.NewConfiguration())
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName = name
	install.Namespace = releaseNamespace
	install.Replace = true
	rel, err := install.Run(loadChart(t), vals)
	if err != nil {
		return "", err
	}
	r, ok := rel.(*release.Release)
	require.True(t, ok, "release type %T", rel)
	manifest := r.Manifest
	for _, h := range r.Hooks {
		if h.Kind != "Job" {
			return "", fmt.Errorf("the chart has a hook %s %s (%s), which this test does not check", h.Kind, h.Name, h.Path)
		}
		manifest += "\n---\n" + h.Manifest
	}
	return manifest, nil
}

// render renders for release name and decodes every object strictly.
func render(t *testing.T, name string, vals map[string]any) *manifests {
	t.Helper()
	out, err := renderChart(t, name, vals)
	require.NoError(t, err)
	return decodeManifest(t, out)
}

// lint is `helm lint --strict deploy/helm/pollgrid -f values`: an error or
// a warning fails.
func lint(t *testing.T, vals map[string]any) {
	t.Helper()
	l := action.NewLint()
	l.Strict = true
	l.Namespace = releaseNamespace
	res := l.Run([]string{chartDir()}, vals)
	var problems []string
	for _, msg := range res.Messages {
		if msg.Severity > support.InfoSev {
			problems = append(problems, msg.Error())
		}
	}
	for _, err := range res.Errors {
		problems = append(problems, err.Error())
	}
	require.Empty(t, problems, "helm lint --strict:\n%s", strings.Join(problems, "\n"))
	require.Equal(t, 1, res.TotalChartsLinted)
}

func TestHelmLintCatchesABrokenChart(t *testing.T) {
	// The lint above fails on what it should: values that render an object
	// that is not YAML. (Lint does not stop at the chart's own fail
	// messages: rendering does, TestHelmChartRefuses.)
	l := action.NewLint()
	l.Strict = true
	res := l.Run([]string{chartDir()}, values(t, "scheduler: {podAnnotations: 'not: a map'}"))
	require.NotEmpty(t, res.Errors)
	assert.Contains(t, fmt.Sprint(res.Errors), "unable to parse YAML")
}

// clusterSecrets answers the chart's lookups from a fake cluster holding
// the given Secrets, as `helm install` and `helm upgrade` would.
type clusterSecrets struct{ client dynamic.Interface }

func (c clusterSecrets) GetClientFor(apiVersion, kind string) (dynamic.NamespaceableResourceInterface, bool, error) {
	if apiVersion != "v1" || kind != "Secret" {
		return nil, false, fmt.Errorf("the chart looks up %s %s: teach the test's fake cluster about it", apiVersion, kind)
	}
	return c.client.Resource(schema.GroupVersionResource{Version: "v1", Resource: "secrets"}), true, nil
}

// renderInCluster renders the chart as an install against a cluster
// holding secrets would.
func renderInCluster(t *testing.T, vals map[string]any, secrets ...*corev1.Secret) (map[string]string, error) {
	t.Helper()
	scheme := runtime.NewScheme()
	require.NoError(t, corev1.AddToScheme(scheme))
	var objs []runtime.Object
	for _, s := range secrets {
		objs = append(objs, s)
	}
	c := loadChart(t)
	top, err := chartutil.ToRenderValues(c, vals,
		common.ReleaseOptions{Name: releaseName, Namespace: releaseNamespace, Revision: 1, IsInstall: true},
		common.DefaultCapabilities)
	require.NoError(t, err)
	return engine.RenderWithClientProvider(c, top, clusterSecrets{dynamicfake.NewSimpleDynamicClient(scheme, objs...)})
}

// With secret.existingSecret the chart never writes that Secret, and on
// install it reads it (lookup) to refuse a connectors.json whose ${VAR}s
// would be missing from the workers: every poll of those connectors would
// fail. secret.workerExistingSecret, the workers' own, is read the same way.
func TestHelmExistingSecretIsReadNeverWritten(t *testing.T) {
	vals := values(t, `
secret: {existingSecret: team-secrets}
connectors: |
  {"connectors": [{"name": "releases", "type": "github-releases", "interval": "5m",
    "config": {"owner": "nats-io", "repo": "nats-server", "token": "${GITHUB_TOKEN}"}}]}
`)
	userSecret := func(data map[string]string) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "team-secrets", Namespace: releaseNamespace}, Data: map[string][]byte{}}
		for k, v := range data {
			s.Data[k] = []byte(v)
		}
		return s
	}

	_, err := renderInCluster(t, vals, userSecret(map[string]string{"REDIS_URL": "redis://:pw@redis:6379/0"}))
	require.Error(t, err, "the Secret lacks GITHUB_TOKEN")
	assert.Contains(t, err.Error(), "connectors.json uses ${GITHUB_TOKEN}, which the Secret team-secrets does not hold")

	out, err := renderInCluster(t, vals, userSecret(map[string]string{"GITHUB_TOKEN": "ghp_x"}))
	require.NoError(t, err)
	var manifest strings.Builder
	for name, doc := range out {
		if strings.HasSuffix(name, ".yaml") {
			manifest.WriteString("\n---\n" + doc)
		}
	}
	m := decodeManifest(t, manifest.String())
	assert.NotContains(t, m.secrets, "team-secrets", "the chart renders no object named like the user's Secret")

	// Not there yet (or `helm template`): nothing to check against; the
	// pods wait for it (CreateContainerConfigError names it).
	_, err = renderInCluster(t, vals)
	assert.NoError(t, err)

	// The workers' own Secret: the ${VAR}s in it, and it named in the fix.
	workerSecret := func(data map[string]string) *corev1.Secret {
		s := userSecret(data)
		s.Name = "connector-secrets"
		return s
	}
	vals["secret"] = map[string]any{"existingSecret": "team-secrets", "workerExistingSecret": "connector-secrets"}
	_, err = renderInCluster(t, vals, userSecret(map[string]string{"REDIS_URL": "redis://:pw@redis:6379/0"}), workerSecret(map[string]string{"SLACK_TOKEN": "x"}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "connectors.json uses ${GITHUB_TOKEN}, which neither of the Secrets connector-secrets and team-secrets holds")
	_, err = renderInCluster(t, vals, userSecret(map[string]string{"REDIS_URL": "redis://:pw@redis:6379/0"}), workerSecret(map[string]string{"GITHUB_TOKEN": "ghp_x"}))
	assert.NoError(t, err)
}
