{{/*
Names, labels and the checks that refuse contradictory values. Every name goes through
trunc 63 | trimSuffix "-": Kubernetes names and label values are at most 63 characters.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "berth.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The full name prefix of every object: fullnameOverride, else "<release>-<name>", else the release
name alone when it already contains the chart name.
*/}}
{{- define "berth.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A name built from the full name and a suffix, still at most 63 characters. */}}
{{- define "berth.suffixedName" -}}
{{- $suffix := index . 1 -}}
{{- $base := include "berth.fullname" (index . 0) | trunc (int (sub 62 (len $suffix))) | trimSuffix "-" -}}
{{- printf "%s-%s" $base $suffix -}}
{{- end -}}

{{/* chart label value: "<name>-<version>" with "+" made label-safe. */}}
{{- define "berth.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the operator's pods; never change them on upgrade (selectors are immutable). */}}
{{- define "berth.selectorLabels" -}}
app.kubernetes.io/name: {{ include "berth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* Labels on every object the chart creates. */}}
{{- define "berth.labels" -}}
helm.sh/chart: {{ include "berth.chart" . }}
app.kubernetes.io/name: {{ include "berth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | replace "+" "_" | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: berth
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The operator's ServiceAccount name. */}}
{{- define "berth.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "berth.fullname" .) .Values.serviceAccount.name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The operator image reference: the digest pins it when set, else the tag (default appVersion). */}}
{{- define "berth.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Whether the operator watches every namespace (no watchNamespaces given). */}}
{{- define "berth.clusterwide" -}}
{{- if .Values.watchNamespaces -}}false{{- else -}}true{{- end -}}
{{- end -}}

{{/* A Prometheus duration with one unit ("500ms", "30s", "1m", "1h") in milliseconds. */}}
{{- define "berth.durationMilliseconds" -}}
{{- $number := int (regexFind "^[0-9]+" .) -}}
{{- $unit := regexFind "[a-z]+$" . -}}
{{- mul $number (get (dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000) $unit) -}}
{{- end -}}

{{/*
Refuse values that contradict each other, with a message that names the values and what to change.
Included once, from the Deployment template, so every render runs it.
*/}}
{{- define "berth.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.peering.enabled) -}}
{{- fail (printf "replicaCount=%d needs peering.enabled=true: without Kopf peering every replica would reconcile the same InferenceDeployments at once. Set peering.enabled=true or replicaCount=1." (int .Values.replicaCount)) -}}
{{- end -}}
{{- if and (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) -}}
{{- fail "serviceAccount.create=false needs serviceAccount.name: the name of an existing ServiceAccount for the operator." -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) -}}
{{- fail "metrics.serviceMonitor.enabled=true needs metrics.enabled=true: the ServiceMonitor scrapes the metrics Service." -}}
{{- end -}}
{{- range $key := list "helm.sh/chart" "app.kubernetes.io/name" "app.kubernetes.io/instance" "app.kubernetes.io/version" "app.kubernetes.io/managed-by" "app.kubernetes.io/part-of" "app.kubernetes.io/component" -}}
{{- range $value := list "commonLabels" "podLabels" -}}
{{- if hasKey (index $.Values $value) $key -}}
{{- fail (printf "%s may not set %s: the chart sets it, and the operator's selectors depend on it. Remove it from %s." $value $key $value) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- with .Values.metrics.serviceMonitor -}}
{{- if and .enabled .scrapeTimeout (gt (int (include "berth.durationMilliseconds" .scrapeTimeout)) (int (include "berth.durationMilliseconds" .interval))) -}}
{{- fail (printf "metrics.serviceMonitor.scrapeTimeout=%s is longer than metrics.serviceMonitor.interval=%s; Prometheus refuses a scrape timeout above the interval." .scrapeTimeout .interval) -}}
{{- end -}}
{{- end -}}
{{- with .Values.runtimeMetrics.podMonitor -}}
{{- if and .enabled .scrapeTimeout (gt (int (include "berth.durationMilliseconds" .scrapeTimeout)) (int (include "berth.durationMilliseconds" .interval))) -}}
{{- fail (printf "runtimeMetrics.podMonitor.scrapeTimeout=%s is longer than runtimeMetrics.podMonitor.interval=%s; Prometheus refuses a scrape timeout above the interval." .scrapeTimeout .interval) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.metrics.enabled (eq (int .Values.metrics.port) (int .Values.operator.healthPort)) -}}
{{- fail (printf "metrics.port and operator.healthPort are both %d; the metrics and health endpoints need different ports." (int .Values.metrics.port)) -}}
{{- end -}}
{{- end -}}
