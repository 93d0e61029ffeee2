"""Records Kubernetes Events on an InferenceDeployment (what `kubectl describe` shows)."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from typing import Any

from berth_operator.kube.api import KubeApi
from berth_operator.kube.kinds import EVENT

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
) -> None:
    manifest = event_manifest(involved, event_type, reason, message, now)
    await api.create(EVENT, involved["metadata"]["namespace"], manifest)
