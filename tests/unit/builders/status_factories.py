"""Inputs for the status builder's tests: a Deployment, runtime pods, the Service's EndpointSlices,
as the API server would return them, with only the fields the builder reads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from berth_operator.api import InferenceDeploymentStatus
from berth_operator.builders.labels import REVISION_LABEL
from berth_operator.builders.pod_problems import is_pod_ready
from berth_operator.builders.status import SpecVerdict, StatusInputs

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ACCEPTED = SpecVerdict(True, "Applied", "children applied")
TARGET = "rev-new"


def make_deployment(
    replicas: int, ready: int, updated: int, revision: str = TARGET, **extra: Any
) -> dict[str, Any]:
    return {
        "metadata": {"generation": 2, "labels": {REVISION_LABEL: revision}},
        "status": {
            "observedGeneration": 2,
            "replicas": replicas,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "availableReplicas": ready,
            **extra,
        },
    }


def make_pod(
    name: str, *, ready: bool = False, phase: str = "Running", revision: str = TARGET, **status: Any
) -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}, *status.pop("conditions", [])]
    return {
        "metadata": {"name": name, "labels": {REVISION_LABEL: revision}},
        "status": {"phase": phase, "conditions": conditions, **status},
    }


def make_endpoint_slice(*pods: dict[str, Any]) -> dict[str, Any]:
    """A slice of Service chat listing `pods` as ready endpoints, as the controller writes it."""
    return {
        "metadata": {"name": "chat-abcde", "labels": {"kubernetes.io/service-name": "chat"}},
        "endpoints": [
            {
                "addresses": ["10.0.0.1"],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "targetRef": {"kind": "Pod", "name": pod["metadata"]["name"]},
            }
            for pod in pods
        ],
    }


def routing_every_ready_pod(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The steady state: the Service routes to exactly the pods that say Ready."""
    return [make_endpoint_slice(*(pod for pod in pods if is_pod_ready(pod)))]


def make_inputs(
    deployment: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    desired: int = 2,
    verdict: SpecVerdict = ACCEPTED,
    previous: dict[str, Any] | None = None,
    endpoint_slices: list[dict[str, Any]] | None = None,
    pod_events: list[dict[str, Any]] | None = None,
) -> StatusInputs:
    return StatusInputs(
        name="chat",
        observed_generation=3,
        verdict=verdict,
        target_revision=TARGET,
        desired_replicas=desired,
        endpoint="http://chat.ml.svc:8000",
        deployment=deployment,
        pods=pods,
        endpoint_slices=routing_every_ready_pod(pods) if endpoint_slices is None else endpoint_slices,
        pod_events=pod_events or [],
        previous=InferenceDeploymentStatus.model_validate(previous or {}),
        now=NOW,
    )


def conditions_of(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
