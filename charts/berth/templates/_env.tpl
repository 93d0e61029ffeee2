{{/*
The operator's settings as environment variables (berth_operator reads its settings from the
environment, berth_operator/settings.py). tests/chart/test_chart_settings.py parses this env with
the operator's own settings code and checks every BERTH_* variable it reads is set here.
*/}}
{{- define "berth.operatorEnv" -}}
{{- $prometheus := .Values.operator.prometheus }}
{{- if and $prometheus.bearerTokenFile $prometheus.basicAuth.username }}
{{- fail "operator.prometheus: set bearerTokenFile or basicAuth, not both" }}
{{- end }}
{{- if ne (empty $prometheus.basicAuth.username) (empty $prometheus.basicAuth.passwordFile) }}
{{- fail "operator.prometheus.basicAuth: username and passwordFile go together" }}
{{- end }}
{{- if and $prometheus.caFile $prometheus.insecureSkipVerify }}
{{- fail "operator.prometheus: insecureSkipVerify checks no certificate, so caFile would be ignored: set one or the other" }}
{{- end }}
- name: BERTH_LOG_LEVEL
  value: {{ .Values.operator.logLevel | quote }}
- name: BERTH_PROMETHEUS_URL
  value: {{ .Values.operator.prometheusUrl | quote }}
- name: BERTH_PROMETHEUS_BEARER_TOKEN_FILE
  value: {{ $prometheus.bearerTokenFile | quote }}
- name: BERTH_PROMETHEUS_BASIC_AUTH_USERNAME
  value: {{ $prometheus.basicAuth.username | quote }}
- name: BERTH_PROMETHEUS_BASIC_AUTH_PASSWORD_FILE
  value: {{ $prometheus.basicAuth.passwordFile | quote }}
- name: BERTH_PROMETHEUS_CA_FILE
  value: {{ $prometheus.caFile | quote }}
- name: BERTH_PROMETHEUS_INSECURE_SKIP_VERIFY
  value: {{ $prometheus.insecureSkipVerify | quote }}
- name: BERTH_PROMETHEUS_SERVER_NAME
  value: {{ $prometheus.serverName | quote }}
- name: BERTH_PROMETHEUS_HEADERS
  value: {{ if $prometheus.headers }}{{ toJson $prometheus.headers | quote }}{{ else }}""{{ end }}
- name: BERTH_RUNTIME_IMAGE
  value: {{ .Values.operator.runtimeImage | quote }}
- name: BERTH_GPU_PRODUCTS
  value: {{ join "," .Values.operator.gpuProducts | quote }}
- name: BERTH_MISSING_SECRET_RETRY_SECONDS
  value: {{ .Values.operator.missingSecretRetrySeconds | quote }}
- name: BERTH_API_CONCURRENCY
  value: {{ .Values.operator.apiConcurrency | quote }}
- name: BERTH_HEALTH_PORT
  value: {{ .Values.operator.healthPort | quote }}
- name: BERTH_METRICS_ENABLED
  value: {{ .Values.metrics.enabled | quote }}
- name: BERTH_METRICS_PORT
  value: {{ .Values.metrics.port | quote }}
- name: BERTH_GPU_HOURLY_PRICES
  value: {{ if .Values.operator.gpuHourlyPrices }}{{ toJson .Values.operator.gpuHourlyPrices | quote }}{{ else }}""{{ end }}
- name: BERTH_GPU_PRICE_CURRENCY
  value: {{ .Values.operator.gpuPriceCurrency | quote }}
- name: BERTH_MODEL_CACHE_ROOT
  value: {{ .Values.operator.modelCache.root | quote }}
- name: BERTH_MODEL_CACHE_BUDGET
  value: {{ .Values.operator.modelCache.budget | quote }}
- name: BERTH_WATCH_NAMESPACES
  value: {{ join "," .Values.watchNamespaces | quote }}
- name: BERTH_PEERING_NAME
  value: {{ if .Values.peering.enabled }}{{ .Values.peering.name | quote }}{{ else }}""{{ end }}
# Kopf names this replica in the peering object after its pod.
- name: POD_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end -}}
