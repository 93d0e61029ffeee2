"""Events name the InferenceDeployment they are about and stay within the API server's limits."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from berth_operator.kube import InMemoryKubeApi, record_event
from berth_operator.kube.events import MESSAGE_LIMIT, event_manifest
from berth_operator.kube.kinds import EVENT

OWNER = {
    "apiVersion": "berth.dev/v1alpha1",
    "kind": "InferenceDeployment",
    "metadata": {"name": "chat", "namespace": "ml", "uid": "u1", "resourceVersion": "7"},
}
NOW = datetime(2026, 1, 1, 12, 0, 5, tzinfo=UTC)


def test_event_refers_to_its_object() -> None:
    event = event_manifest(OWNER, "Warning", "Unschedulable", "no GPUs", NOW)
    assert event["involvedObject"] == {
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "InferenceDeployment",
        "name": "chat",
        "namespace": "ml",
        "uid": "u1",
        "resourceVersion": "7",
    }
    assert (event["type"], event["reason"], event["message"]) == ("Warning", "Unschedulable", "no GPUs")
    assert event["metadata"] == {"generateName": "chat.", "namespace": "ml"}
    assert event["firstTimestamp"] == event["lastTimestamp"] == "2026-01-01T12:00:05Z"


def test_long_messages_are_truncated() -> None:
    event = event_manifest(OWNER, "Warning", "CrashLoopBackOff", "x" * 5000, NOW)
    assert len(event["message"]) == MESSAGE_LIMIT
    assert event["message"].endswith("...")


async def test_record_event_creates_it_in_the_owners_namespace() -> None:
    api = InMemoryKubeApi()
    await record_event(api, OWNER, "Normal", "Ready", "1/1 replicas ready", NOW)
    (stored,) = [obj for key, obj in api.objects.items() if key[1] == EVENT.kind]
    assert stored["metadata"]["namespace"] == "ml"
    assert stored["reason"] == "Ready"


async def test_an_event_that_cannot_be_written_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    api = InMemoryKubeApi(forbidden_kinds={EVENT.kind})
    assert await record_event(api, OWNER, "Normal", "Ready", "1/1 replicas ready", NOW) is False
    assert "could not record Event Ready ml/chat" in caplog.text
