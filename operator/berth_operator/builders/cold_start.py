"""Measures cold starts from the pods' own timestamps, for `status.coldStart`.

Pure: pods in, figures out. Every stage has a timestamp the kubelet writes anyway -- the pod's
creation, its PodScheduled and Ready conditions, the fetch-model init container's start and finish,
the runtime container's start -- so this needs neither Prometheus nor a route to the pods, and works
for every resource, autoscaled or not. Timestamps have one-second resolution; cold starts are tens
of seconds to minutes.

A pod counts once it is Ready with its runtime container never restarted: a restart's Ready time
measures the restart, not the start. The figures are medians over those pods (one slow node does
not set the autoscaler's horizon), with the slowest kept beside them. While no pod of the revision
qualifies (all gone, or none Ready yet), the last figures stay.
"""

from __future__ import annotations

import statistics
from datetime import datetime
from typing import Any

from berth_operator.api.cold_start import ColdStartStatus
from berth_operator.builders.labels import REVISION_LABEL
from berth_operator.builders.pod import FETCH_CONTAINER, RUNTIME_CONTAINER


def _time(stamp: object) -> datetime | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(str(stamp))
    except ValueError:
        return None


def _condition_time(pod: dict[str, Any], kind: str) -> datetime | None:
    for condition in pod.get("status", {}).get("conditions", []):
        if condition.get("type") == kind and condition.get("status") == "True":
            return _time(condition.get("lastTransitionTime"))
    return None


def _container(statuses: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((status for status in statuses if status.get("name") == name), None)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None or end < start:
        return None
    return (end - start).total_seconds()


def _pod_stages(pod: dict[str, Any]) -> tuple[float, float | None, float, float] | None:
    """(scheduling, download, startup, total) seconds of one pod, or None while it does not count."""
    status = pod.get("status", {})
    runtime = _container(status.get("containerStatuses", []), RUNTIME_CONTAINER)
    if runtime is None or runtime.get("restartCount", 0) != 0:
        return None
    created = _time(pod.get("metadata", {}).get("creationTimestamp"))
    ready = _condition_time(pod, "Ready")
    started = _time(runtime.get("state", {}).get("running", {}).get("startedAt"))
    scheduling = _seconds(created, _condition_time(pod, "PodScheduled"))
    startup, total = _seconds(started, ready), _seconds(created, ready)
    if scheduling is None or startup is None or total is None:
        return None
    fetch = _container(status.get("initContainerStatuses", []), FETCH_CONTAINER)
    download = None
    if fetch is not None:
        finished = fetch.get("state", {}).get("terminated", {})
        download = _seconds(_time(finished.get("startedAt")), _time(finished.get("finishedAt")))
    return scheduling, download, startup, total


def measure_cold_start(
    pods: list[dict[str, Any]], revision: str | None, previous: ColdStartStatus | None
) -> ColdStartStatus | None:
    """The cold start of `revision`'s pods that have served, or `previous` when none can be measured
    (a revision change starts afresh only once a pod of the new revision is Ready)."""
    measured = [
        stages
        for pod in pods
        if revision is not None and pod.get("metadata", {}).get("labels", {}).get(REVISION_LABEL) == revision
        for stages in [_pod_stages(pod)]
        if stages is not None
    ]
    if not measured or revision is None:
        return previous
    downloads = [download for _, download, _, _ in measured if download is not None]
    return ColdStartStatus(
        revision=revision,
        pods=len(measured),
        scheduling_seconds=statistics.median(stages[0] for stages in measured),
        download_seconds=statistics.median(downloads) if downloads else None,
        startup_seconds=statistics.median(stages[2] for stages in measured),
        total_seconds=statistics.median(stages[3] for stages in measured),
        slowest_seconds=max(stages[3] for stages in measured),
    )
