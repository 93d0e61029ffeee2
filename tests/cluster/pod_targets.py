"""A pod's scrape targets with the labels Prometheus' Kubernetes discovery (role: pod) gives them.

Why: Debian's ``prometheus`` package is built without Kubernetes service discovery (its
NEWS.Debian: "Kubernetes support has been completely removed, due to the insane amount of
dependencies in their client library"), so ``kubernetes_sd_configs`` is refused there. The local
Prometheus (tests/cluster/prometheus.py) therefore reads ``file_sd_configs`` that a small watcher
keeps equal to what ``kubernetes_sd_configs`` would discover: one target per container port at
``podIP:port`` (one per container without ports), labelled with the documented
``__meta_kubernetes_pod_*`` names. The chart's relabelings then run unchanged on Prometheus' own
relabeling engine. Pure functions of a Pod as JSON, tested without a cluster.
"""

from __future__ import annotations

import re
from typing import Any

_META = "__meta_kubernetes_"


def meta_label_name(name: str) -> str:
    """A label or annotation key as discovery writes it: each character outside [a-zA-Z0-9_] -> _."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def _pod_labels(pod: dict[str, Any]) -> dict[str, str]:
    """The labels every target of the pod carries (Prometheus' podLabels)."""
    metadata, spec, status = pod["metadata"], pod.get("spec", {}), pod.get("status", {})
    ready = next(
        (str(c.get("status", "")) for c in status.get("conditions") or [] if c.get("type") == "Ready"),
        "Unknown",
    )
    labels = {
        f"{_META}namespace": metadata.get("namespace", ""),
        f"{_META}pod_name": metadata["name"],
        f"{_META}pod_ip": status.get("podIP", ""),
        f"{_META}pod_ready": ready.lower(),
        f"{_META}pod_phase": status.get("phase", ""),
        f"{_META}pod_node_name": spec.get("nodeName", ""),
        f"{_META}pod_host_ip": status.get("hostIP", ""),
        f"{_META}pod_uid": metadata.get("uid", ""),
    }
    for owner in metadata.get("ownerReferences") or []:
        if owner.get("controller"):
            labels[f"{_META}pod_controller_kind"] = owner.get("kind", "")
            labels[f"{_META}pod_controller_name"] = owner.get("name", "")
    for kind, values in (("label", metadata.get("labels")), ("annotation", metadata.get("annotations"))):
        for key, value in (values or {}).items():
            labels[f"{_META}pod_{kind}_{meta_label_name(key)}"] = str(value)
            labels[f"{_META}pod_{kind}present_{meta_label_name(key)}"] = "true"
    return labels


def _address(ip: str, port: int | None) -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return ip if port is None else f"{host}:{port}"


def pod_targets(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod's file_sd target groups, one per target; none for a pod without an IP yet."""
    status = pod.get("status", {})
    ip = status.get("podIP")
    if not ip:
        return []
    shared = _pod_labels(pod)
    container_ids = {
        entry.get("name"): entry.get("containerID", "")
        for entry in [*(status.get("containerStatuses") or []), *(status.get("initContainerStatuses") or [])]
    }
    groups: list[dict[str, Any]] = []
    spec = pod.get("spec", {})
    containers = [(c, "false") for c in spec.get("containers") or []]
    containers += [(c, "true") for c in spec.get("initContainers") or []]
    for container, init in containers:
        container_labels = {
            f"{_META}pod_container_name": container["name"],
            f"{_META}pod_container_image": container.get("image", ""),
            f"{_META}pod_container_id": container_ids.get(container["name"], ""),
            f"{_META}pod_container_init": init,
        }
        ports = container.get("ports") or []
        if not ports:
            groups.append({"targets": [_address(ip, None)], "labels": {**shared, **container_labels}})
        for port in ports:
            port_labels = {
                f"{_META}pod_container_port_name": port.get("name", ""),
                f"{_META}pod_container_port_number": str(port["containerPort"]),
                f"{_META}pod_container_port_protocol": port.get("protocol", "TCP"),
            }
            groups.append(
                {
                    "targets": [_address(ip, int(port["containerPort"]))],
                    "labels": {**shared, **container_labels, **port_labels},
                }
            )
    return groups
