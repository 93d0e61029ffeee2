"""A configuration the runtime refuses shows in status with the runtime's own words, not as a bare
crash loop: tensorParallelSize 2 for SmolLM2-135M's GGUF file (9 attention heads; a GGUF checkpoint
runs on one rank) is a combination the CRD cannot judge, since it does not know the model; the
runtime in the pod refuses it before any weight loads (exit 2). The operator reads the kubelet's
termination message (the log's tail, as terminationMessagePolicy FallbackToLogsOnError asks) and
reports Degraded ConfigurationRefused with it, within seconds of the exit, and a Warning Event says
the same."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.local_model import local_model
from tests.integration.idep_reads import idep_status
from tests.integration.operator_process import OperatorProcess
from tests.integration.support import ClusterAccess, condition, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

NAME = "smol-tp2"
REFUSED_WITHIN_SECONDS = 120.0


def _refused(status: dict[str, Any]) -> dict[str, Any] | None:
    degraded = condition({"status": status}, "Degraded")
    if degraded is None or degraded.get("reason") != "ConfigurationRefused":
        return None
    return degraded


def test_a_tensor_parallel_size_the_model_does_not_allow_is_reported_with_the_runtimes_reason(
    bed: ClusterAccess, bed_namespace: str, bed_operator: OperatorProcess
) -> None:
    resource = local_model(
        NAME,
        runtime={"tensorParallelSize": 2},
        resources={"gpu": {"count": 0}, "cpu": "500m", "memory": "3Gi", "sharedMemorySize": "1Gi"},
    )
    started = time.monotonic()
    bed.apply(resource, namespace=bed_namespace)

    degraded = wait_for(
        lambda: _refused(idep_status(bed, bed_namespace, NAME)),
        REFUSED_WITHIN_SECONDS,
        "Degraded ConfigurationRefused",
    )
    print(f"\napply -> ConfigurationRefused: {time.monotonic() - started:.1f} s: {degraded['message']}")
    message = degraded["message"]
    assert "refused its configuration (exit code 2; restarting will not help)" in message, message
    assert "tensor_parallel_size=2" in message, message
    status = idep_status(bed, bed_namespace, NAME)
    assert status["phase"] == "Degraded", status
    ready = condition({"status": status}, "Ready")
    assert ready is not None and ready["status"] == "False" and ready["reason"] == "ConfigurationRefused"

    def warning() -> dict[str, Any] | None:
        events = bed.get("events", namespace=bed_namespace)
        return next(
            (
                event
                for event in events
                if event.get("reason") == "ConfigurationRefused"
                and event.get("type") == "Warning"
                and event["involvedObject"].get("name") == NAME
            ),
            None,
        )

    event = wait_for(warning, 30.0, "a ConfigurationRefused Warning Event")
    assert "tensor_parallel_size=2" in event["message"], event
