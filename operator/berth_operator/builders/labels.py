"""Names, labels and the revision hash shared by every child object.

The selector labels never change for the life of an InferenceDeployment (a Deployment's selector is
immutable); the revision label changes exactly when something that shapes a replica changes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

from berth_operator.builders.context import BuildContext

NAME_LABEL: Final = "app.kubernetes.io/name"
INSTANCE_LABEL: Final = "app.kubernetes.io/instance"
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
COMPONENT_LABEL: Final = "app.kubernetes.io/component"
REVISION_LABEL: Final = "berth.dev/revision"
APPLIED_HASH_ANNOTATION: Final = "berth.dev/applied-hash"

APP_NAME: Final = "berth-runtime"
MANAGED_BY: Final = "berth"
COMPONENT: Final = "inference-server"


def selector_labels(name: str) -> dict[str, str]:
    """Labels that select the runtime pods of one InferenceDeployment (stable for its lifetime)."""
    return {NAME_LABEL: APP_NAME, INSTANCE_LABEL: name}


def selector_string(name: str) -> str:
    """The selector in `kubectl -l` form, for status.selector (the scale subresource)."""
    return ",".join(f"{key}={value}" for key, value in sorted(selector_labels(name).items()))


def common_labels(name: str) -> dict[str, str]:
    """Labels on every child object."""
    return {**selector_labels(name), MANAGED_BY_LABEL: MANAGED_BY, COMPONENT_LABEL: COMPONENT}


def applied_hash(manifest: dict[str, Any]) -> str | None:
    """The berth.dev/applied-hash annotation of a manifest or live object, if it has one."""
    value = manifest.get("metadata", {}).get("annotations", {}).get(APPLIED_HASH_ANNOTATION)
    return str(value) if value is not None else None


def stable_hash(value: Any, length: int = 10) -> str:
    """A short hash of a JSON-serialisable value that does not depend on key order."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


def revision_hash(context: BuildContext) -> str:
    """Hash of everything that shapes a replica: model, runtime (with its resolved image),
    resources, scheduling and serving. Replicas, autoscaling, rollout settings and the HTTPRoute are
    excluded: changing them never restarts a pod."""
    spec = context.spec.to_wire()
    shaping = {
        section: spec[section] for section in ("model", "runtime", "resources", "scheduling", "serving")
    }
    shaping["runtime"] = {**shaping["runtime"], "image": context.runtime_image}
    # The route is outside the pod: attaching one to a Gateway restarts nothing.
    shaping["serving"] = {key: value for key, value in shaping["serving"].items() if key != "httpRoute"}
    return stable_hash(shaping)
