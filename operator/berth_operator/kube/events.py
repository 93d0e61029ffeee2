"""Records Kubernetes Events on an InferenceDeployment (what `kubectl describe` shows)."""

from __future__ import annotations

import logging
import os
import socket
from datetime import UTC, datetime
from typing import Any

from berth_operator.kube.api import KubeApi
from berth_operator.kube.errors import KubeApiError
from berth_operator.kube.kinds import EVENT

logger = logging.getLogger(__name__)

REPORTING_COMPONENT = "berth-operator"
MESSAGE_LIMIT = 1024


def event_manifest(
    involved: dict[str, Any], event_type: str, reason: str, message: str, now: datetime
) -> dict[str, Any]:
    """A core/v1 Event about `involved` (an object as read from the API server)."""
    metadata = involved["metadata"]
    timestamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if len(message) > MESSAGE_LIMIT:
        message = message[: MESSAGE_LIMIT - 3] + "..."
    return {
        "metadata": {"generateName": f"{metadata['name']}.", "namespace": metadata["namespace"]},
        "involvedObject": {
            "apiVersion": involved["apiVersion"],
            "kind": involved["kind"],
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "uid": metadata.get("uid", ""),
            "resourceVersion": metadata.get("resourceVersion", ""),
        },
        "type": event_type,
        "reason": reason,
        "message": message,
        "source": {"component": REPORTING_COMPONENT},
        "reportingComponent": REPORTING_COMPONENT,
        "reportingInstance": os.environ.get("POD_ID") or socket.gethostname(),
        "firstTimestamp": timestamp,
        "lastTimestamp": timestamp,
        "count": 1,
    }


async def record_event(
    api: KubeApi, involved: dict[str, Any], event_type: str, reason: str, message: str, now: datetime
) -> bool:
    """Create the Event; True when it was recorded.

    Events are best effort: one that cannot be written (RBAC, quota, API trouble) is logged and
    never fails the reconcile that wanted to tell it -- the status carries the same facts.
    """
    manifest = event_manifest(involved, event_type, reason, message, now)
    try:
        await api.create(EVENT, involved["metadata"]["namespace"], manifest)
    except KubeApiError as error:
        logger.warning(
            "could not record Event %s %s/%s: %s",
            reason,
            manifest["metadata"]["namespace"],
            involved["metadata"]["name"],
            error,
        )
        return False
    return True
