"""Events about pods, written as the kubelet writes them (source.component ``kubelet``).

Why: people and berth's operator learn why a pod is stuck from its Events (``kubectl describe``):
``FailedMount`` for a missing Secret, ``BackOff`` for a crash loop, ``Unhealthy`` for a failing probe.
Like the kubelet's event correlator, a repeat of the same reason and message on the same object
raises the first Event's ``count`` instead of adding another.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from tests.cluster.local_node.kube import Kube, KubeError
from tests.cluster.local_node.records import timestamp

log = logging.getLogger(__name__)


class EventRecorder:
    """Writes core/v1 Events for pods on ``node_name``."""

    def __init__(self, kube: Kube, node_name: str) -> None:
        self._kube = kube
        self._node = node_name
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str, str, str], tuple[str, int]] = {}

    def pod_event(
        self, pod: Mapping[str, Any], event_type: str, reason: str, message: str, container: str | None = None
    ) -> None:
        metadata = pod["metadata"]
        namespace, uid = metadata["namespace"], metadata["uid"]
        field_path = f"spec.containers{{{container}}}" if container else ""
        key = (uid, field_path, reason, message)
        now = timestamp()
        with self._lock:
            earlier = self._seen.get(key)
        try:
            if earlier is not None:
                name, count = earlier
                self._kube.merge_patch(
                    f"/api/v1/namespaces/{namespace}/events/{name}",
                    {"count": count + 1, "lastTimestamp": now},
                )
                with self._lock:
                    self._seen[key] = (name, count + 1)
                return
            name = f"{metadata['name']}.{uuid.uuid4().hex[:16]}"
            involved = {
                "kind": "Pod",
                "apiVersion": "v1",
                "namespace": namespace,
                "name": metadata["name"],
                "uid": uid,
                "resourceVersion": metadata.get("resourceVersion", ""),
            }
            if field_path:
                involved["fieldPath"] = field_path
            body = {
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": involved,
                "reason": reason,
                "message": message,
                "type": event_type,
                "source": {"component": "kubelet", "host": self._node},
                "reportingComponent": "kubelet",
                "reportingInstance": self._node,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            }
            self._kube.request("POST", f"/api/v1/namespaces/{namespace}/events", body=body)
            with self._lock:
                self._seen[key] = (name, 1)
        except KubeError as error:  # an Event is best effort, as in the kubelet
            log.warning("event %s for pod %s/%s not written: %s", reason, namespace, metadata["name"], error)

    def forget(self, uid: str) -> None:
        with self._lock:
            for key in [key for key in self._seen if key[0] == uid]:
                del self._seen[key]
