"""The economics timer's look, on the in-memory API with a real local HTTP Prometheus stand-in: what
it writes (status.economics only, under berth-economics), for which resources, and what it says when
figures cannot be had. The arithmetic is tested pure in tests/unit/economics."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import kopf
import pytest
from prometheus_client import CollectorRegistry

from berth_operator.autoscaling.signals import SeriesSelector
from berth_operator.economics.queries import LAST_DAY, LAST_HOUR, Window, window_queries
from berth_operator.handlers.context import OperatorContext
from berth_operator.handlers.economics import (
    FIRST_LOOK_SECONDS,
    economics_timer,
    evaluate_economics,
    first_look_delay,
)
from berth_operator.kube import InMemoryKubeApi, KubeApiError
from berth_operator.kube.kinds import INFERENCE_DEPLOYMENT
from berth_operator.kube.status import ECONOMICS_FIELD_MANAGER
from berth_operator.metrics import OperatorMetrics
from berth_operator.settings import OperatorSettings
from tests.unit.autoscaling.prometheus_stub import PrometheusStub, serve_prometheus_stub, vector

InferenceDeploymentFactory = Callable[..., dict[str, Any]]
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)  # the conftest's clock
H100 = "NVIDIA-H100-80GB-HBM3"
ACCEPTED = {
    "type": "Accepted",
    "status": "True",
    "reason": "Applied",
    "message": "applied",
    "lastTransitionTime": "2026-01-01T11:00:00Z",
    "observedGeneration": 1,
}
SLO = {"slo": {"timeToFirstTokenP95Milliseconds": 500, "interTokenLatencyP95Milliseconds": 50}}


@pytest.fixture
def stub() -> Iterator[PrometheusStub]:
    with serve_prometheus_stub() as server:
        yield server


@pytest.fixture
def settings(stub: PrometheusStub) -> OperatorSettings:
    """The operator's Prometheus is the stand-in; H100s cost 2.5 per GPU-hour."""
    return OperatorSettings(
        runtime_image="registry.example/berth-runtime:test",
        prometheus_url=stub.url,
        gpu_hourly_prices=((H100, 2.5),),
        gpu_price_currency="USD",
    )


def _spec(**sections: Any) -> dict[str, Any]:
    spec = {
        "model": {"name": "chat-model", "source": "hf://org/chat", "revision": "abc"},
        "resources": {"gpu": {"count": 2, "product": H100}},
        "autoscaling": SLO,
        **sections,
    }
    ranks = spec["resources"]["gpu"]["count"]  # one GPU per tensor-parallel rank
    return {**spec, "runtime": {"tensorParallelSize": ranks}}


def _answer(stub: PrometheusStub, window: Window, replicas: float, tokens: float) -> None:
    """A window where 3/4 of the requests meet the TTFT target and 9/10 of the intervals the ITL one."""
    queries = window_queries(SeriesSelector("ml", "chat"), window)
    stub.replies[queries["replicas_mean"]] = vector(({}, replicas))
    stub.replies[queries["output_tokens"]] = vector(({}, tokens))
    stub.replies[queries["ttft_buckets"]] = vector(
        ({"le": "0.25"}, 100), ({"le": "0.5"}, 300), ({"le": "+Inf"}, 400)
    )
    stub.replies[queries["itl_buckets"]] = vector(
        ({"le": "0.025"}, 5000), ({"le": "0.05"}, 9000), ({"le": "+Inf"}, 10000)
    )


def _economics(api: InMemoryKubeApi) -> dict[str, Any]:
    stored = api.stored(INFERENCE_DEPLOYMENT, "ml", "chat")
    assert stored is not None
    return dict(stored["status"]["economics"])


async def test_figures_are_written_under_their_own_field_manager_even_without_autoscaling(
    api: InMemoryKubeApi,
    context: OperatorContext,
    inference_deployment: InferenceDeploymentFactory,
    stub: PrometheusStub,
) -> None:
    inference_deployment(_spec(), status={"conditions": [ACCEPTED]})  # autoscaling.enabled: false
    _answer(stub, LAST_HOUR, replicas=1.5, tokens=600_000)
    _answer(stub, LAST_DAY, replicas=1.0, tokens=12_000_000)

    written = await evaluate_economics(context, "ml", "chat")

    assert written == _economics(api)
    assert written["lastHour"] == {
        "windowSeconds": 3600,
        "replicaHours": 1.5,
        "gpuHours": 3.0,  # 1.5 replica-hours x 2 GPUs
        "outputTokens": 600000,
        "requests": 400,
        "cost": 7.5,  # 3 GPU-hours x 2.5
        "costPerMillionOutputTokens": 12.5,  # 7.5 / 0.6
        "ttftAttainmentPercent": 75.0,
        "itlAttainmentPercent": 90.0,
    }
    assert written["lastDay"]["gpuHours"] == 48.0 and written["lastDay"]["cost"] == 120.0
    assert (written["gpuHourlyPrice"], written["currency"], written["priceSource"]) == (
        2.5,
        "USD",
        "Operator",
    )
    assert written["time"] == "2026-01-01T12:00:00Z"
    assert "message" not in written
    writes = [(w.verb, w.subresource, w.field_manager) for w in api.writes]
    assert writes == [("apply", "status", ECONOMICS_FIELD_MANAGER)]
    # Every query was evaluated at the look's own time, so the windows end together.
    assert {query["time"][0] for query in stub.queries} == {f"{NOW.timestamp():.3f}"}
    assert len(stub.queries) == 8


