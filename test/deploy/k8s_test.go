package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// manifests are the decoded objects of a rendered chart, by kind and name.
// Kinds of k8s.io/api are decoded into their types; the custom resources
// (KEDA, Prometheus Operator), whose types are not there, into maps.
type manifests struct {
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
	pdbs        map[string]*policyv1.PodDisruptionBudget
	hpas        map[string]*autoscalingv2.HorizontalPodAutoscaler
	jobs        map[string]*batchv1.Job
	// custom holds the custom resources by kind, then name.
	custom map[string]map[string]map[string]any
	// objects counts each "Kind name": a name used twice is an install error.
	objects map[string]int
}

// customKinds are the custom resources the chart may render.
var customKinds = map[string]bool{
	"keda.sh/v1alpha1 ScaledObject":           true,
	"monitoring.coreos.com/v1 ServiceMonitor": true,
	"monitoring.coreos.com/v1 PrometheusRule": true,
}

func newManifests() *manifests {
	return &manifests{
		deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{},
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		pdbs: map[string]*policyv1.PodDisruptionBudget{}, hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		jobs:   map[string]*batchv1.Job{},
		custom: map[string]map[string]map[string]any{}, objects: map[string]int{},
	}
}

// decodeStrict decodes one YAML document into out (a k8s.io/api type, or a
// map) rejecting unknown and duplicate fields, as `kubectl apply
// --validate=strict` would.
func decodeStrict(doc []byte, out any) error {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	return dec.Decode(out)
}

var (
	docSeparator = regexp.MustCompile(`(?m)^---\s*$`)
	commentLine  = regexp.MustCompile(`(?m)^\s*#.*$`)
)

// decodeManifest decodes every document of a multi-document YAML stream.
func decodeManifest(t *testing.T, stream string) *manifests {
	t.Helper()
	m := newManifests()
	for i, doc := range docSeparator.Split(stream, -1) {
		if strings.TrimSpace(commentLine.ReplaceAllString(doc, "")) == "" {
			continue
		}
		require.NoError(t, m.add([]byte(doc)), "document %d:\n%s", i+1, doc)
	}
	return m
}

func (m *manifests) add(doc []byte) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return err
	}
	key := tm.APIVersion + " " + tm.Kind
	if customKinds[key] {
		var obj map[string]any
		if err := decodeStrict(doc, &obj); err != nil {
			return fmt.Errorf("%s: %w", tm.Kind, err)
		}
		name, _ := dig(obj, "metadata", "name").(string)
		if name == "" {
			return fmt.Errorf("%s without a name", tm.Kind)
		}
		if m.custom[tm.Kind] == nil {
			m.custom[tm.Kind] = map[string]map[string]any{}
		}
		m.custom[tm.Kind][name] = obj
		m.objects[tm.Kind+" "+name]++
		return nil
	}
	var obj interface{ GetName() string }
	switch key {
	case "apps/v1 Deployment":
		obj = &appsv1.Deployment{}
	case "v1 Service":
		obj = &corev1.Service{}
	case "v1 ConfigMap":
		obj = &corev1.ConfigMap{}
	case "v1 Secret":
		obj = &corev1.Secret{}
	case "policy/v1 PodDisruptionBudget":
		obj = &policyv1.PodDisruptionBudget{}
	case "autoscaling/v2 HorizontalPodAutoscaler":
		obj = &autoscalingv2.HorizontalPodAutoscaler{}
	case "batch/v1 Job":
		obj = &batchv1.Job{}
	default:
		return fmt.Errorf("unexpected %s %s: add it to the test's kinds", tm.APIVersion, tm.Kind)
	}
	if err := decodeStrict(doc, obj); err != nil {
		return fmt.Errorf("%s: %w", tm.Kind, err)
	}
	if obj.GetName() == "" {
		return fmt.Errorf("%s without a name", tm.Kind)
	}
	m.objects[tm.Kind+" "+obj.GetName()]++
	switch o := obj.(type) {
	case *appsv1.Deployment:
		m.deployments[o.Name] = o
	case *corev1.Service:
		m.services[o.Name] = o
	case *corev1.ConfigMap:
		m.configMaps[o.Name] = o
	case *corev1.Secret:
		m.secrets[o.Name] = o
	case *policyv1.PodDisruptionBudget:
		m.pdbs[o.Name] = o
	case *autoscalingv2.HorizontalPodAutoscaler:
		m.hpas[o.Name] = o
	case *batchv1.Job:
		m.jobs[o.Name] = o
	}
	return nil
}

