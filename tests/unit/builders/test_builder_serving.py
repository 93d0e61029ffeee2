"""Which pods serve: ready, non-terminating endpoints of the Service's slices, each pod once, and only
pods that exist and are not being deleted."""

from __future__ import annotations

from typing import Any

import pytest

from berth_operator.builders.serving import endpoint_slice_selector, serving_pods


def _pod(name: str, uid: str | None = None, deleting: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, **({"uid": uid} if uid else {})}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": metadata, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


def _endpoint(
    pod: str, ready: bool | None = True, terminating: bool = False, **target: Any
) -> dict[str, Any]:
    conditions: dict[str, Any] = {"terminating": terminating}
    if ready is not None:
        conditions["ready"] = ready
    return {
        "addresses": ["10.0.0.1"],
        "conditions": conditions,
        "targetRef": {"kind": "Pod", "name": pod, **target},
    }


def _slice(*endpoints: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "chat-x"}, "endpoints": list(endpoints)}


PODS = [_pod("a"), _pod("b"), _pod("c")]


@pytest.mark.parametrize(
    ("slices", "pods", "serving"),
    [
        pytest.param([_slice(*(_endpoint(n) for n in "abc"))], PODS, ["a", "b", "c"], id="all-routed"),
        pytest.param([_slice(_endpoint("a"), _endpoint("b"))], PODS, ["a", "b"], id="lost-node-dropped"),
        pytest.param([], PODS, [], id="no-slices-yet"),
        pytest.param([_slice()], PODS, [], id="slice-without-endpoints"),
        pytest.param(
            [_slice(_endpoint("a"), _endpoint("b", ready=False))], PODS, ["a"], id="not-ready-endpoint"
        ),
        pytest.param([_slice(_endpoint("a", ready=None))], PODS, [], id="unknown-readiness-is-not-counted"),
        pytest.param(
            [_slice(_endpoint("a"), _endpoint("b", terminating=True))], PODS, ["a"], id="terminating-endpoint"
        ),
        pytest.param(
            [_slice(_endpoint("a")), _slice(_endpoint("a"), _endpoint("b"))],
            PODS,
            ["a", "b"],
            id="pod-in-two-slices-counts-once",
        ),
        pytest.param(
            [_slice(_endpoint("a"), _endpoint("gone"))], PODS, ["a"], id="endpoint-of-a-deleted-pod"
        ),
        pytest.param(
            [_slice(_endpoint("a"), _endpoint("b"))],
            [_pod("a"), _pod("b", deleting=True)],
            ["a"],
            id="pod-being-deleted",
        ),
        pytest.param([_slice(_endpoint("a", uid="old"))], [_pod("a", uid="new")], [], id="same-name-new-pod"),
        pytest.param([_slice(_endpoint("a", uid="u1"))], [_pod("a", uid="u1")], ["a"], id="uid-matches"),
        pytest.param(
            [_slice({"addresses": ["10.0.0.9"], "conditions": {"ready": True}})],
            PODS,
            [],
            id="endpoint-without-pod",
        ),
    ],
)
def test_serving_pods(slices: list[dict[str, Any]], pods: list[dict[str, Any]], serving: list[str]) -> None:
    assert [pod["metadata"]["name"] for pod in serving_pods(slices, pods)] == serving


def test_slices_are_selected_by_service_name_and_berths_label() -> None:
    assert endpoint_slice_selector("chat") == (
        "kubernetes.io/service-name=chat,app.kubernetes.io/managed-by=berth"
    )
