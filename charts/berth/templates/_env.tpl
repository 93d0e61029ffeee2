{{/*
The operator's settings as environment variables (berth_operator reads its settings from the
environment). tests/chart checks every name here is one the operator's settings module reads.
*/}}
{{- define "berth.operatorEnv" -}}
- name: BERTH_LOG_LEVEL
  value: {{ .Values.operator.logLevel | quote }}
- name: BERTH_PROMETHEUS_URL
  value: {{ .Values.operator.prometheusUrl | quote }}
- name: BERTH_HEALTH_PORT
  value: {{ .Values.operator.healthPort | quote }}
- name: BERTH_METRICS_ENABLED
  value: {{ .Values.metrics.enabled | quote }}
- name: BERTH_METRICS_PORT
  value: {{ .Values.metrics.port | quote }}
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
