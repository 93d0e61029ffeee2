"""The autoscaler's evaluation against the in-memory API and a real local HTTP Prometheus stand-in:
what it writes (its share of status, under its own field manager) and which Events. The loop that
runs it, and its registration, are in test_autoscaling_loop.py."""

from __future__ import annotations

import socket
from typing import Any

from handler_support import Clock, answer, deployment_replicas, resource_status, set_deployment, store
from prometheus_client import CollectorRegistry
from prometheus_stub import PrometheusStub

from berth_operator.handlers.autoscaling import evaluate
from berth_operator.handlers.context import OperatorContext
from berth_operator.handlers.reconcile import reconcile
from berth_operator.kube import AUTOSCALER_FIELD_MANAGER, FIELD_MANAGER, InMemoryKubeApi
from berth_operator.kube.kinds import DEPLOYMENT, EVENT, INFERENCE_DEPLOYMENT
from berth_operator.kube.status import ROLLOUT_FIELD_MANAGER
from berth_operator.metrics import OperatorMetrics

HEALTHY: dict[str, float | str] = {
    "ttft_p95_seconds": 0.2,
    "itl_p95_seconds": 0.02,
    "waiting_requests": 0,
    "running_requests": 4,
    "running_requests_average": 4,
    "kv_cache_usage": 0.2,
    "prompt_tokens_per_second": 0,
    "generation_tokens_per_second": 400,
    "requests_per_second": 1,
    "waiting_growth_per_second": 0,
    "reporting_replicas": 1,
    "serving_replicas_average": 1,
    "sample_age_seconds": 3,
}
BREACHED = {
    **HEALTHY,
    "ttft_p95_seconds": 0.9,
    "waiting_requests": 20,
    "generation_tokens_per_second": 1800,
    "requests_per_second": 4.5,
}


def autoscaling_status(api: InMemoryKubeApi) -> dict[str, Any]:
    stored = api.stored(INFERENCE_DEPLOYMENT, "ml", "chat")
    assert stored is not None
    return dict(stored["status"]["autoscaling"])


def condition(api: InMemoryKubeApi, condition_type: str) -> dict[str, Any]:
    stored = api.stored(INFERENCE_DEPLOYMENT, "ml", "chat")
    assert stored is not None
    return next(c for c in stored["status"]["conditions"] if c["type"] == condition_type)


def events(api: InMemoryKubeApi) -> list[tuple[str, str]]:
    return [
        (event["type"], event["reason"])
        for (_, kind, _, _), event in api.objects.items()
        if kind == EVENT.kind
    ]


async def test_a_breach_is_recorded_then_applied_with_reason_condition_and_event(
    api: InMemoryKubeApi, context: OperatorContext, stub: PrometheusStub
) -> None:
    store(api, stub.url)
    answer(stub, BREACHED)
    decision = await evaluate(context, "ml", "chat")
    assert decision is not None and decision.apply
    assert resource_status(api)["desiredReplicas"] == 2  # the record, under the operator's manager
    assert deployment_replicas(api) == 2  # applied where the decision is made
    status = autoscaling_status(api)
    assert "desiredReplicas" not in status
    assert status["lastDecision"]["from"] == 1 and status["lastDecision"]["to"] == 2
    assert "TTFT p95 900ms > 500ms" in status["lastDecision"]["reason"]
    assert status["signals"]["ttftP95Milliseconds"] == 900.0
    assert status["capacity"]["ceilingTokensPerSecond"] == 1800.0
    assert status["lastEvaluationTime"] == "2027-01-15T08:00:00Z"
    assert condition(api, "SLOMet")["status"] == "False"
    assert condition(api, "MetricsUnavailable")["status"] == "False"
    assert ("Normal", "ScaledUp") in events(api)
    assert ("Normal", "ReplicasReverted") not in events(api)
    writes = [(w.kind, w.subresource, w.field_manager) for w in api.writes if w.verb == "apply"]
    assert writes == [
        ("InferenceDeployment", "status", FIELD_MANAGER),  # the record first
        # The Deployment goes through the rollout plan, whose first record this is (no reconcile ran).
        ("InferenceDeployment", "status", ROLLOUT_FIELD_MANAGER),
        ("Deployment", None, FIELD_MANAGER),
        ("InferenceDeployment", "status", AUTOSCALER_FIELD_MANAGER),
    ]