async def test_the_spec_price_and_prometheus_override_the_operators(
    api: InMemoryKubeApi, context: OperatorContext, inference_deployment: InferenceDeploymentFactory
) -> None:
    with serve_prometheus_stub() as own:
        _answer(own, LAST_HOUR, replicas=1.0, tokens=1_000_000)
        _answer(own, LAST_DAY, replicas=1.0, tokens=1_000_000)
        autoscaling = {**SLO, "prometheus": {"url": own.url}}
        spec = _spec(autoscaling=autoscaling, cost={"gpuHourlyPrice": 4.0, "currency": "EUR"})
        inference_deployment(spec, status={"conditions": [ACCEPTED]})
        written = await evaluate_economics(context, "ml", "chat")
        assert len(own.queries) == 8
    assert written is not None
    assert (written["gpuHourlyPrice"], written["currency"], written["priceSource"]) == (4.0, "EUR", "Spec")
    assert written["lastHour"]["cost"] == 8.0 and written["lastHour"]["costPerMillionOutputTokens"] == 8.0


async def test_missing_metrics_and_price_leave_figures_out_and_say_why(
    api: InMemoryKubeApi,
    context: OperatorContext,
    inference_deployment: InferenceDeploymentFactory,
    stub: PrometheusStub,
) -> None:
    # The stub answers every unknown query with an empty vector: no series at all.
    spec = _spec(resources={"gpu": {"count": 1, "product": "NVIDIA-L4"}}, autoscaling={})
    inference_deployment(spec, status={"conditions": [ACCEPTED]})
    written = await evaluate_economics(context, "ml", "chat")
    assert written is not None
    assert "lastHour" not in written and "lastDay" not in written and "gpuHourlyPrice" not in written
    message = written["message"]
    assert "no GPU-hour price for NVIDIA-L4" in message
    assert "no TTFT target" in message and "no ITL target" in message
    assert "last hour: no vllm:num_requests_running series, so no figures for ml/chat" in message
    assert "last day: no vllm:num_requests_running series" in message


async def test_an_unreachable_prometheus_leaves_figures_out(
    api: InMemoryKubeApi, context: OperatorContext, inference_deployment: InferenceDeploymentFactory
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    inference_deployment(
        _spec(autoscaling={**SLO, "prometheus": {"url": dead}}), status={"conditions": [ACCEPTED]}
    )
    written = await evaluate_economics(context, "ml", "chat")
    assert written is not None and "lastHour" not in written
    assert written["message"].startswith(f"no figures: Prometheus at {dead} is unavailable")


async def test_without_prometheus_only_a_message_is_written_once(
    api: InMemoryKubeApi, inference_deployment: InferenceDeploymentFactory
) -> None:
    context = OperatorContext(
        api=api, settings=OperatorSettings(), metrics=OperatorMetrics(CollectorRegistry()), clock=lambda: NOW
    )
    inference_deployment(_spec(), status={"conditions": [ACCEPTED]})
    written = await evaluate_economics(context, "ml", "chat")
    assert written == {"message": _economics(api)["message"]}
    assert "no Prometheus to query" in written["message"]
    assert await evaluate_economics(context, "ml", "chat") is None  # unchanged: no second write
    assert len(api.writes) == 1


@pytest.mark.parametrize(
    "status",
    [
        None,  # the reconcile has not looked yet
        {"conditions": [{**ACCEPTED, "observedGeneration": 0}]},  # accepted an older generation
        {"conditions": [{**ACCEPTED, "status": "False", "reason": "InvalidSpec"}]},
    ],
)
async def test_nothing_is_written_for_a_spec_not_accepted_as_it_is(
    api: InMemoryKubeApi,
    context: OperatorContext,
    inference_deployment: InferenceDeploymentFactory,
    stub: PrometheusStub,
    status: dict[str, Any] | None,
) -> None:
    inference_deployment(_spec(), status=status)
    assert await evaluate_economics(context, "ml", "chat") is None
    assert api.writes == [] and stub.queries == []


async def test_a_resource_gone_is_left_alone(context: OperatorContext, api: InMemoryKubeApi) -> None:
    assert await evaluate_economics(context, "ml", "chat") is None
    assert api.writes == []


class _FailingApi(InMemoryKubeApi):
    async def get(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        raise KubeApiError(503, "ServiceUnavailable", "etcd is busy")


async def test_the_timer_outlives_an_api_error(context: OperatorContext) -> None:
    context.api = _FailingApi()
    memo = kopf.Memo(berth=context)
    await economics_timer(namespace="ml", name="chat", memo=memo)  # logged and counted, not raised
    errors = context.metrics.registry.get_sample_value(
        "berth_operator_reconcile_errors_total", {"reason": "api_503"}
    )
    assert errors == 1


def test_registration_registers_the_timer_under_a_stable_id_every_minute() -> None:
    # A fresh interpreter: what importing the registrations alone (python -m berth_operator) registers.
    probe = (
        "import kopf, berth_operator.handlers.registration\n"
        "for h in kopf.get_default_registry()._spawning.get_all_handlers():\n"
        "    print(h.id, getattr(h, 'interval', None))\n"
    )
    listed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "economics 60.0" in listed.splitlines()


def test_first_looks_are_spread_over_the_first_minute_and_stable() -> None:
    delays = [first_look_delay(namespace="ml", name=f"model-{n}") for n in range(200)]
    earliest, latest = FIRST_LOOK_SECONDS
    assert all(earliest <= delay < latest for delay in delays)
    assert max(delays) - min(delays) > 45  # spread, not bunched
    assert first_look_delay(namespace="ml", name="model-7") == delays[7]
