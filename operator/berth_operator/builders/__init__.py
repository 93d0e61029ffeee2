"""Pure builders: a parsed spec in, Kubernetes manifests (plain dicts) out -- and, the other way
round, observed objects in, the operator's share of the status out.

Two directions, one contract. `children`, `configmap`, `deployment`, `pod`, `runtime_args`,
`service` and `pdb` build what the operator writes; `status` derives the status fields the operator
owns from the Deployment, pods, EndpointSlices and pod Events it read, with `pod_problems` (why pods
are not running) and `serving` (which pods the Service routes to); `replicas` and `labels` serve
both. All of it is pure: no I/O, no kopf, no Kubernetes client (import-linter enforces it), so every
manifest the operator writes and every status it derives is checked in a table-driven unit test.
"""

from berth_operator.builders.children import build_children
from berth_operator.builders.context import BuildContext, Owner

__all__ = ["BuildContext", "Owner", "build_children"]
