{{/*
Chart name, truncated to the 63 characters a DNS label allows.
*/}}
{{- define "idpo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every resource name: the release name, with the chart name appended unless the release name
already contains it.
*/}}
{{- define "idpo.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart label value: name-version.
*/}}
{{- define "idpo.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Name of one service's resources. The headless Service appends "-headless", so the base stays within
63 - 9 characters. Context: dict "root" $ "name" <service key>.
*/}}
{{- define "idpo.componentName" -}}
{{- printf "%s-%s" (include "idpo.fullname" .root | trunc 40 | trimSuffix "-") .name }}
{{- end }}

{{/*
Labels on every object of the chart.
*/}}
{{- define "idpo.commonLabels" -}}
helm.sh/chart: {{ include "idpo.chart" . }}
app.kubernetes.io/name: {{ include "idpo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: idpo
{{- end }}

{{/*
Labels of one service's objects. Context: dict "root" $ "name" <service key>.
*/}}
{{- define "idpo.labels" -}}
{{ include "idpo.commonLabels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{/*
Selector labels of one service's pods (immutable on a Deployment: never add to these).
Context: dict "root" $ "name" <service key>.
*/}}
{{- define "idpo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "idpo.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{/*
ServiceAccount the pods run as.
*/}}
{{- define "idpo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "idpo.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image of one service: the GPU flavour when its gpu.enabled is true, else the CPU flavour; a digest, when
given, pins it. Context: dict "root" $ "svc" <service values>.
*/}}
{{- define "idpo.image" -}}
{{- $image := .root.Values.image }}
{{- $flavour := ternary "gpu" "cpu" (.svc.gpu.enabled | default false) }}
{{- $digest := get $image.digests $flavour }}
{{- if $digest }}
{{- printf "%s@%s" $image.repository $digest }}
{{- else }}
{{- $suffix := ternary $image.gpuSuffix $image.cpuSuffix (eq $flavour "gpu") }}
{{- printf "%s:%s%s" $image.repository (default .root.Chart.AppVersion $image.tag) $suffix }}
{{- end }}
{{- end }}

{{/*
Fullname of the bundled NATS chart, computed as that chart computes it.
*/}}
{{- define "idpo.natsFullname" -}}
{{- if .Values.nats.fullnameOverride }}
{{- .Values.nats.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default "nats" .Values.nats.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
NATS URL the services connect to (IDPO_NATS_URL): the bundled server when nats.enabled, else bus.url.
*/}}
{{- define "idpo.natsUrl" -}}
{{- if .Values.nats.enabled }}
{{- printf "nats://%s.%s.svc.%s:4222" (include "idpo.natsFullname" .) .Release.Namespace .Values.clusterDomain }}
{{- else if .Values.bus.url }}
{{- .Values.bus.url }}
{{- else }}
{{- fail "idpo: no NATS server. Set bus.url to an external NATS JetStream server, or set nats.enabled=true to bundle one (the services cannot share the embedded single-process bus across pods)." }}
{{- end }}
{{- end }}

{{/*
host:port of the NATS monitoring endpoint for KEDA: bus.monitoringEndpoint, else the bundled server's.
*/}}
{{- define "idpo.natsMonitoringEndpoint" -}}
{{- if .Values.bus.monitoringEndpoint }}
{{- .Values.bus.monitoringEndpoint }}
{{- else if .Values.nats.enabled }}
{{- $port := dig "config" "monitor" "port" 8222 .Values.nats }}
{{- printf "%s.%s.svc.%s:%v" (include "idpo.natsFullname" .) .Release.Namespace .Values.clusterDomain $port }}
{{- else }}
{{- fail "idpo: KEDA autoscaling reads consumer lag from the NATS monitoring endpoint: set bus.monitoringEndpoint (host:port) for an external NATS server." }}
{{- end }}
{{- end }}

{{/*
Address peers use to reach one service (IDPO_<SERVICE>_ADDR): with clientLoadBalancing, the headless
Service as dns:///host:port, whose A records (ready pods only) the client connects to and balances
across; otherwise the ClusterIP Service as http://host:port. Context: dict "root" $ "name" "svc".
*/}}
{{- define "idpo.peerAddress" -}}
{{- $base := include "idpo.componentName" . }}
{{- $domain := printf "%s.svc.%s" .root.Release.Namespace .root.Values.clusterDomain }}
{{- if .svc.clientLoadBalancing }}
{{- printf "dns:///%s-headless.%s:%v" $base $domain .svc.port }}
{{- else }}
{{- printf "http://%s.%s:%v" $base $domain .svc.port }}
{{- end }}
{{- end }}

{{/*
Name of the claim mounted at persistence.dataDir.
*/}}
{{- define "idpo.dataClaimName" -}}
{{- default (printf "%s-data" (include "idpo.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{/*
Stream replicas the services create (IDPO_NATS_REPLICAS): bus.streamReplicas, else the bundled NATS
cluster's size capped at 3, else 1.
*/}}
{{- define "idpo.streamReplicas" -}}
{{- if gt (int .Values.bus.streamReplicas) 0 }}
{{- int .Values.bus.streamReplicas }}
{{- else if and .Values.nats.enabled (dig "config" "cluster" "enabled" false .Values.nats) }}
{{- min 3 (int (dig "config" "cluster" "replicas" 3 .Values.nats)) }}
{{- else }}
{{- 1 }}
{{- end }}
{{- end }}

{{/*
Physical name of a bus stream: bus.prefix "p" turns IDPO_WORK into p_IDPO_WORK. Context: dict "root" $
"stream" <logical name>.
*/}}
{{- define "idpo.streamName" -}}
{{- if .root.Values.bus.prefix }}
{{- printf "%s_%s" .root.Values.bus.prefix .stream }}
{{- else }}
{{- .stream }}
{{- end }}
{{- end }}

{{/*
Environment every idpo container of a pod shares: data dir, the bus and its credentials, auth. Argument:
the root context.
*/}}
{{- define "idpo.busEnv" -}}
- name: IDPO_DATA_DIR
  value: {{ .Values.persistence.dataDir | quote }}
- name: IDPO_NATS_URL
  value: {{ include "idpo.natsUrl" . | quote }}
{{- if .Values.bus.credentialsSecret.name }}
- name: IDPO_NATS_CREDS_FILE
  value: {{ printf "/var/run/secrets/idpo/nats/%s" .Values.bus.credentialsSecret.key | quote }}
{{- end }}
{{- with .Values.bus.tokenSecret.name }}
- name: IDPO_NATS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.bus.tokenSecret.key }}
{{- end }}
{{- with .Values.bus.prefix }}
- name: IDPO_BUS_PREFIX
  value: {{ . | quote }}
{{- end }}
- name: IDPO_NATS_REPLICAS
  value: {{ include "idpo.streamReplicas" . | quote }}
{{- if .Values.auth.existingSecret }}
- name: IDPO_AUTH_TOKENS_FILE
  value: {{ printf "/var/run/secrets/idpo/auth/%s" .Values.auth.key | quote }}
{{- with .Values.auth.peerTokenKey }}
- name: IDPO_AUTH_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.auth.existingSecret }}
      key: {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Volume mounts every idpo container of a pod shares. Argument: dict root, name, svc.
*/}}
{{- define "idpo.volumeMounts" -}}
{{- $root := .root -}}
- name: tmp
  mountPath: /tmp
