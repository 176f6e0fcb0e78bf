package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// manifests are the decoded objects of deploy/k8s, by kind and name.
type manifests struct {
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
	pdbs        map[string]*policyv1.PodDisruptionBudget
	hpas        map[string]*autoscalingv2.HorizontalPodAutoscaler
	namespaces  map[string]*corev1.Namespace
	files       []string
}

// decodeStrict decodes one YAML document into out (a k8s.io/api type)
// rejecting unknown and duplicate fields, as `kubectl apply --validate=strict` would.
func decodeStrict(doc []byte, out any) error {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	return dec.Decode(out)
}

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

func loadManifests(t *testing.T, dir string) *manifests {
	t.Helper()
	m := &manifests{
		deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{},
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		pdbs: map[string]*policyv1.PodDisruptionBudget{}, hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		namespaces: map[string]*corev1.Namespace{},
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no manifests in %s", dir)
	for _, file := range files {
		if filepath.Base(file) == "kustomization.yaml" {
			continue
		}
		m.files = append(m.files, filepath.Base(file))
		data, err := os.ReadFile(file)
		require.NoError(t, err)
		for i, doc := range docSeparator.Split(string(data), -1) {
			if strings.TrimSpace(regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(doc, "")) == "" {
				continue
			}
			require.NoError(t, m.add([]byte(doc)), "%s document %d", filepath.Base(file), i+1)
		}
	}
	return m
}

func (m *manifests) add(doc []byte) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return err
	}
	var obj interface{ GetName() string }
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 Deployment":
		obj = &appsv1.Deployment{}
	case "v1 Service":
		obj = &corev1.Service{}
	case "v1 ConfigMap":
		obj = &corev1.ConfigMap{}
	case "v1 Secret":
		obj = &corev1.Secret{}
	case "v1 Namespace":
		obj = &corev1.Namespace{}
	case "policy/v1 PodDisruptionBudget":
		obj = &policyv1.PodDisruptionBudget{}
	case "autoscaling/v2 HorizontalPodAutoscaler":
		obj = &autoscalingv2.HorizontalPodAutoscaler{}
	default:
		return fmt.Errorf("unexpected %s %s: add it to the test's kinds", tm.APIVersion, tm.Kind)
	}
	if err := decodeStrict(doc, obj); err != nil {
		return fmt.Errorf("%s: %w", tm.Kind, err)
	}
	if obj.GetName() == "" {
		return fmt.Errorf("%s without a name", tm.Kind)
	}
	switch o := obj.(type) {
	case *appsv1.Deployment:
		m.deployments[o.Name] = o
	case *corev1.Service:
		m.services[o.Name] = o
	case *corev1.ConfigMap:
		m.configMaps[o.Name] = o
	case *corev1.Secret:
		m.secrets[o.Name] = o
	case *corev1.Namespace:
		m.namespaces[o.Name] = o
	case *policyv1.PodDisruptionBudget:
		m.pdbs[o.Name] = o
	case *autoscalingv2.HorizontalPodAutoscaler:
		m.hpas[o.Name] = o
	}
	return nil
}

func k8sDir() string { return repoPath("deploy", "k8s") }

