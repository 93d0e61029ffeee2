"""The only code that talks to the Kubernetes API server.

Server-side apply with field manager `berth-operator` (force) for child objects and the operator's
share of the status, label- and field-selector reads, Events. Everything goes through the `KubeApi` Protocol,
so handlers are tested against `InMemoryKubeApi` and run against `ClientKubeApi`.

Permissions the operator needs (the Helm chart's RBAC is written from this list; REQUIRED_PERMISSIONS
is the same list as data). Namespaced, in every watched namespace:

| apiGroup | resource | verbs | why |
|---|---|---|---|
| berth.dev | inferencedeployments | get, list, watch, patch | Kopf watches, annotates (berth.dev/*); |
| | | | a carried-out berth.dev/rollout-action annotation is removed |
| berth.dev | inferencedeployments/status | patch | server-side apply of status |
| berth.dev | inferencedeployments/finalizers | update | ownerReferences with blockOwnerDeletion |
| apps | deployments | get, list, watch, create, patch | apply (primary, canary); status reads; Kopf watches |
| apps | replicasets | get, list | a rollback restores the stable revision's template from its ReplicaSet |
| "" | services | get, list, watch, create, patch, delete | apply; Kopf watches (edits, deletions); |
| | | | the route's two Services go when spec.serving.httpRoute does |
| "" | configmaps | get, list, watch, create, patch | apply; Kopf watches (edits, deletions) |
| gateway.networking.k8s.io | httproutes | get, create, patch, delete | spec.serving.httpRoute |
| policy | poddisruptionbudgets | get, list, watch, create, patch | apply; Kopf watches (edits, deletions) |
| "" | pods | list, watch | Kopf watches runtime pods; status reads them; pod sampling finds the Ready ones |
| discovery.k8s.io | endpointslices | list, watch | ready counts: what the Service routes to; Kopf watches |
| "" | events | create, list, watch | Events on transitions (berth), handler failures (Kopf); |
| | | | Kopf watches and status reads a starting pod's Warning Events (FailedMount, ...) |

Optional (OPTIONAL_PERMISSIONS; the chart's `rbac.readSecrets`, off by default): "" secrets get, in
the watched namespaces only, so a missing Secret a spec references is reported before any pod exists.
RBAC cannot grant "exists" without the contents, so berth does not need it: without it (403, the check
is skipped) a missing credentials Secret shows as the fetch container's CreateContainerConfigError and
a missing API-key Secret as the pod's FailedMount Warning Event, both in status with the kubelet's
message. The one thing that needs it: Prometheus credentials a spec names by Secret
(spec.autoscaling.prometheus.*SecretRef) -- without the grant the autoscaler, the canary analysis and
the economics report that they cannot read them (naming rbac.readSecrets) and hold.

Cluster-scoped, for Kopf itself: apiextensions.k8s.io customresourcedefinitions list, watch; and, when
watching a list of namespaces, "" namespaces list, watch. Server-side apply creates a missing object
through PATCH, which the API server authorizes as `create` too. The operator deletes only the
HTTPRoute and its two Services once spec.serving.httpRoute is removed; every other child goes with its
owner (garbage collection; an idle canary Deployment is kept at 0 replicas). It never uses the
deployments/scale subresource.
"""

from typing import Final

from berth_operator.kube.api import FIELD_MANAGER, KubeApi
from berth_operator.kube.children import ApplyResult, apply_child
from berth_operator.kube.errors import Conflict, Forbidden, Invalid, KubeApiError, NotFound
from berth_operator.kube.events import record_event
from berth_operator.kube.memory import InMemoryKubeApi
from berth_operator.kube.ownership import FieldOwnership
from berth_operator.kube.status import AUTOSCALER_FIELD_MANAGER, apply_status

# (apiGroup, resource, verbs) -- the table above as data.
REQUIRED_PERMISSIONS: Final = (
    ("berth.dev", "inferencedeployments", ("get", "list", "watch", "patch")),
    ("berth.dev", "inferencedeployments/status", ("patch",)),
    ("berth.dev", "inferencedeployments/finalizers", ("update",)),
    ("apps", "deployments", ("get", "list", "watch", "create", "patch")),
    ("apps", "replicasets", ("get", "list")),
    ("gateway.networking.k8s.io", "httproutes", ("get", "create", "patch", "delete")),
    ("", "services", ("get", "list", "watch", "create", "patch", "delete")),
    ("", "configmaps", ("get", "list", "watch", "create", "patch")),
    ("policy", "poddisruptionbudgets", ("get", "list", "watch", "create", "patch")),
    ("", "pods", ("list", "watch")),
    ("discovery.k8s.io", "endpointslices", ("list", "watch")),
    ("", "events", ("create", "list", "watch")),
)
OPTIONAL_PERMISSIONS: Final = (("", "secrets", ("get",)),)
KOPF_CLUSTER_PERMISSIONS: Final = (
    ("apiextensions.k8s.io", "customresourcedefinitions", ("list", "watch")),
    ("", "namespaces", ("list", "watch")),
)

__all__ = [
    "AUTOSCALER_FIELD_MANAGER",
    "FIELD_MANAGER",
    "KOPF_CLUSTER_PERMISSIONS",
    "OPTIONAL_PERMISSIONS",
    "REQUIRED_PERMISSIONS",
    "ApplyResult",
    "Conflict",
    "FieldOwnership",
    "Forbidden",
    "InMemoryKubeApi",
    "Invalid",
    "KubeApi",
    "KubeApiError",
    "NotFound",
    "apply_child",
    "apply_status",
    "record_event",
]