- name: data
  mountPath: {{ $root.Values.persistence.dataDir }}
{{- if $root.Values.bus.credentialsSecret.name }}
- name: nats-credentials
  mountPath: /var/run/secrets/idpo/nats
  readOnly: true
{{- end }}
{{- if $root.Values.auth.existingSecret }}
- name: auth-tokens
  mountPath: /var/run/secrets/idpo/auth
  readOnly: true
{{- end }}
{{- with (concat $root.Values.defaults.extraVolumeMounts (.svc.extraVolumeMounts | default list)) }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Startup, readiness and liveness probes over grpc.health.v1. Argument: dict port, probes (the resolved
defaults.probes merged with the service's).
*/}}
{{- define "idpo.grpcProbes" -}}
{{- $port := .port -}}
{{- range $kind := list "startup" "readiness" "liveness" }}
{{- $p := get $.probes $kind }}
{{ $kind }}Probe:
  grpc:
    port: {{ $port }}
    {{- with $p.service }}
    service: {{ . | quote }}
    {{- end }}
  periodSeconds: {{ $p.periodSeconds }}
  timeoutSeconds: {{ $p.timeoutSeconds }}
  failureThreshold: {{ $p.failureThreshold }}
  {{- if eq $kind "readiness" }}
  successThreshold: {{ $p.successThreshold }}
  {{- end }}
{{- end }}
{{- end }}
