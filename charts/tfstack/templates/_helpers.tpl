{{/*
Names, labels and small computed values shared by every template. Defines are namespaced `tfstack.`.
*/}}

{{- define "tfstack.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name prefix (truncated to leave room for suffixes such as "-tfserving").
*/}}
{{- define "tfstack.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tfstack.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels. Call with (dict "ctx" $ "component" "tfserving").
*/}}
{{- define "tfstack.labels" -}}
helm.sh/chart: {{ include "tfstack.chart" .ctx }}
{{ include "tfstack.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: tfstack
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels: only name, instance and component, so they never change on upgrade.
*/}}
{{- define "tfstack.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tfstack.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "tfstack.tfserving.fullname" -}}
{{- printf "%s-tfserving" (include "tfstack.fullname" .) }}
{{- end }}

{{- define "tfstack.gateway.fullname" -}}
{{- printf "%s-gateway" (include "tfstack.fullname" .) }}
{{- end }}

{{- define "tfstack.tfserving.serviceAccountName" -}}
{{- if .Values.tfserving.serviceAccount.create }}
{{- default (include "tfstack.tfserving.fullname" .) .Values.tfserving.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.tfserving.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tfstack.gateway.serviceAccountName" -}}
{{- if .Values.gateway.serviceAccount.create }}
{{- default (include "tfstack.gateway.fullname" .) .Values.gateway.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.gateway.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Images. tfstack.image renders REPOSITORY:TAG[@DIGEST] from (dict "image" IMG "tag" TAG "root" $):
global.imageRegistry, when set, replaces the repository's registry (its first path component when
that names a host: it has a "." or ":" or is localhost), or prefixes a Docker Hub name
(tensorflow/serving -> REGISTRY/tensorflow/serving). A digest makes the kubelet pull by digest.
*/}}
{{- define "tfstack.image" -}}
{{- $repo := .image.repository }}
{{- $registry := trimSuffix "/" ((.root.Values.global).imageRegistry | default "") }}
{{- if $registry }}
{{- $parts := splitList "/" $repo }}
{{- $first := first $parts }}
{{- if and (gt (len $parts) 1) (or (contains "." $first) (contains ":" $first) (eq $first "localhost")) }}
{{- $repo = join "/" (rest $parts) }}
{{- end }}
{{- $repo = printf "%s/%s" $registry $repo }}
{{- end }}
{{- $ref := printf "%s:%s" $repo .tag }}
{{- with .image.digest }}
{{- $ref = printf "%s@%s" $ref . }}
{{- end }}
{{- $ref }}
{{- end }}

{{- define "tfstack.tfserving.image" -}}
{{- $img := .Values.tfserving.image }}
{{- $tag := ternary $img.gpuTag $img.tag (eq .Values.tfserving.accelerator "gpu") }}
{{- include "tfstack.image" (dict "image" $img "tag" $tag "root" .) }}
{{- end }}

{{- define "tfstack.gateway.image" -}}
{{- $img := .Values.gateway.image }}
{{- include "tfstack.image" (dict "image" $img "tag" (default .Chart.AppVersion $img.tag) "root" .) }}
{{- end }}

{{- define "tfstack.models.image" -}}
{{- $img := .Values.modelSource.image }}
{{- include "tfstack.image" (dict "image" $img "tag" (default .Chart.AppVersion $img.tag) "root" .) }}
{{- end }}

{{- define "tfstack.s3.image" -}}
{{- $img := .Values.modelSource.s3.image }}
{{- include "tfstack.image" (dict "image" $img "tag" $img.tag "root" .) }}
{{- end }}

{{/*
The storage initializer's script (modelSource.type s3): one `aws s3 sync` per model, from
<uri>/<path below mountPath>/ into /model-store/<path>, then a check that a version arrived.
*/}}
{{- define "tfstack.s3.script" -}}
{{- $src := .Values.modelSource }}
{{- $mount := trimSuffix "/" $src.mountPath }}
{{- $uri := trimSuffix "/" $src.s3.uri -}}
{{- with $src.s3.addressingStyle }}
aws configure set default.s3.addressing_style {{ . }}
{{- end }}
fetch() {
  echo "tfstack fetch-models: $1 -> $2"
  aws s3 sync --only-show-errors --no-progress {{ with $src.s3.endpoint }}--endpoint-url {{ . | quote }} {{ end }}"$1" "$2"
  for version in "$2"/*/saved_model.pb; do
    if [ -e "$version" ]; then return 0; fi
  done
  echo "tfstack fetch-models: no <version>/saved_model.pb under $1 (TF Serving's layout is <model>/<version>/saved_model.pb; check modelSource.s3.uri)" >&2
  exit 1
}
{{- range $name, $m := .Values.models }}
{{- if not (kindIs "invalid" $m) }}
{{- $path := trimPrefix (printf "%s/" $mount) (include "tfstack.model.basePath" (list $ $name (default dict $m))) }}
fetch {{ printf "%s/%s/" $uri $path | squote }} {{ printf "/model-store/%s" $path | squote }}
{{- end }}
{{- end }}
echo "tfstack fetch-models: done"
{{- end }}

{{- define "tfstack.tests.image" -}}
{{- $img := .Values.tests.image }}
{{- if $img.repository }}
{{- include "tfstack.image" (dict "image" $img "tag" (default .Chart.AppVersion $img.tag) "root" .) }}
{{- else }}
{{- include "tfstack.gateway.image" . }}
{{- end }}
{{- end }}

{{/*
The resources TF Serving gets under the selected accelerator profile (YAML).
*/}}
{{- define "tfstack.tfserving.resources" -}}
{{- $tf := .Values.tfserving }}
{{- if eq $tf.accelerator "gpu" }}
{{- $res := deepCopy $tf.gpu.resources }}
{{- $limits := default dict $res.limits }}
{{- $_ := set $limits $tf.gpu.resourceName $tf.gpu.count }}
{{- $_ := set $res "limits" $limits }}
{{- toYaml $res }}
{{- else }}
{{- toYaml $tf.resources }}
{{- end }}
{{- end }}

{{/*
Whole CPUs in TF Serving's CPU request, rounded up, at least 1 ("500m" -> 1, "1.5" -> 2, 4 -> 4).
Empty when no CPU request is set.
*/}}
{{- define "tfstack.tfserving.cpuCores" -}}
{{- $res := fromYaml (include "tfstack.tfserving.resources" .) }}
{{- $cpu := "" }}
{{- if and $res.requests (hasKey $res.requests "cpu") }}
{{- $cpu = toString $res.requests.cpu }}
{{- else if and $res.limits (hasKey $res.limits "cpu") }}
{{- $cpu = toString $res.limits.cpu }}
{{- end }}
{{- if $cpu }}
{{- include "tfstack.cpuCeil" $cpu }}
{{- end }}
{{- end }}

{{/*
A CPU quantity as whole CPUs, rounded up, at least 1 ("500m" -> 1, "1.5" -> 2, 4 -> 4).
*/}}
{{- define "tfstack.cpuCeil" -}}
{{- $cpu := toString . }}
{{- $cores := 0.0 }}
{{- if hasSuffix "m" $cpu }}
{{- $cores = divf (float64 (trimSuffix "m" $cpu)) 1000 }}
{{- else }}
{{- $cores = float64 $cpu }}
{{- end }}
{{- max 1 (int (ceil $cores)) }}
{{- end }}

{{/*
A thread count from values: a number -> itself; null -> the CPU limit rounded up when TF Serving
has one (TF would size the pool to the node's cores and be throttled at the limit), else empty:
the flag is not passed and TF Serving auto-configures it, as its performance guide advises.
Call with (list $ value).
*/}}
{{- define "tfstack.tfserving.threads" -}}
{{- $ctx := index . 0 }}
{{- $v := index . 1 }}
{{- if kindIs "invalid" $v }}
{{- $res := fromYaml (include "tfstack.tfserving.resources" $ctx) }}
{{- if and $res.limits (hasKey $res.limits "cpu") }}
{{- include "tfstack.cpuCeil" $res.limits.cpu }}
{{- end }}
{{- else }}
{{- int $v }}
{{- end }}
{{- end }}

{{/*
Base path of one model. Call with (list $ name model).
*/}}
{{- define "tfstack.model.basePath" -}}
{{- $ctx := index . 0 }}
{{- $name := index . 1 }}
{{- $m := index . 2 }}
{{- if $m.basePath }}
{{- $m.basePath }}
{{- else }}
{{- printf "%s/%s" (trimSuffix "/" $ctx.Values.modelSource.mountPath) $name }}
{{- end }}
{{- end }}

{{/*
True ("true") when any model has version labels: TF Serving then needs
--allow_version_labels_for_unavailable_models to accept them before the versions have loaded.
*/}}
{{- define "tfstack.models.haveLabels" -}}
{{- range $name, $m := .Values.models }}
{{- if and (not (kindIs "invalid" $m)) $m.labels }}true{{ end }}
{{- end }}
{{- end }}

{{/*
Arguments of the readiness script: one per model, or "<name>/<version>" for each `specific` version.
*/}}
{{- define "tfstack.tfserving.readinessTargets" -}}
{{- $targets := list }}
{{- range $name, $m := .Values.models }}
{{- if and (not (kindIs "invalid" $m)) (eq (default "latest" $m.versionPolicy) "specific") }}
{{- range $v := $m.versions }}
{{- $targets = append $targets (printf "%s/%v" $name (int64 $v)) }}
{{- end }}
{{- else if (not (kindIs "invalid" $m)) }}
{{- $targets = append $targets $name }}
{{- end }}
{{- end }}
{{- toJson $targets }}
{{- end }}

{{/*
Seconds gunicorn may spend finishing requests in flight after the gateway's drain delay: what the
grace period leaves, less 2 s for the exit itself (at least 1).
*/}}
{{/*
The gateway's settings (tfstack/gateway/settings.py), shared by its REST container and its gRPC container
(each adds its own, then `gateway.extraEnv`, which wins).
*/}}
{{- define "tfstack.gateway.env" -}}
{{- $gw := .Values.gateway }}
{{- $watch := eq $gw.discovery "endpointslices" }}
- name: TFSTACK_BIND
  value: "0.0.0.0:8080"
- name: TFSTACK_WORKERS
  value: {{ $gw.workers | quote }}
- name: TFSTACK_THREADS
  value: {{ $gw.threads | quote }}
- name: TFSTACK_WORKER_CLASS
  value: {{ $gw.workerClass | quote }}
- name: TFSTACK_WORKER_CONNECTIONS
  value: {{ $gw.workerConnections | quote }}
- name: TFSTACK_MAX_INFLIGHT_PER_ENDPOINT
  value: {{ $gw.maxInflightPerEndpoint | quote }}
- name: TFSTACK_DEADLINE_MS
  value: {{ $gw.deadlineMs | quote }}
- name: TFSTACK_MAX_BODY_BYTES
  value: {{ $gw.maxBodyBytes | int64 | quote }}
- name: TFSTACK_GRPC_MAX_MESSAGE_BYTES
  value: {{ $gw.grpcMaxMessageBytes | int64 | quote }}
- name: TFSTACK_LOG_LEVEL
  value: {{ $gw.logLevel | quote }}
# Endpoint discovery: the TF Serving headless Service, by DNS name or by its EndpointSlices.
- name: TFSTACK_DISCOVERY
  value: {{ $gw.discovery | quote }}
- name: TFSTACK_BACKENDS
  value: "{{ include "tfstack.tfserving.fullname" . }}.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}:8500"
{{- if $watch }}
- name: TFSTACK_DISCOVERY_SERVICE
  value: {{ include "tfstack.tfserving.fullname" . | quote }}
- name: TFSTACK_DISCOVERY_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: TFSTACK_DISCOVERY_PORT_NAME
  value: grpc
{{- end }}
# On SIGTERM: /readyz 503 and serving on for the drain delay (endpoint removal reaches
# kube-proxy, clients and the Ingress meanwhile), then a graceful stop that lets requests
# in flight finish within what the grace period leaves (less 2 s for the exit itself).
- name: TFSTACK_DRAIN_DELAY_S
  value: {{ $gw.drainDelaySeconds | quote }}
- name: TFSTACK_GRACEFUL_TIMEOUT_S
  value: {{ include "tfstack.gateway.gracefulTimeout" . | quote }}
{{- end }}

{{- define "tfstack.gateway.gracefulTimeout" -}}
{{- $gw := .Values.gateway }}
{{- max 1 (sub (sub (int $gw.terminationGracePeriodSeconds) (int $gw.drainDelaySeconds)) 2) }}
{{- end }}

{{/*
Name of the models ConfigMap: one per readiness gate (the targets above). Changing the set of models
or of `specific` versions renders a new ConfigMap along with the new readiness targets, so pods of
the previous revision keep the config their readiness expects until the rollout replaces them (the
kubelet keeps a deleted ConfigMap's files in running pods). Everything else (labels, base paths,
latest-N) changes this ConfigMap in place and TF Serving re-reads it without a restart.
*/}}
{{- define "tfstack.models.configMapName" -}}
{{- $gate := include "tfstack.tfserving.readinessTargets" . | sha256sum | trunc 8 }}
{{- printf "%s-models-%s" (include "tfstack.tfserving.fullname" .) $gate }}
{{- end }}

{{/*
Render-time checks: invalid combinations fail `helm install` with what to change.
*/}}
{{- define "tfstack.validate" -}}
{{- $models := dict }}
{{- range $name, $m := .Values.models }}{{ if (not (kindIs "invalid" $m)) }}{{ $_ := set $models $name (default dict $m) }}{{ end }}{{ end }}
{{- if not $models }}
{{- fail "models: no model is configured, and the chart ships none. Name yours in a values file (models: {my_model: {basePath: gs://bucket/my_model}}), or --set models.my_model.basePath=gs://bucket/my_model; the example models: -f charts/tfstack/examples/example-models.yaml" }}
{{- end }}
{{- $src := .Values.modelSource }}
{{- range $name, $m := $models }}
{{- $policy := default "latest" $m.versionPolicy }}
{{- if and (eq $policy "specific") (not $m.versions) }}
{{- fail (printf "models.%s: versionPolicy is \"specific\" but versions is empty. List the versions to serve, e.g. versions: [1, 2]" $name) }}
{{- end }}
{{- if and (ne $policy "specific") $m.versions }}
{{- fail (printf "models.%s: versions is set but versionPolicy is %q. Set versionPolicy: specific, or remove versions" $name $policy) }}
{{- end }}
{{- if eq $policy "specific" }}
{{- range $label, $v := $m.labels }}
{{- $found := false }}
{{- range $m.versions }}{{ if eq (int64 .) (int64 $v) }}{{ $found = true }}{{ end }}{{ end }}
{{- if not $found }}
{{- fail (printf "models.%s.labels.%s: version %v is not among the served versions %v. Add it to models.%s.versions" $name $label $v $m.versions $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- if eq $src.type "remote" }}
{{- if and $m.basePath (regexMatch "^(s3|s3a|hdfs|az|https?)://" $m.basePath) }}
{{- fail (printf "models.%s.basePath: %q: the tensorflow/serving image does not read this kind of URI itself (only gs:// since 2.7). For S3 or an S3-compatible store set modelSource.type: s3 and modelSource.s3.uri; otherwise use a pvc or image source" $name $m.basePath) }}
{{- end }}
{{- if not (and $m.basePath (hasPrefix "gs://" $m.basePath)) }}
{{- fail (printf "models.%s.basePath: modelSource.type is \"remote\", so basePath must be a gs:// URI TF Serving reads itself (e.g. gs://bucket/%s), got %q" $name $name (toString $m.basePath)) }}
{{- end }}
{{- else }}
{{- if and $m.basePath (not (hasPrefix (printf "%s/" (trimSuffix "/" $src.mountPath)) $m.basePath)) }}
{{- fail (printf "models.%s.basePath: %q is outside modelSource.mountPath (%s), where the %s source puts the models. Use %s/%s, or set modelSource.type: remote for a URI" $name $m.basePath $src.mountPath $src.type $src.mountPath $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (eq $src.type "s3") (not $src.s3.uri) }}
{{- fail "modelSource.s3.uri: modelSource.type is \"s3\" but no bucket is named. Set modelSource.s3.uri to s3://bucket/prefix, the folder that holds <model>/<version>/saved_model.pb" }}
{{- end }}
{{- if and (eq $src.type "pvc") (not $src.pvc.claimName) }}
{{- fail "modelSource.pvc.claimName: modelSource.type is \"pvc\" but no claim is named. Set modelSource.pvc.claimName to an existing PersistentVolumeClaim" }}
{{- end }}
{{- $hpa := .Values.tfserving.autoscaling }}
{{- if $hpa.enabled }}
{{- if not (or $hpa.cpu.enabled $hpa.requestsPerSecond.enabled $hpa.gpu.enabled) }}
{{- fail "tfserving.autoscaling: enabled but no metric is. Enable cpu, requestsPerSecond or gpu, or set tfserving.autoscaling.enabled=false" }}
{{- end }}
{{- if gt (int $hpa.minReplicas) (int $hpa.maxReplicas) }}
{{- fail (printf "tfserving.autoscaling: minReplicas (%v) is greater than maxReplicas (%v)" $hpa.minReplicas $hpa.maxReplicas) }}
{{- end }}
{{- if and $hpa.gpu.enabled (ne .Values.tfserving.accelerator "gpu") }}
{{- fail "tfserving.autoscaling.gpu.enabled: scaling on GPU utilization needs tfserving.accelerator=gpu" }}
{{- end }}
{{- if and $hpa.cpu.enabled (not (include "tfstack.tfserving.cpuCores" .)) }}
{{- fail "tfserving.autoscaling.cpu: CPU utilization is relative to the CPU request, and TF Serving has none. Set tfserving.resources.requests.cpu (or gpu.resources with accelerator=gpu)" }}
{{- end }}
{{- end }}
{{- $gw := .Values.gateway.autoscaling }}
{{- if and $gw.enabled (gt (int $gw.minReplicas) (int $gw.maxReplicas)) }}
{{- fail (printf "gateway.autoscaling: minReplicas (%v) is greater than maxReplicas (%v)" $gw.minReplicas $gw.maxReplicas) }}
{{- end }}
{{- if and $gw.enabled (not $gw.targetCPUUtilization) (not $gw.requestsPerSecond.enabled) (not $gw.inflightRequests.enabled) }}
{{- fail "gateway.autoscaling: enabled but no metric is. Set targetCPUUtilization, enable requestsPerSecond or inflightRequests, or set gateway.autoscaling.enabled=false" }}
{{- end }}
{{- $b := .Values.tfserving.batching }}
{{- if and $b.enabled $b.allowedBatchSizes }}
{{- if ne (int (last $b.allowedBatchSizes)) (int $b.maxBatchSize) }}
{{- fail (printf "tfserving.batching.allowedBatchSizes: the last entry (%v) must equal maxBatchSize (%v), as TF Serving requires" (last $b.allowedBatchSizes) $b.maxBatchSize) }}
{{- end }}
{{- end }}
{{- if le (int .Values.tfserving.terminationGracePeriodSeconds) (int .Values.tfserving.preStopSleepSeconds) }}
{{- fail (printf "tfserving.terminationGracePeriodSeconds (%v) must be longer than tfserving.preStopSleepSeconds (%v), or the pod is killed before it stops serving" .Values.tfserving.terminationGracePeriodSeconds .Values.tfserving.preStopSleepSeconds) }}
{{- end }}
{{- $gwDrain := .Values.gateway }}
{{- if lt (mul (int (include "tfstack.gateway.gracefulTimeout" .)) 1000) (int $gwDrain.deadlineMs) }}
{{- fail (printf "gateway.terminationGracePeriodSeconds (%v) leaves %vs after the drain delay (gateway.drainDelaySeconds, %v) and 2 s for the exit, less than a request may take (gateway.deadlineMs, %v): requests in flight at shutdown would be killed. Raise the grace period to at least %v" $gwDrain.terminationGracePeriodSeconds (include "tfstack.gateway.gracefulTimeout" .) $gwDrain.drainDelaySeconds $gwDrain.deadlineMs (add $gwDrain.drainDelaySeconds 2 (div (add $gwDrain.deadlineMs 999) 1000))) }}
{{- end }}
{{- if and .Values.tests.enabled .Values.tests.model }}
{{- if not (hasKey $models .Values.tests.model) }}
{{- fail (printf "tests.model: %q is not in models (%s). Name one of them, or set tests.model=\"\" for no helm test" .Values.tests.model (keys $models | sortAlpha | join ", ")) }}
{{- end }}
{{- if or (not .Values.tests.request) (not .Values.tests.expectedPredictions) }}
{{- fail (printf "tests: model is %q but tests.request or tests.expectedPredictions is empty. Set both (a REST predict body and the predictions it must return), or set tests.model=\"\" for no helm test" .Values.tests.model) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Readiness/start-up check for the real tensorflow/serving image, which has bash and coreutils but no
curl or wget: bash's /dev/tcp asks TF Serving's REST API for each target's status and wants
"state": "AVAILABLE". Arguments: REST port, then targets ("<model>" or "<model>/<version>").
*/}}
{{- define "tfstack.tfserving.readyScript" -}}
port=$1; shift
for target in "$@"; do
  name=${target%%/*}
  path=/v1/models/$name
  [ "$target" = "$name" ] || path=$path/versions/${target#*/}
  exec 3<>"/dev/tcp/127.0.0.1/$port" || { echo "REST port $port is not open"; exit 1; }
  printf 'GET %s HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$path" >&3
  ready=no
  # Line by line until AVAILABLE shows up, the server closes, or 2 s pass without a full line.
  while true; do
    IFS= read -r -t 2 line <&3
    status=$?
    if [[ $line =~ \"state\"[[:space:]]*:[[:space:]]*\"AVAILABLE\" ]]; then ready=yes; break; fi
    [ "$status" -eq 0 ] || break
  done
  exec 3<&-
  [ "$ready" = yes ] || { echo "model $target is not AVAILABLE"; exit 1; }
done
{{- end }}

{{/*
The readiness handler (also used by the start-up probe).
*/}}
{{- define "tfstack.tfserving.readyHandler" -}}
{{- if eq .Values.tfserving.probes.readinessCheck "models" }}
exec:
  command:
    - /bin/bash
    - -c
    - {{ include "tfstack.tfserving.readyScript" . | quote }}
    - tfstack-ready
    - "8501"
    {{- range (include "tfstack.tfserving.readinessTargets" . | fromJsonArray) }}
    - {{ . | quote }}
    {{- end }}
{{- else }}
{{- $first := "" }}
{{- range $name, $m := .Values.models }}{{ if and (not (kindIs "invalid" $m)) (not $first) }}{{ $first = $name }}{{ end }}{{ end }}
httpGet:
  path: /v1/models/{{ $first }}
  port: http
{{- end }}
{{- end }}

{{/*
Topology spread constraints. Call with (dict "ctx" $ "component" "gateway" "spread" .Values.gateway.topologySpread).
*/}}
{{- define "tfstack.topologySpread" -}}
{{- if .spread.enabled }}
topologySpreadConstraints:
  - maxSkew: {{ .spread.maxSkew }}
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: {{ .spread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "tfstack.selectorLabels" . | nindent 8 }}
    matchLabelKeys:
      - pod-template-hash
  - maxSkew: {{ .spread.maxSkew }}
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "tfstack.selectorLabels" . | nindent 8 }}
    matchLabelKeys:
      - pod-template-hash
{{- end }}
{{- end }}

{{/*
"true" when a Prometheus Operator object is to be rendered: `enabled: true`, or `enabled: auto` and the
cluster serves monitoring.coreos.com/v1. Call with (list $ .Values.metrics.serviceMonitor.enabled).
*/}}
{{- define "tfstack.monitoring.render" -}}
{{- $ctx := index . 0 }}
{{- $enabled := index . 1 }}
{{- if or (eq (toString $enabled) "true") (and (eq (toString $enabled) "auto") ($ctx.Capabilities.APIVersions.Has "monitoring.coreos.com/v1")) }}true{{ end }}
{{- end }}

{{/*
Labels a Prometheus selects its operator objects on: `release: <metrics.prometheusRelease>` (what a
stock kube-prometheus-stack's serviceMonitorSelector, podMonitorSelector and ruleSelector match),
then the object's own `labels`. Call with (list $ .Values.metrics.serviceMonitor.labels).
*/}}
{{- define "tfstack.monitoring.labels" -}}
{{- $ctx := index . 0 }}
{{- $labels := dict }}
{{- with $ctx.Values.metrics.prometheusRelease }}{{ $_ := set $labels "release" . }}{{ end }}
{{- $labels = merge (deepCopy (default dict (index . 1))) $labels }}
{{- with $labels }}{{ toYaml . }}{{ end }}
{{- end }}
