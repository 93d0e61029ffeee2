{{/*
The operator's permissions, in one place. Each rule is here because code uses it; the comment
says which. tests/chart/test_rbac.py compares these rules with the operator's documented needs
(berth_operator.kube) and Kopf's, so a permission cannot be added or dropped on one side only.
*/}}

{{/*
Rules on namespaced resources: granted by a ClusterRole when the operator watches all namespaces,
by a Role in each watched namespace otherwise.
*/}}
{{- define "berth.rbac.namespacedRules" -}}
# Kopf: watch InferenceDeployments, patch finalizers and its progress annotations on them.
- apiGroups: ["berth.dev"]
  resources: ["inferencedeployments"]
  verbs: ["get", "list", "watch", "patch"]
# berth_operator.kube: write status (phase, conditions, autoscaling signals).
- apiGroups: ["berth.dev"]
  resources: ["inferencedeployments/status"]
  verbs: ["get", "patch"]
# berth_operator.kube: owner references that block deletion need this on clusters that enforce
# OwnerReferencesPermissionEnforcement (OpenShift).
- apiGroups: ["berth.dev"]
  resources: ["inferencedeployments/finalizers"]
  verbs: ["update"]
# berth_operator.kube: server-side apply of the runtime Deployment (create on first apply), scaling.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments/scale"]
  verbs: ["get", "patch"]
# berth_operator.kube: server-side apply of the Service and ConfigMap beside each deployment.
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# berth_operator.kube: the PodDisruptionBudget of each deployment.
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Kopf and berth_operator.kube: Events on InferenceDeployments (handler progress, scaling decisions).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- if and .Values.peering.enabled (eq (include "berth.clusterwide" .) "false") }}
# Kopf peering (namespaced): replicas announce themselves in a KopfPeering per watched namespace.
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end -}}

{{/* Rules on cluster-scoped resources: always a ClusterRole. */}}
{{- define "berth.rbac.clusterRules" -}}
# Kopf: notice CRDs appearing and changing (resource discovery).
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- if eq (include "berth.clusterwide" .) "false" }}
# Kopf: notice watched namespaces being created and deleted.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- if and .Values.peering.enabled (eq (include "berth.clusterwide" .) "true") }}
# Kopf peering (cluster-wide): replicas announce themselves in a ClusterKopfPeering.
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end -}}
