"""What the reconcile tests share (test_reconcile*.py): reads of the stored InferenceDeployment `chat`
in namespace `ml` (its status, conditions and Events) and a spec with autoscaling on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from berth_operator.kube import InMemoryKubeApi
from berth_operator.kube.kinds import INFERENCE_DEPLOYMENT

InferenceDeploymentFactory = Callable[..., dict[str, Any]]

AUTOSCALED = {
    "model": {"name": "m", "source": "hf://org/m"},
    "replicas": 2,
    "autoscaling": {
        "enabled": True,
        "minReplicas": 2,
        "maxReplicas": 4,
        "slo": {"timeToFirstTokenP95Milliseconds": 500},
    },
}


def resource_status(api: InMemoryKubeApi) -> dict[str, Any]:
    stored = api.stored(INFERENCE_DEPLOYMENT, "ml", "chat")
    assert stored is not None
    return stored.get("status", {})  # type: ignore[no-any-return]


def conditions(api: InMemoryKubeApi) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in resource_status(api).get("conditions", [])}


def events(api: InMemoryKubeApi) -> list[tuple[str, str]]:
    return [(obj["type"], obj["reason"]) for (_, kind, _, _), obj in api.objects.items() if kind == "Event"]