// dig walks a decoded custom resource: string keys for maps, ints for lists.
func dig(obj any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			mp, ok := obj.(map[string]any)
			if !ok {
				return nil
			}
			obj = mp[k]
		case int:
			l, ok := obj.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			obj = l[k]
		}
	}
	return obj
}

func TestK8sStrictDecodeRejectsUnknownFields(t *testing.T) {
	// The decoder the rendered objects go through does reject a typo.
	err := decodeStrict([]byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replica: 2}\n"), &appsv1.Deployment{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `unknown field "replica"`)
	err = decodeStrict([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nmetadata: {name: y}\n"), &corev1.ConfigMap{})
	assert.Error(t, err, "duplicate keys")
	m := newManifests()
	assert.ErrorContains(t, m.add([]byte("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n")), "unexpected v1 Pod")
	assert.Error(t, m.add([]byte("apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec: {}\nspec: {}\n")),
		"duplicate keys in a custom resource")
	assert.Equal(t, "TICKS", dig(map[string]any{"a": []any{map[string]any{"b": "TICKS"}}}, "a", 0, "b"))
	assert.Nil(t, dig(map[string]any{"a": []any{}}, "a", 0, "b"))
}

func envValue(c corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

// checkServices checks what every rendering of the chart must hold, for
// the Deployment, Service and PodDisruptionBudget of each pollgrid service
// named <base>-<service>.
func checkServices(t *testing.T, m *manifests, base string) {
	t.Helper()
	for kind, n := range m.objects {
		assert.Equal(t, 1, n, "%s rendered %d times", kind, n)
	}
	require.Len(t, m.deployments, len(goServices))
	for svc, port := range goServices {
		t.Run(svc, func(t *testing.T) {
			d := m.deployments[base+"-"+svc]
			require.NotNil(t, d, "Deployment %s-%s", base, svc)
			assert.Equal(t, releaseNamespace, d.Namespace)
			assert.Equal(t, svc, d.Spec.Template.Labels["app.kubernetes.io/component"])
			assert.Equal(t, "pollgrid", d.Spec.Template.Labels["app.kubernetes.io/part-of"])
			require.NotNil(t, d.Spec.Selector)
			sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
			require.NoError(t, err)
			assert.True(t, sel.Matches(labels.Set(d.Spec.Template.Labels)), "the selector matches the pods")
			for other := range goServices {
				if od := m.deployments[base+"-"+other]; other != svc && od != nil {
					assert.False(t, sel.Matches(labels.Set(od.Spec.Template.Labels)), "the %s selector matches %s pods", svc, other)
				}
			}

			ann := d.Spec.Template.Annotations
			assert.Equal(t, "true", ann["prometheus.io/scrape"])
			assert.Equal(t, port, ann["prometheus.io/port"])
			assert.Equal(t, "/metrics", ann["prometheus.io/path"])
			assert.NotContains(t, ann, "checksum/connectors", "the connectors are data in NATS: a change of them rolls no pod")

			pod := d.Spec.Template.Spec
			require.NotNil(t, pod.TerminationGracePeriodSeconds)
			require.NotNil(t, pod.SecurityContext)
			require.NotNil(t, pod.SecurityContext.RunAsNonRoot)
			assert.True(t, *pod.SecurityContext.RunAsNonRoot)
			require.NotNil(t, pod.SecurityContext.SeccompProfile)
			assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, pod.SecurityContext.SeccompProfile.Type)
			require.NotNil(t, pod.AutomountServiceAccountToken)
			assert.False(t, *pod.AutomountServiceAccountToken, "the pods never call the Kubernetes API")
			require.Len(t, pod.Containers, 1)
			c := pod.Containers[0]
			assert.True(t, pinned(c.Image), "image %q", c.Image)
			require.NotNil(t, c.SecurityContext)
			require.NotNil(t, c.SecurityContext.ReadOnlyRootFilesystem)
			assert.True(t, *c.SecurityContext.ReadOnlyRootFilesystem)
			require.NotNil(t, c.SecurityContext.AllowPrivilegeEscalation)
			assert.False(t, *c.SecurityContext.AllowPrivilegeEscalation)
			require.NotNil(t, c.SecurityContext.Capabilities)
			assert.Equal(t, []corev1.Capability{"ALL"}, c.SecurityContext.Capabilities.Drop)

			addr, ok := envValue(c, "HTTP_ADDR")
			require.True(t, ok, "HTTP_ADDR")
			assert.Equal(t, ":"+port, addr)
			require.Len(t, c.Ports, 1)
			assert.EqualValues(t, mustAtoi(t, port), c.Ports[0].ContainerPort, "the container port is HTTP_ADDR's")
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

			// Settings and secrets come from objects the chart renders (or
			// the user's existing Secret, checked by its value set).
			var fromCM, fromSecret bool
			for _, ef := range c.EnvFrom {
				if ef.ConfigMapRef != nil {
					assert.Contains(t, m.configMaps, ef.ConfigMapRef.Name)
					fromCM = true
				}
				if ef.SecretRef != nil && m.secrets[ef.SecretRef.Name] != nil {
					fromSecret = true
				}
			}
			assert.True(t, fromCM && fromSecret, "envFrom the settings ConfigMap and the chart's Secret")
			for _, e := range c.Env {
				if e.ValueFrom != nil {
					require.NotNil(t, e.ValueFrom.FieldRef, e.Name)
					assert.Equal(t, "metadata.name", e.ValueFrom.FieldRef.FieldPath, "%s is the pod's name", e.Name)
				}
			}

			// The services read the catalog: no connectors file is set or
			// mounted (the connectors Job alone mounts it).
			_, ok = envValue(c, "CONNECTORS_FILE")
			assert.False(t, ok, "CONNECTORS_FILE is set: the process would own the catalog and undo pollctl apply")
			for _, v := range pod.Volumes {
				if cm := m.configMaps[configMapName(v)]; cm != nil {
					assert.NotContains(t, cm.Data, "connectors.json", "%s mounts the connectors", svc)
				}
			}

			s := m.services[base+"-"+svc]
			require.NotNil(t, s, "Service %s-%s", base, svc)
			assert.True(t, labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)), "the Service selects the pods")
			require.Len(t, s.Spec.Ports, 1)
			assert.EqualValues(t, mustAtoi(t, port), s.Spec.Ports[0].Port)
			assert.Equal(t, "http", s.Spec.Ports[0].TargetPort.String())

			// A PodDisruptionBudget, when there is one, selects these pods
			// and no others.
			for _, p := range m.pdbs {
				sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
				require.NoError(t, err)
				if p.Name == d.Name {
					assert.True(t, sel.Matches(labels.Set(d.Spec.Template.Labels)), "PodDisruptionBudget %s selects the pods", p.Name)
					assert.True(t, p.Spec.MaxUnavailable != nil || p.Spec.MinAvailable != nil)
				} else {
					assert.False(t, sel.Matches(labels.Set(d.Spec.Template.Labels)), "PodDisruptionBudget %s selects %s pods", p.Name, svc)
				}
			}
		})
	}
}

func configMapName(v corev1.Volume) string {
	if v.ConfigMap == nil {
		return ""
	}
	return v.ConfigMap.Name
}

func mustAtoi(t *testing.T, s string) int {
	var n int
	_, err := fmt.Sscan(s, &n)
	require.NoError(t, err)
	return n
}
