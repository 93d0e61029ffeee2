"""The Gateway API route and its per-revision Services, and the canary's weight on it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from berth_operator.api.rollout import RolloutSpec
from berth_operator.api.status import RolloutStatus
from berth_operator.builders import BuildContext
from berth_operator.builders.children import build_children
from berth_operator.builders.labels import REVISION_LABEL, revision_hash
from berth_operator.builders.route import TrafficSplit, build_http_route
from berth_operator.rollout.traffic import traffic_split

ContextFactory = Callable[..., BuildContext]
ROUTE = {
    "serving": {
        "httpRoute": {
            "parentRefs": [{"name": "public", "namespace": "gateways"}],
            "hostnames": ["chat.example.com"],
        }
    }
}


def test_without_a_route_spec_no_route_children(make_context: ContextFactory) -> None:
    kinds = [(child["kind"], child["metadata"]["name"]) for child in build_children(make_context())]
    assert ("HTTPRoute", "chat") not in kinds and ("Service", "chat-stable") not in kinds


def test_outside_a_canary_the_route_sends_everything_to_the_service(make_context: ContextFactory) -> None:
    context = make_context(ROUTE)
    route = build_http_route(context, None)
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1" and route["kind"] == "HTTPRoute"
    assert route["metadata"]["ownerReferences"][0]["uid"] == "0000-1111"
    assert route["spec"]["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public", "namespace": "gateways"}
    ]
    assert route["spec"]["hostnames"] == ["chat.example.com"]
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "chat", "port": 8000, "weight": 1}]


def test_during_a_canary_the_route_weights_the_two_revisions(make_context: ContextFactory) -> None:
    context = make_context(ROUTE)
    route = build_http_route(context, TrafficSplit("stable0001", 25))
    assert route["spec"]["rules"][0]["backendRefs"] == [
        {"name": "chat-stable", "port": 8000, "weight": 75},
        {"name": "chat-canary", "port": 8000, "weight": 25},
    ]
    children = {
        (c["kind"], c["metadata"]["name"]): c
        for c in build_children(context, split=TrafficSplit("stable0001", 25))
    }
    assert children[("Service", "chat-stable")]["spec"]["selector"][REVISION_LABEL] == "stable0001"
    assert children[("Service", "chat-canary")]["spec"]["selector"]["berth.dev/track"] == "canary"


def test_the_route_is_outside_the_revision(make_context: ContextFactory) -> None:
    assert revision_hash(make_context(ROUTE)) == revision_hash(make_context())


CANARY = RolloutSpec.model_validate({"strategy": "Canary", "steps": [{"replicas": 1}, {"percent": 50}]})


@pytest.mark.parametrize(
    ("phase", "step", "ready", "share", "weight"),
    [
        ("Stable", None, None, None, None),
        ("Promoting", 1, 2, 50, None),
        ("Canary", 0, 0, 0, 0),  # nothing ready: no traffic to the new revision
        ("Canary", 1, 1, 25, 25),  # until the step's replicas are ready: their share of ready ones
        ("Canary", 0, 1, 20, 25),  # step 1 (1 of 4 replicas) ready: exactly its share
        ("Canary", 1, 2, 40, 50),
    ],
)
def test_the_canary_weight_follows_the_step_once_its_replicas_are_ready(
    phase: str, step: int | None, ready: int | None, share: int | None, weight: int | None
) -> None:
    state = RolloutStatus.model_validate(
        {
            "phase": phase,
            "stableRevision": "stable0001",
            "canaryRevision": "target0002",
            "currentStep": step,
            "canaryReadyReplicas": ready,
            "canarySharePercent": share,
            "stepStartTime": datetime(2026, 12, 6, tzinfo=UTC).isoformat(),
        }
    )
    split = traffic_split(CANARY, state, desired=4)
    assert (split.canary_weight if split else None) == weight
