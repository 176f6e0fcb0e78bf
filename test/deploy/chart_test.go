package deploy

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/egress"
	"github.com/pollgrid/pollgrid/pkg/service"
)

// chartValueSets are the values the chart is linted, rendered and checked
// with: what users install. check asserts what each one is for.
var chartValueSets = []struct {
	name    string
	release string // the release name; objects are named <base>-<service>
	base    string
	values  string
	check   func(t *testing.T, m *manifests)
}{
	{
		name: "defaults", release: releaseName, base: "pollgrid",
		check: func(t *testing.T, m *manifests) {
			w := m.deployments["pollgrid-worker"]
			require.NotNil(t, w.Spec.Replicas)
			assert.EqualValues(t, 3, *w.Spec.Replicas)
			require.NotNil(t, m.deployments["pollgrid-scheduler"].Spec.Replicas)
			assert.EqualValues(t, 2, *m.deployments["pollgrid-scheduler"].Spec.Replicas, "two schedulers")
			assert.Empty(t, m.hpas, "no autoscaler unless asked")
			assert.Empty(t, m.custom, "no KEDA or Prometheus Operator objects unless asked")
			for svc := range goServices {
				c := m.deployments["pollgrid-"+svc].Spec.Template.Spec.Containers[0]
				assert.Equal(t, "pollgrid/"+svc+":"+chartAppVersion(t), c.Image, "the image docs/deploy.md builds")
			}
			assert.Contains(t, m.pdbs, "pollgrid-scheduler")
			assert.Contains(t, m.pdbs, "pollgrid-worker")
			assert.NotContains(t, m.pdbs, "pollgrid-aggregator", "one aggregator: a budget would block node drains or do nothing")

			s := m.secrets["pollgrid"]
			require.NotNil(t, s)
			assert.Equal(t, "nats://nats.nats.svc.cluster.local:4222", s.StringData["NATS_URL"], "the official NATS chart's service")
			assert.Equal(t, "redis://redis-master.redis.svc.cluster.local:6379/0", s.StringData["REDIS_URL"])
			allow, ok := envValue(w.Spec.Template.Spec.Containers[0], "UPSTREAM_ALLOW")
			assert.True(t, ok && allow == "", "UPSTREAM_ALLOW is set, empty: the outbound guard refuses private addresses")
		},
	},
	{
		name: "Sentinel Redis, existing Secret, NATS creds and TLS", release: releaseName, base: "pollgrid",
		values: `
nats:
  url: tls://nats-0.nats-headless.nats:4222,tls://nats-1.nats-headless.nats:4222
  credsSecret: {name: nats-user, key: pollgrid.creds}
  tlsSecret: {name: nats-ca}
redis:
  url: redis-sentinel://sentinel-0.redis:26379,sentinel-1.redis:26379,sentinel-2.redis:26379/mymaster
secret:
  existingSecret: team-secrets
upstreamAllow: [10.20.0.0/16, jira.corp.example]
`,
		check: func(t *testing.T, m *manifests) {
			assert.NotContains(t, m.secrets, "team-secrets", "the user's Secret is never rendered, so never overwritten")
			assert.Equal(t, "redis-sentinel://sentinel-0.redis:26379,sentinel-1.redis:26379,sentinel-2.redis:26379/mymaster",
				m.secrets["pollgrid"].StringData["REDIS_URL"])
			for svc := range goServices {
				d := m.deployments["pollgrid-"+svc]
				c := d.Spec.Template.Spec.Containers[0]
				require.NotEmpty(t, c.EnvFrom)
				last := c.EnvFrom[len(c.EnvFrom)-1]
				require.NotNil(t, last.SecretRef, "%s: the user's Secret comes last, so its keys win", svc)
				assert.Equal(t, "team-secrets", last.SecretRef.Name)

				// The NATS credentials: the creds file and the CA from the
				// user's Secrets, mounted read-only where the variables say.
				for variable, want := range map[string][2]string{
					"NATS_CREDS": {"nats-user", "pollgrid.creds"},
					"NATS_CA":    {"nats-ca", "ca.crt"},
				} {
					path, ok := envValue(c, variable)
					require.True(t, ok, "%s: %s", svc, variable)
					secret, key := mountedSecretKey(t, d, path)
					assert.Equal(t, want, [2]string{secret, key}, "%s: %s=%s", svc, variable, path)
				}
				_, mutual := envValue(c, "NATS_CERT")
				assert.False(t, mutual, "no client certificate unless asked")
			}
			c := m.deployments["pollgrid-worker"].Spec.Template.Spec.Containers[0]
			allow, _ := envValue(c, "UPSTREAM_ALLOW")
			assert.Equal(t, "10.20.0.0/16,jira.corp.example", allow)
			list, err := egress.Parse("UPSTREAM_ALLOW", service.List(config.MapEnv(map[string]string{"UPSTREAM_ALLOW": allow}), "UPSTREAM_ALLOW"))
			require.NoError(t, err, "the worker accepts UPSTREAM_ALLOW")
			assert.Contains(t, list.String(), "jira.corp.example")
		},
	},
	{
		name: "KEDA, ServiceMonitor and PrometheusRule", release: releaseName, base: "pollgrid",
		values: `
keda: {enabled: true}
serviceMonitor: {enabled: true, labels: {release: kube-prometheus-stack}}
prometheusRule: {enabled: true, labels: {release: kube-prometheus-stack}}
`,
		check: func(t *testing.T, m *manifests) {
			w := m.deployments["pollgrid-worker"]
			assert.Nil(t, w.Spec.Replicas, "KEDA owns the worker count: an upgrade must not reset it")
			assert.Empty(t, m.hpas, "KEDA makes its own HorizontalPodAutoscaler: none of the chart's")
			assert.Contains(t, m.pdbs, "pollgrid-worker")

			so := m.custom["ScaledObject"]["pollgrid-worker"]
			require.NotNil(t, so, "a ScaledObject for the workers")
			assert.Equal(t, "Deployment", dig(so, "spec", "scaleTargetRef", "kind"))
			assert.Equal(t, w.Name, dig(so, "spec", "scaleTargetRef", "name"), "it scales the worker Deployment")
			assert.EqualValues(t, 2, dig(so, "spec", "minReplicaCount"))
			assert.EqualValues(t, 10, dig(so, "spec", "maxReplicaCount"))
			triggers, _ := dig(so, "spec", "triggers").([]any)
			require.Len(t, triggers, 1)
			assert.Equal(t, "nats-jetstream", dig(triggers[0], "type"))
			meta, _ := dig(triggers[0], "metadata").(map[string]any)
			assert.Equal(t, bus.TicksStream, meta["stream"], "the stream the ticks wait in")
			assert.Equal(t, bus.Filter{}.ConsumerName(), meta["consumer"], "the consumer the workers share")
			assert.Equal(t, "$G", meta["account"])
			assert.Equal(t, "nats-headless.nats.svc.cluster.local:8222", meta["natsServerMonitoringEndpoint"])
			concurrency, _ := envValue(w.Spec.Template.Spec.Containers[0], "WORKER_CONCURRENCY")
			assert.Equal(t, concurrency, meta["lagThreshold"], "about WORKER_CONCURRENCY ticks per worker")
			for k, v := range meta {
				assert.IsType(t, "", v, "KEDA's trigger metadata are strings: %s", k)
			}

			sm := m.custom["ServiceMonitor"]["pollgrid"]
			require.NotNil(t, sm, "a ServiceMonitor")
			assert.Equal(t, "kube-prometheus-stack", dig(sm, "metadata", "labels", "release"), "the label Prometheus selects monitors by")
			sel := labels.Set{}
			for k, v := range dig(sm, "spec", "selector", "matchLabels").(map[string]any) {
				sel[k] = v.(string)
			}
			for svc := range goServices {
				s := m.services["pollgrid-"+svc]
				assert.True(t, labels.SelectorFromSet(sel).Matches(labels.Set(s.Labels)), "the ServiceMonitor selects Service %s", s.Name)
				assert.Equal(t, dig(sm, "spec", "endpoints", 0, "port"), s.Spec.Ports[0].Name, "it scrapes the port serving /metrics")
			}
			assert.Equal(t, "/metrics", dig(sm, "spec", "endpoints", 0, "path"))
			assert.True(t, m.services["pollgrid-worker"].Spec.PublishNotReadyAddresses, "a worker that is not ready is still scraped")

			rule := m.custom["PrometheusRule"]["pollgrid"]
			require.NotNil(t, rule, "a PrometheusRule")
			assert.Equal(t, "kube-prometheus-stack", dig(rule, "metadata", "labels", "release"))
			assert.Equal(t, alertGroups(t), normalize(t, dig(rule, "spec", "groups")), "the rules are deploy/prometheus/alerts.yml's")
		},
	},
	{
		name: "replicas, resources and images", release: "prod", base: "prod-pollgrid",
		values: `
image: {registry: registry.example.com/pollgrid, tag: v0.2.0}
scheduler: {replicas: 3}
worker:
  replicas: 6
  resources:
    requests: {cpu: 250m, memory: 256Mi}
    limits: {cpu: "2", memory: 1Gi}
aggregator: {replicas: 2}
`,
		check: func(t *testing.T, m *manifests) {
			for svc, want := range map[string]int32{"scheduler": 3, "worker": 6, "aggregator": 2} {
				d := m.deployments["prod-pollgrid-"+svc]
				require.NotNil(t, d.Spec.Replicas)
				assert.Equal(t, want, *d.Spec.Replicas, svc)
				assert.Equal(t, "registry.example.com/pollgrid/"+svc+":v0.2.0", d.Spec.Template.Spec.Containers[0].Image)
				assert.Contains(t, m.pdbs, "prod-pollgrid-"+svc, "%s runs %d pods: a disruption budget", svc, want)
			}
			r := m.deployments["prod-pollgrid-worker"].Spec.Template.Spec.Containers[0].Resources
			assert.True(t, r.Requests.Cpu().Equal(resource.MustParse("250m")))
			assert.True(t, r.Limits.Memory().Equal(resource.MustParse("1Gi")))
			assert.Contains(t, m.secrets, "prod-pollgrid")
		},
	},
	{
		name: "CPU autoscaler", release: releaseName, base: "pollgrid",
		values: `worker: {hpa: {enabled: true, minReplicas: 3, maxReplicas: 12}}`,
		check: func(t *testing.T, m *manifests) {
			w := m.deployments["pollgrid-worker"]
			assert.Nil(t, w.Spec.Replicas, "the HPA owns the worker count")
			hpa := m.hpas["pollgrid-worker"]
			require.NotNil(t, hpa)
			assert.Equal(t, w.Name, hpa.Spec.ScaleTargetRef.Name)
			require.NotNil(t, hpa.Spec.MinReplicas)
			assert.EqualValues(t, 3, *hpa.Spec.MinReplicas)
			assert.EqualValues(t, 12, hpa.Spec.MaxReplicas)
			assert.Empty(t, m.custom["ScaledObject"])
		},
	},
}

