"""Hostile InferenceDeployments on a real control plane: admission refuses what it can know, naming
the field; what it cannot know (pod validation, missing objects) shows in status with the cause within
seconds, with an Event -- never a blank status, a retry loop in the log, or a touched object.

The cases are the table in hostile_specs.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.hostile_specs import REFUSED, REPORTED, Refused
from tests.integration.operator_process import OperatorProcess
from tests.integration.support import ClusterAccess, KubectlError, condition, wait_for

pytestmark = pytest.mark.integration

STATUS_SECONDS = 30.0


def _resource(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "InferenceDeployment",
        "metadata": {"name": name},
        "spec": spec,
    }


@pytest.fixture(scope="module")
def refusal_namespace(crds: ClusterAccess) -> Iterator[str]:
    name = f"hostile-admission-{int(time.time())}"
    crds.kubectl("create", "namespace", name)
    yield name
    crds.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


@pytest.mark.parametrize("case", REFUSED, ids=[case.case for case in REFUSED])
def test_admission_refuses_it_naming_the_field(
    crds: ClusterAccess, refusal_namespace: str, case: Refused
) -> None:
    with pytest.raises(KubectlError) as refused:
        crds.apply(_resource(case.case, case.spec), namespace=refusal_namespace)
    message = refused.value.stderr
    assert case.field in message, message
    assert '<nil>: Invalid value: "object"' not in message  # a rule that cannot say its field
    assert "modulus by zero" not in message
    assert crds.get_or_none("inferencedeployment", case.case, namespace=refusal_namespace) is None


def test_a_bad_name_is_refused_on_the_name_field(crds: ClusterAccess, refusal_namespace: str) -> None:
    with pytest.raises(KubectlError) as refused:
        crds.apply(
            _resource("Chat_Model", {"model": {"name": "m", "source": "hf://o/m"}}),
            namespace=refusal_namespace,
        )
    assert "metadata.name" in refused.value.stderr
    assert "<nil>" not in refused.value.stderr


def _events(cluster: ClusterAccess, namespace: str, name: str) -> list[dict[str, Any]]:
    events = cluster.get("events", namespace=namespace)
    return [event for event in events if event["involvedObject"]["name"] == name]


def test_what_only_the_operator_can_find_out_is_in_status_with_an_event(
    crds: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    for case in REPORTED:
        crds.apply(_resource(case.case, case.spec), namespace=namespace)

    started = time.monotonic()
    for case in REPORTED:

        def reported(case: Any = case) -> dict[str, Any] | None:
            found = condition(crds.get("inferencedeployment", case.case, namespace=namespace), case.condition)
            expected = "False" if case.condition in ("Accepted", "Ready") else "True"
            return found if found and found["status"] == expected and found["reason"] == case.reason else None

        remaining = max(STATUS_SECONDS - (time.monotonic() - started), 1.0)
        found = wait_for(reported, remaining, f"{case.case}: {case.condition} with reason {case.reason}")
        assert case.fragment in found["message"], (case.case, found["message"])
        status = crds.get("inferencedeployment", case.case, namespace=namespace)["status"]
        assert status.get("phase") in ("Failed", "Degraded", "Pending"), (case.case, status)
        warnings = [event for event in _events(crds, namespace, case.case) if event["type"] == "Warning"]
        assert any(event["reason"] == case.reason for event in warnings), (case.case, warnings)

    # Reported, then retried with a growing delay: not a loop of tracebacks in the operator's log.
    log = operator.log()
    assert "Traceback" not in log, log[-3000:]