func TestK8sStrictDecodeRejectsUnknownFields(t *testing.T) {
	// The decoder the manifests go through does reject a typo.
	err := decodeStrict([]byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replica: 2}\n"), &appsv1.Deployment{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `unknown field "replica"`)
	err = decodeStrict([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nmetadata: {name: y}\n"), &corev1.ConfigMap{})
	assert.Error(t, err, "duplicate keys")
	m := &manifests{}
	assert.ErrorContains(t, m.add([]byte("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n")), "unexpected v1 Pod")
}

func TestK8sKustomizationListsEveryFile(t *testing.T) {
	m := loadManifests(t, k8sDir())
	data, err := os.ReadFile(filepath.Join(k8sDir(), "kustomization.yaml"))
	require.NoError(t, err)
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Namespace  string   `json:"namespace"`
		Resources  []string `json:"resources"`
		Images     []struct {
			Name    string `json:"name"`
			NewTag  string `json:"newTag"`
			NewName string `json:"newName"`
		} `json:"images"`
	}
	require.NoError(t, decodeStrict(data, &k))
	assert.Equal(t, "Kustomization", k.Kind)
	assert.Equal(t, "pollgrid", k.Namespace)
	assert.ElementsMatch(t, m.files, k.Resources)
	for _, img := range k.Images {
		assert.True(t, pinned(img.Name+":"+img.NewTag), "kustomization image %s", img.Name)
	}
}

func podLabels(svc string) map[string]string {
	return map[string]string{"app.kubernetes.io/name": "pollgrid", "app.kubernetes.io/component": svc, "app.kubernetes.io/part-of": "pollgrid"}
}

func envValue(c corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

func TestK8sDeployments(t *testing.T) {
	m := loadManifests(t, k8sDir())
	require.Len(t, m.deployments, len(goServices))
	for svc, port := range goServices {
		t.Run(svc, func(t *testing.T) {
			d := m.deployments["pollgrid-"+svc]
			require.NotNil(t, d, "Deployment pollgrid-%s", svc)
			want := podLabels(svc)
			assert.Equal(t, "pollgrid", d.Namespace)
			for k, v := range want {
				assert.Equal(t, v, d.Labels[k], "metadata label %s", k)
				assert.Equal(t, v, d.Spec.Template.Labels[k], "pod label %s", k)
			}
			require.NotNil(t, d.Spec.Selector)
			sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
			require.NoError(t, err)
			assert.True(t, sel.Matches(labels.Set(d.Spec.Template.Labels)), "the selector matches the pods")

			ann := d.Spec.Template.Annotations
			assert.Equal(t, "true", ann["prometheus.io/scrape"])
			assert.Equal(t, port, ann["prometheus.io/port"])
			assert.Equal(t, "/metrics", ann["prometheus.io/path"])

			pod := d.Spec.Template.Spec
			require.NotNil(t, pod.TerminationGracePeriodSeconds)
			require.NotNil(t, pod.SecurityContext)
			require.NotNil(t, pod.SecurityContext.RunAsNonRoot)
			assert.True(t, *pod.SecurityContext.RunAsNonRoot)
			require.Len(t, pod.Containers, 1)
			c := pod.Containers[0]
			assert.True(t, pinned(c.Image), "image %q", c.Image)
			addr, ok := envValue(c, "HTTP_ADDR")
			require.True(t, ok, "HTTP_ADDR")
			assert.Equal(t, ":"+port, addr)
			require.Len(t, c.Ports, 1)
			assert.EqualValues(t, mustAtoi(t, port), c.Ports[0].ContainerPort)
			assert.Equal(t, "http", c.Ports[0].Name)

			for name, probe := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
				require.NotNil(t, probe, "%s probe", name)
				require.NotNil(t, probe.HTTPGet, "%s probe is an HTTP GET", name)
				assert.Equal(t, "http", probe.HTTPGet.Port.String(), "%s probe port", name)
			}
			assert.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
			assert.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
			assert.Equal(t, "/healthz", c.StartupProbe.HTTPGet.Path)
			assert.GreaterOrEqual(t, c.StartupProbe.PeriodSeconds*c.StartupProbe.FailureThreshold, int32(30),
				"startup probe allows for NATS/Redis being slow to answer")

			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				req, ok := c.Resources.Requests[r]
				require.True(t, ok, "request %s", r)
				lim, ok := c.Resources.Limits[r]
				require.True(t, ok, "limit %s", r)
				assert.LessOrEqual(t, req.Cmp(lim), 0, "%s request above its limit", r)
			}

			// Config and secrets come from objects that exist.
			var fromCM, fromSecret bool
			for _, ef := range c.EnvFrom {
				if ef.ConfigMapRef != nil {
					assert.Contains(t, m.configMaps, ef.ConfigMapRef.Name)
					fromCM = true
				}
				if ef.SecretRef != nil {
					assert.Contains(t, m.secrets, ef.SecretRef.Name)
					fromSecret = true
				}
			}
			assert.True(t, fromCM && fromSecret, "envFrom the settings ConfigMap and the Secret")
			file, ok := envValue(c, "CONNECTORS_FILE")
			require.True(t, ok)
			var mounted bool
			for _, vm := range c.VolumeMounts {
				if strings.HasPrefix(file, vm.MountPath+"/") {
					assert.True(t, vm.ReadOnly)
					for _, v := range pod.Volumes {
						if v.Name == vm.Name && v.ConfigMap != nil {
							cm := m.configMaps[v.ConfigMap.Name]
							require.NotNil(t, cm, "ConfigMap %s", v.ConfigMap.Name)
							assert.Contains(t, cm.Data, strings.TrimPrefix(file, vm.MountPath+"/"))
							mounted = true
						}
					}
				}
			}
			assert.True(t, mounted, "CONNECTORS_FILE %s is mounted from a ConfigMap", file)

			s := m.services["pollgrid-"+svc]
			require.NotNil(t, s, "Service pollgrid-%s", svc)
			assert.True(t, labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)))
			require.Len(t, s.Spec.Ports, 1)
			assert.EqualValues(t, mustAtoi(t, port), s.Spec.Ports[0].Port)
			assert.Equal(t, "http", s.Spec.Ports[0].TargetPort.String())
		})
	}
	require.NotNil(t, m.deployments["pollgrid-scheduler"].Spec.Replicas)
	assert.EqualValues(t, 2, *m.deployments["pollgrid-scheduler"].Spec.Replicas, "two schedulers")
	assert.Nil(t, m.deployments["pollgrid-worker"].Spec.Replicas, "the HPA owns the worker replica count")
}