func TestHelmChart(t *testing.T) {
	for _, vs := range chartValueSets {
		t.Run(vs.name, func(t *testing.T) {
			vals := values(t, vs.values)
			lint(t, vals)
			m := render(t, vs.release, vals)
			checkServices(t, m, vs.base)
			checkEnvironment(t, m, vs.base)
			vs.check(t, m)
		})
	}
}

// checkEnvironment: every variable the services read reaches their
// containers, from the settings ConfigMap, the chart's Secret or the
// container's env, with a value the service accepts.
func checkEnvironment(t *testing.T, m *manifests, base string) {
	t.Helper()
	shared, own := readVariables(t)
	for svc := range goServices {
		c := m.deployments[base+"-"+svc].Spec.Template.Spec.Containers[0]
		env := map[string]string{}
		for _, ef := range c.EnvFrom {
			if ef.ConfigMapRef != nil {
				for k, v := range m.configMaps[ef.ConfigMapRef.Name].Data {
					env[k] = v
				}
			}
			if s := m.secrets[secretName(ef)]; s != nil {
				for k, v := range s.StringData {
					env[k] = v
				}
			}
		}
		fromPod := map[string]bool{}
		for _, e := range c.Env {
			if e.ValueFrom != nil {
				fromPod[e.Name] = true
				continue
			}
			env[e.Name] = e.Value
		}
		for _, v := range append(append([]string{}, shared...), own[svc]...) {
			if perReplica[v] {
				assert.True(t, fromPod[v], "%s: %s must differ per replica: the pod's name", svc, v)
				continue
			}
			assert.Contains(t, env, v, "%s reads %s: the chart must set it", svc, v)
		}
		lookup := config.MapEnv(env)
		_, err := service.ReadEnv(lookup, "")
		assert.NoError(t, err, svc)
		for _, v := range own[svc] {
			if strings.HasSuffix(v, "_TTL") || strings.HasSuffix(v, "_WAIT") || strings.HasSuffix(v, "_GRACE") ||
				strings.HasSuffix(v, "_WINDOW") || strings.HasSuffix(v, "_RESYNC") || strings.HasSuffix(v, "_FLUSH") {
				_, err := service.Duration(lookup, v, time.Second)
				assert.NoError(t, err, "%s: %s=%q", svc, v, env[v])
			}
		}
		redis, _, err := service.NewRedisClient(svc, lookup, env["REDIS_URL"])
		if assert.NoError(t, err, "%s: the service accepts REDIS_URL=%s", svc, env["REDIS_URL"]) {
			_ = redis.Close()
		}
	}
}