async def test_prometheus_down_holds_reports_once_and_recovers(
    api: InMemoryKubeApi, context: OperatorContext, clock: Clock, stub: PrometheusStub
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    store(api, dead_url, replicas=3)
    for _ in range(2):
        decision = await evaluate(context, "ml", "chat")
        clock.advance(10)
        assert decision is not None and decision.replicas == 3 and not decision.apply
    unavailable = condition(api, "MetricsUnavailable")
    assert unavailable["status"] == "True"
    assert "holding 3 replicas" in unavailable["message"]
    assert condition(api, "SLOMet")["status"] == "Unknown"
    assert events(api).count(("Warning", "MetricsUnavailable")) == 1
    assert deployment_replicas(api) == 3

    stored = api.stored(INFERENCE_DEPLOYMENT, "ml", "chat")
    assert stored is not None
    stored["spec"]["autoscaling"]["prometheus"]["url"] = stub.url  # Prometheus is back
    api.put(stored)
    answer(stub, HEALTHY)
    await evaluate(context, "ml", "chat")
    assert condition(api, "MetricsUnavailable")["status"] == "False"
    assert ("Normal", "MetricsRestored") in events(api)


async def test_no_prometheus_configured_is_metrics_unavailable(
    api: InMemoryKubeApi, context: OperatorContext
) -> None:
    store(api, None)
    await evaluate(context, "ml", "chat")
    assert "BERTH_PROMETHEUS_URL" in condition(api, "MetricsUnavailable")["message"]


async def test_dry_run_reports_the_would_be_change_once_and_keeps_desired_replicas(
    api: InMemoryKubeApi, context: OperatorContext, clock: Clock, stub: PrometheusStub
) -> None:
    store(api, stub.url, dryRun=True)
    answer(stub, BREACHED)
    for _ in range(3):
        decision = await evaluate(context, "ml", "chat")
        clock.advance(10)
        assert decision is not None and not decision.apply
    status = autoscaling_status(api)
    assert status["lastDecision"]["dryRun"] is True
    assert status["lastDecision"]["reason"].startswith("dry run: would scale 1 -> 2")
    assert len(status["history"]) == 1
    assert events(api).count(("Normal", "DryRunScale")) == 1
    assert deployment_replicas(api) == 1
    assert "desiredReplicas" not in resource_status(api)  # nothing recorded: the count stays spec.replicas


async def test_a_hand_edit_of_the_deployment_is_set_back_never_adopted(
    api: InMemoryKubeApi, context: OperatorContext, clock: Clock, stub: PrometheusStub
) -> None:
    store(api, stub.url)
    answer(stub, HEALTHY)
    await evaluate(context, "ml", "chat")
    set_deployment(api, 4)  # kubectl scale deployment chat --replicas=4
    clock.advance(10)
    decision = await evaluate(context, "ml", "chat")
    assert decision is not None and decision.replicas == 1 and not decision.apply
    assert "holding 1" in decision.reason
    assert deployment_replicas(api) == 1
    assert events(api).count(("Normal", "ReplicasReverted")) == 1
    assert autoscaling_status(api)["history"] == []


async def test_the_decision_survives_an_operator_restart(
    api: InMemoryKubeApi, context: OperatorContext, clock: Clock, stub: PrometheusStub
) -> None:
    store(api, stub.url)
    answer(stub, BREACHED)
    await evaluate(context, "ml", "chat")
    assert deployment_replicas(api) == 2
    restarted = OperatorContext(
        api=api, settings=context.settings, metrics=OperatorMetrics(CollectorRegistry()), clock=clock
    )
    await reconcile(restarted, api.stored(INFERENCE_DEPLOYMENT, "ml", "chat") or {})  # Kopf's resume
    assert deployment_replicas(api) == 2
    answer(stub, HEALTHY)
    clock.advance(10)
    decision = await evaluate(restarted, "ml", "chat")
    assert decision is not None and decision.replicas == 2 and "holding 2" in decision.reason


async def test_an_evaluation_waits_for_the_reconcile_to_accept_the_spec(
    api: InMemoryKubeApi, context: OperatorContext, stub: PrometheusStub
) -> None:
    store(api, stub.url)
    answer(stub, BREACHED)
    stored = api.stored(INFERENCE_DEPLOYMENT, "ml", "chat")
    assert stored is not None
    stored["metadata"]["generation"] = 2  # a spec edit the reconcile has not checked yet
    api.put(stored)
    writes = len(api.writes)
    assert await evaluate(context, "ml", "chat") is None
    assert len(api.writes) == writes


async def test_a_deployment_that_is_not_the_resources_is_never_written(
    api: InMemoryKubeApi, context: OperatorContext, stub: PrometheusStub
) -> None:
    store(api, stub.url)
    answer(stub, BREACHED)
    foreign = api.stored(DEPLOYMENT, "ml", "chat")
    assert foreign is not None
    foreign["metadata"]["ownerReferences"] = []
    api.put(foreign)
    before = api.stored(DEPLOYMENT, "ml", "chat")
    assert await evaluate(context, "ml", "chat") is None
    assert api.stored(DEPLOYMENT, "ml", "chat") == before
    assert not [w for w in api.writes if w.kind == "Deployment"]


async def test_nothing_is_written_when_autoscaling_is_off_or_there_is_no_deployment(
    api: InMemoryKubeApi, context: OperatorContext, stub: PrometheusStub
) -> None:
    store(api, stub.url, enabled=False)
    assert await evaluate(context, "ml", "chat") is None
    store(api, stub.url)
    api.remove(
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "chat", "namespace": "ml"}}
    )
    assert await evaluate(context, "ml", "chat") is None
    assert await evaluate(context, "ml", "absent") is None
    assert not [w for w in api.writes if w.subresource == "status"]


async def test_slo_met_dates_the_breach_across_evaluations(
    api: InMemoryKubeApi, context: OperatorContext, clock: Clock, stub: PrometheusStub
) -> None:
    store(api, stub.url, replicas=2)
    set_deployment(api, 2, ready=1)  # one replica still starting: the breach adds nothing meanwhile
    answer(stub, BREACHED)
    await evaluate(context, "ml", "chat")
    clock.advance(10)
    decision = await evaluate(context, "ml", "chat")
    slo_met = condition(api, "SLOMet")
    assert slo_met["status"] == "False"
    assert slo_met["lastTransitionTime"] == "2027-01-15T08:00:00Z"
    assert decision is not None and "breached for 10s" in decision.reason
    assert "TTFT p95 900ms > 500ms" in slo_met["message"]