func mustAtoi(t *testing.T, s string) int {
	var n int
	_, err := fmt.Sscan(s, &n)
	require.NoError(t, err)
	return n
}

func TestK8sWorkerScalesAndDrains(t *testing.T) {
	m := loadManifests(t, k8sDir())
	d := m.deployments["pollgrid-worker"]
	require.NotNil(t, d)

	var hpa *autoscalingv2.HorizontalPodAutoscaler
	for _, h := range m.hpas {
		if h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.Name == d.Name {
			hpa = h
		}
	}
	require.NotNil(t, hpa, "a HorizontalPodAutoscaler for the workers")
	require.NotNil(t, hpa.Spec.MinReplicas)
	assert.GreaterOrEqual(t, *hpa.Spec.MinReplicas, int32(2))
	assert.Greater(t, hpa.Spec.MaxReplicas, *hpa.Spec.MinReplicas)
	var onCPU bool
	for _, mt := range hpa.Spec.Metrics {
		if mt.Type == autoscalingv2.ResourceMetricSourceType && mt.Resource != nil && mt.Resource.Name == corev1.ResourceCPU {
			onCPU = mt.Resource.Target.AverageUtilization != nil
		}
	}
	assert.True(t, onCPU, "the HPA scales on CPU utilization (needs the CPU request)")

	var pdb *policyv1.PodDisruptionBudget
	for _, p := range m.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		require.NoError(t, err)
		if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			pdb = p
		}
	}
	require.NotNil(t, pdb, "a PodDisruptionBudget selects the workers")
	assert.True(t, pdb.Spec.MaxUnavailable != nil || pdb.Spec.MinAvailable != nil)

	cm := m.configMaps["pollgrid-connectors"]
	require.NotNil(t, cm)
	longest, name := longestPoll(loadConnectors(t, []byte(cm.Data["connectors.json"])))
	settings := m.configMaps["pollgrid-env"]
	require.NotNil(t, settings)
	grace, err := time.ParseDuration(settings.Data["WORKER_GRACE"])
	require.NoError(t, err, "WORKER_GRACE in pollgrid-env")
	period := time.Duration(*d.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	assert.Greater(t, period, longest+grace,
		"terminationGracePeriodSeconds must exceed the longest poll (%s, %s) + WORKER_GRACE (%s)", longest, name, grace)
}

func TestK8sConfigAndSecrets(t *testing.T) {
	m := loadManifests(t, k8sDir())
	cm := m.configMaps["pollgrid-connectors"]
	require.NotNil(t, cm)
	repo, err := os.ReadFile(repoPath("connectors.json"))
	require.NoError(t, err)
	var a, b any
	require.NoError(t, json.Unmarshal(repo, &a))
	require.NoError(t, json.Unmarshal([]byte(cm.Data["connectors.json"]), &b), "the ConfigMap's connectors.json is JSON")
	assert.Equal(t, a, b, "the ConfigMap carries the repository's connectors.json")

	s := m.secrets["pollgrid-secrets"]
	require.NotNil(t, s)
	var keys []string
	for k := range s.StringData {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, v := range append([]string{"NATS_URL", "REDIS_URL"}, secretVars(t)...) {
		assert.Contains(t, keys, v, "the Secret provides %s", v)
	}
	settings := m.configMaps["pollgrid-env"]
	require.NotNil(t, settings)
	shared, own := readVariables(t)
	for _, v := range append(append(shared, own["scheduler"]...), append(own["worker"], own["aggregator"]...)...) {
		if perReplica[v] || v == "HTTP_ADDR" || v == "CONNECTORS_FILE" {
			continue // set on the container
		}
		_, inCM := settings.Data[v]
		_, inSecret := s.StringData[v]
		assert.True(t, inCM || inSecret, "%s is read by the services: set it in pollgrid-env or pollgrid-secrets", v)
	}
	for _, d := range m.deployments {
		c := d.Spec.Template.Spec.Containers[0]
		for _, id := range []string{"SCHEDULER_ID", "WORKER_ID"} {
			for _, e := range c.Env {
				if e.Name == id {
					require.NotNil(t, e.ValueFrom, "%s comes from the pod name", id)
					assert.Equal(t, "metadata.name", e.ValueFrom.FieldRef.FieldPath)
				}
			}
		}
	}
}
