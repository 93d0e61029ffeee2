{{/*
The operator's permissions, in one place, written from the table in berth_operator/kube/__init__.py
(REQUIRED_PERMISSIONS, KOPF_CLUSTER_PERMISSIONS) plus Kopf peering. tests/chart/test_chart_rbac.py
compares the rendered rules with that data, so neither side can gain or lose a permission alone.
No wildcards, no delete: garbage collection removes children through their ownerReferences.
*/}}

{{/*
Rules on namespaced resources: in the ClusterRole when the operator watches all namespaces, in a
Role in each watched namespace otherwise.
*/}}
{{- define "berth.rbac.namespacedRules" -}}
# Kopf watches InferenceDeployments and keeps its berth.dev/* annotations and finalizer on them.
- apiGroups: ["berth.dev"]
  resources: ["inferencedeployments"]
  verbs: ["get", "list", "watch", "patch"]
# Server-side apply of the status.
- apiGroups: ["berth.dev"]
  resources: ["inferencedeployments/status"]
  verbs: ["patch"]
# ownerReferences with blockOwnerDeletion on the children.
- apiGroups: ["berth.dev"]
  resources: ["inferencedeployments/finalizers"]
  verbs: ["update"]
# The runtime Deployments (primary and canary): server-side apply (create on first apply), status reads, Kopf watches.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
# A rollback restores the stable revision's pod template from the ReplicaSet that keeps it.
- apiGroups: ["apps"]
  resources: ["replicasets"]
  verbs: ["get", "list"]
# The runtime Service, ConfigMap and PodDisruptionBudget: server-side apply; Kopf watches them so an
# edit or deletion behind the operator's back is repaired at once. With spec.serving.httpRoute, two
# more Services (NAME-stable, NAME-canary), deleted with the route when the spec drops it.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch"]
# spec.serving.httpRoute: the Gateway API HTTPRoute (weighted during a canary), deleted when dropped.
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Runtime pods: Kopf watches them, status explains why they are not serving, and pod sampling
# (spec.autoscaling.podSampling) lists the Ready ones to read their metrics port.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# The runtime Service's EndpointSlices: ready counts are what the Service routes to; Kopf watches them.
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["list", "watch"]
{{- if .Values.rbac.readSecrets }}
# Whether Secrets a spec references exist (never their contents in status or logs).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}
# Events on transitions (berth) and handler failures (Kopf); the kubelet's Warning Events of a pod
# that cannot start (FailedMount, ...), which pod status never shows: Kopf watches, status reads them.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "list", "watch"]
{{- if and .Values.peering.enabled (eq (include "berth.clusterwide" .) "false") }}
# Kopf peering: replicas announce themselves in the KopfPeering of each watched namespace.
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end -}}

{{/* Rules on cluster-scoped resources: always in the ClusterRole. */}}
{{- define "berth.rbac.clusterRules" -}}
# Kopf notices CRDs appearing and changing.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- if eq (include "berth.clusterwide" .) "false" }}
# Kopf notices watched namespaces being created and deleted.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- if and .Values.peering.enabled (eq (include "berth.clusterwide" .) "true") }}
# Kopf peering: replicas announce themselves in the ClusterKopfPeering.
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end -}}
