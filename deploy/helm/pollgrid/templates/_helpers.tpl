{{/*
The release's base name: the release name when it holds "pollgrid"
(helm install pollgrid ... gives pollgrid-worker), else <release>-pollgrid.
*/}}
{{- define "pollgrid.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "pollgrid.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: pollgrid
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one service's pods: (dict "root" $ "component" "worker"). */}}
{{- define "pollgrid.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "pollgrid.componentLabels" -}}
{{ include "pollgrid.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The image of a service: <registry>/<service>:<tag>. */}}
{{- define "pollgrid.image" -}}
{{- $tag := .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- printf "%s/%s:%s" .root.Values.image.registry .component $tag -}}
{{- end -}}

{{/* connectors.json as text: values.connectors (text or YAML) or the sample. */}}
{{- define "pollgrid.connectors" -}}
{{- $c := .Values.connectors -}}
{{- if not $c -}}
{{- .Files.Get "files/connectors.json" -}}
{{- else if kindIs "string" $c -}}
{{- $c -}}
{{- else -}}
{{- toPrettyJson $c -}}
{{- end -}}
{{- end -}}

{{/*
The durable consumer of TICKS the workers share, as bus.Filter.ConsumerName
computes it (test/deploy checks the two agree): "workers", or
"workers-<types>-<names>", or past 48 characters "workers-" and the first 12
hex digits of the SHA-256 of the filter subjects joined by commas.
*/}}
{{- define "pollgrid.workerConsumer" -}}
{{- $types := .Values.worker.types | default list -}}
{{- $names := .Values.worker.connectors | default list -}}
{{- if and (empty $types) (empty $names) -}}
workers
{{- else -}}
{{- $name := printf "workers-%s" (join "-" (concat $types $names)) -}}
{{- if gt (len $name) 48 -}}
{{- $subs := list -}}
{{- range $types }}{{ $subs = append $subs (printf "pollgrid.tick.%s.*" .) }}{{ end -}}
{{- range $names }}{{ $subs = append $subs (printf "pollgrid.tick.*.%s" .) }}{{ end -}}
{{- printf "workers-%s" (join "," $subs | sha256sum | trunc 12) -}}
{{- else -}}
{{- $name -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Checks of the values that would otherwise surface as crash-looping pods.
Included by the objects every install renders.
*/}}
{{- define "pollgrid.validate" -}}
{{- with .Values.redis.url -}}
{{- if not (regexMatch "^rediss?(-sentinel|-cluster)?://" .) -}}
{{- fail (printf "redis.url %q: write redis:// (one node), redis-sentinel://host:26379,.../<master> (Sentinel) or redis-cluster://host:6379,... (Cluster); rediss… for TLS" .) -}}
{{- end -}}
{{- end -}}
{{- with .Values.nats.url -}}
{{- range splitList "," . -}}
{{- if not (regexMatch "^(nats|tls)://" (trim .)) -}}
{{- fail (printf "nats.url: %q is not a nats:// or tls:// URL (a cluster is a comma-separated list of them)" .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and .Values.keda.enabled .Values.worker.hpa.enabled -}}
{{- fail "keda.enabled and worker.hpa.enabled: KEDA makes its own HorizontalPodAutoscaler for the workers; turn worker.hpa off" -}}
{{- end -}}
{{- if and (not .Values.secret.existingSecret) (or (not .Values.nats.url) (not .Values.redis.url)) -}}
{{- fail "nats.url and redis.url: set both, or put NATS_URL and REDIS_URL in the Secret named by secret.existingSecret" -}}
{{- end -}}
{{- end -}}

{{/*
The files pollgrid reads from Secrets of the user's: volumes, mounts and the
variables naming them. (dict "root" $ "part" "volumes"|"mounts"|"env"), and
"natsOnly" true for pollctl, which reaches NATS and nothing else.
*/}}
{{- define "pollgrid.secretFiles" -}}
{{- $v := .root.Values -}}
{{- $files := list -}}
{{- if $v.nats.credsSecret.name -}}
{{- $files = append $files (dict "volume" "nats-creds" "secret" $v.nats.credsSecret.name "items" (list (dict "var" "NATS_CREDS" "key" $v.nats.credsSecret.key))) -}}
{{- end -}}
{{- range $prefix, $s := dict "nats" $v.nats.tlsSecret "redis" $v.redis.tlsSecret -}}
{{- if and $s.name (or (eq $prefix "nats") (not $.natsOnly)) -}}
{{- $items := list -}}
{{- $var := upper $prefix -}}
{{- if $s.ca }}{{ $items = append $items (dict "var" (printf "%s_CA" $var) "key" $s.ca) }}{{ end -}}
{{- if $s.cert }}{{ $items = append $items (dict "var" (printf "%s_CERT" $var) "key" $s.cert) }}{{ end -}}
{{- if $s.key }}{{ $items = append $items (dict "var" (printf "%s_KEY" $var) "key" $s.key) }}{{ end -}}
{{- $files = append $files (dict "volume" (printf "%s-tls" $prefix) "secret" $s.name "items" $items) -}}
{{- end -}}
{{- end -}}
{{- range $files -}}
{{- $dir := printf "/var/run/secrets/pollgrid/%s" .volume -}}
{{- if eq $.part "volumes" }}
- name: {{ .volume }}
  secret:
    secretName: {{ .secret }}
    defaultMode: 0440
    items:
      {{- range .items }}
      - {key: {{ .key | quote }}, path: {{ .key | quote }}}
      {{- end }}
{{- else if eq $.part "mounts" }}
- {name: {{ .volume }}, mountPath: {{ $dir }}, readOnly: true}
{{- else }}
{{- range .items }}
- {name: {{ .var }}, value: {{ printf "%s/%s" $dir .key | quote }}}
{{- end }}
{{- end }}
{{- end -}}
{{- end -}}
