"""The volumes, mounts, flags and init container of a shared model cache (spec.model.cache).

In mode Pod the weights live in the pod's own emptyDir (pod.py). In modes Node and PVC they live in a
shared cache root, a hostPath folder under the operator's BERTH_MODEL_CACHE_ROOT or a ReadWriteMany
claim, mounted at the same path in two containers: read-write in the fetch init container, which
fills or verifies an entry under a lock (berth_runtime.fetch.node_cache) and leaves the link
/models/model -> <root>/entries/<key> in the small pod-local emptyDir; read-only in the runtime
container, where that link then resolves and whose server starts through `hold_entry`, so that it
holds the entry's users lock while it runs and eviction passes the entry by. A hostPath folder is
created by the kubelet owned by root and fsGroup does not reach it, so Node mode first runs a
one-step init container as root with only the CHOWN capability that hands the root folder (not its
content) to the runtime's user.
"""

from __future__ import annotations

import math
from typing import Any

from berth_operator.api.common import parse_quantity
from berth_operator.builders.context import BuildContext
from berth_operator.builders.runtime_args import DOWNLOADED_MODEL_PATH

SHARED_CACHE_VOLUME = "shared-model-cache"
SHARED_CACHE_DIR = "/var/cache/berth-models"
PREPARE_CONTAINER = "prepare-model-cache"
HOLD_ENTRY = ["python", "-m", "berth_runtime.fetch.hold_entry"]
# The pod-local emptyDir of a shared-cache pod holds one symbolic link.
LINK_VOLUME_SIZE_LIMIT = "1Mi"


def uses_shared_cache(context: BuildContext) -> bool:
    """Whether the weights are downloaded into a cache shared with other pods (mode Node or PVC)."""
    return context.spec.model.is_downloaded and context.spec.model.cache_mode != "Pod"


def shared_cache_volume(context: BuildContext) -> dict[str, Any]:
    """The cache root: a hostPath folder (Node) or the named ReadWriteMany claim (PVC)."""
    cache = context.spec.model.cache
    if cache is not None and cache.mode == "PVC" and cache.claim_name is not None:
        return {"name": SHARED_CACHE_VOLUME, "persistentVolumeClaim": {"claimName": cache.claim_name}}
    root = context.model_cache.root
    if root is None:
        raise ValueError(
            "spec.model.cache.mode 'Node' needs the operator's BERTH_MODEL_CACHE_ROOT; the reconcile "
            "refuses such a spec before building (handlers.checks.check_model_cache)"
        )
    return {"name": SHARED_CACHE_VOLUME, "hostPath": {"path": root, "type": "DirectoryOrCreate"}}


def shared_cache_mount(*, read_only: bool) -> dict[str, Any]:
    mount: dict[str, Any] = {"name": SHARED_CACHE_VOLUME, "mountPath": SHARED_CACHE_DIR}
    if read_only:
        mount["readOnly"] = True
    return mount


def cache_flags(context: BuildContext) -> list[str]:
    """The fetch flags of a shared cache: its root and, where there is one, its byte budget."""
    cache = context.spec.model.cache
    if cache is not None and cache.mode == "PVC":
        if cache.budget is None:
            return ["--cache-root", SHARED_CACHE_DIR]
        budget = max(1, math.ceil(parse_quantity(cache.budget)))
    else:
        budget = context.model_cache.budget_bytes
    return ["--cache-root", SHARED_CACHE_DIR, "--cache-budget-bytes", str(budget)]


def held_serve_command(serve_command: list[str]) -> list[str]:
    """The server started through `hold_entry`, which holds the entry's users lock for the server's
    life (the process execs the server and keeps the lock), so eviction never takes it."""
    return [*HOLD_ENTRY, DOWNLOADED_MODEL_PATH, "--", *serve_command]


def prepare_container(context: BuildContext, runtime_user_id: int) -> dict[str, Any]:
    """Node mode's first init container: hand the hostPath root to `runtime_user_id`, nothing more."""
    container: dict[str, Any] = {
        "name": PREPARE_CONTAINER,
        "image": context.runtime_image,
        "command": ["python", "-m", "berth_runtime.fetch.cache_root", SHARED_CACHE_DIR, str(runtime_user_id)],
        "volumeMounts": [shared_cache_mount(read_only=False)],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
        "securityContext": {
            "runAsUser": 0,
            "runAsGroup": 0,
            "runAsNonRoot": False,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if context.spec.runtime.image_pull_policy is not None:
        container["imagePullPolicy"] = context.spec.runtime.image_pull_policy
    return container