func secretName(ef corev1.EnvFromSource) string {
	if ef.SecretRef == nil {
		return ""
	}
	return ef.SecretRef.Name
}

// mountedSecretKey returns the Secret and key a file path of the pod comes from.
func mountedSecretKey(t *testing.T, d *appsv1.Deployment, path string) (secret, key string) {
	t.Helper()
	pod := d.Spec.Template.Spec
	for _, vm := range pod.Containers[0].VolumeMounts {
		rel, ok := strings.CutPrefix(path, vm.MountPath+"/")
		if !ok {
			continue
		}
		assert.True(t, vm.ReadOnly, "%s is mounted read-only", vm.MountPath)
		for _, v := range pod.Volumes {
			if v.Name == vm.Name && v.Secret != nil {
				require.NotNil(t, v.Secret.DefaultMode)
				assert.EqualValues(t, 0o440, *v.Secret.DefaultMode, "credentials readable by their owner and group only")
				require.NotNil(t, pod.SecurityContext.FSGroup, "the group the credentials are readable by")
				assert.Equal(t, *pod.SecurityContext.RunAsGroup, *pod.SecurityContext.FSGroup, "the pod's own group")
				for _, item := range v.Secret.Items {
					if item.Path == rel {
						return v.Secret.SecretName, item.Key
					}
				}
			}
		}
	}
	t.Fatalf("%s is mounted from no Secret", path)
	return "", ""
}

func chartAppVersion(t *testing.T) string {
	t.Helper()
	return loadChart(t).Metadata.AppVersion
}

// normalize turns decoded YAML into what encoding/json makes of it, so that
// two decodings compare equal.
func normalize(t *testing.T, v any) any {
	t.Helper()
	js, err := json.Marshal(v)
	require.NoError(t, err)
	var out any
	require.NoError(t, json.Unmarshal(js, &out))
	return out
}

// alertGroups are the groups of deploy/prometheus/alerts.yml.
func alertGroups(t *testing.T) any {
	t.Helper()
	data, err := os.ReadFile(repoPath("deploy", "prometheus", "alerts.yml"))
	require.NoError(t, err)
	var file struct {
		Groups []any `json:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(data, &file))
	require.NotEmpty(t, file.Groups)
	return normalize(t, file.Groups)
}
