{{/*
One pollgrid service: its Deployment, Service and PodDisruptionBudget.
(dict "root" $ "component" "worker" "env" <extra env entries, YAML list text>)
*/}}
{{- define "pollgrid.service" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $c := index $v .component -}}
{{- $name := printf "%s-%s" (include "pollgrid.fullname" $root) .component -}}
{{- $autoscaled := and (eq .component "worker") (or $v.keda.enabled $v.worker.hpa.enabled) -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "pollgrid.componentLabels" . | nindent 4 }}
spec:
  {{- if not $autoscaled }}
  replicas: {{ $c.replicas }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "pollgrid.selectorLabels" . | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    metadata:
      labels:
        {{- include "pollgrid.componentLabels" . | nindent 8 }}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ $c.port | quote }}
        prometheus.io/path: /metrics
        # A change of these rolls the pods. The connectors do not: they are
        # data in NATS (the Job applies them), followed without a restart.
        checksum/config: {{ include (print $root.Template.BasePath "/config.yaml") $root | sha256sum }}
        checksum/secret: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
        {{- with $c.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      terminationGracePeriodSeconds: {{ $c.terminationGracePeriodSeconds }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      securityContext:
        {{- toYaml $v.podSecurityContext | nindent 8 }}
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- range $key := list "nodeSelector" "tolerations" "affinity" "topologySpreadConstraints" }}
      {{- with index $c $key }}
      {{ $key }}:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "pollgrid.image" . }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          ports:
            - {name: http, containerPort: {{ $c.port }}, protocol: TCP}
          envFrom:
            - configMapRef: {name: {{ include "pollgrid.fullname" $root }}-env}
            - secretRef: {name: {{ include "pollgrid.fullname" $root }}}
            {{- if eq .component "worker" }}
            # The ${VAR} values of the connectors: only workers resolve them.
            - secretRef: {name: {{ include "pollgrid.fullname" $root }}-worker}
            {{- with $v.secret.workerExistingSecret }}
            - secretRef: {name: {{ . }}}
            {{- end }}
            {{- end }}
            {{- with $v.secret.existingSecret }}
            # Last: its keys win over the same keys above.
            - secretRef: {name: {{ . }}}
            {{- end }}
          # No CONNECTORS_FILE: a process started with one would own the
          # catalog; the connectors Job (or your pollctl apply) fills it.
          env:
            - {name: HTTP_ADDR, value: {{ printf ":%v" $c.port | quote }}}
            {{- with include "pollgrid.secretFiles" (dict "root" $root "part" "env") | trim }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- with .env }}
            {{- . | trim | nindent 12 }}
            {{- end }}
            {{- with $c.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- with include "pollgrid.secretFiles" (dict "root" $root "part" "mounts") | trim }}
          volumeMounts:
            {{- . | nindent 12 }}
          {{- end }}
          # The port opens in the process's first second, before NATS and
          # Redis answer: a pod waiting for them is not ready (/readyz says
          # why) but never restarted for it.
          startupProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 2
            failureThreshold: 30
          livenessProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 10
            timeoutSeconds: 3
            failureThreshold: 3
          readinessProbe:
            httpGet: {path: /readyz, port: http}
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 2
          resources:
            {{- toYaml $c.resources | nindent 12 }}
          securityContext:
            {{- toYaml $v.securityContext | nindent 12 }}
      {{- with include "pollgrid.secretFiles" (dict "root" $root "part" "volumes") | trim }}
      volumes:
        {{- . | nindent 8 }}
      {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "pollgrid.componentLabels" . | nindent 4 }}
spec:
  type: {{ dig "service" "type" "ClusterIP" $c }}
  {{- if ne .component "aggregator" }}
  # Only scraped: a pod that is not ready (NATS or Redis away) keeps its
  # metrics visible.
  publishNotReadyAddresses: true
  {{- end }}
  selector:
    {{- include "pollgrid.selectorLabels" . | nindent 4 }}
  ports:
    - {name: http, port: {{ $c.port }}, targetPort: http, protocol: TCP}
{{- $replicas := $c.replicas | int -}}
{{- if $autoscaled -}}
{{- $replicas = ternary $v.keda.minReplicas $v.worker.hpa.minReplicas $v.keda.enabled | int -}}
{{- end -}}
{{- if and $c.pdb.enabled (or $autoscaled (gt $replicas 1)) }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "pollgrid.componentLabels" . | nindent 4 }}
spec:
  maxUnavailable: {{ $c.pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "pollgrid.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}
