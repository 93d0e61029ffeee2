"""One window's figures and the status they become: the arithmetic table-driven, and every absent
figure absent (never zero) with the reason in the message."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from berth_operator.api import InferenceDeploymentSpec, InferenceDeploymentStatus
from berth_operator.autoscaling.signals import SeriesSelector
from berth_operator.economics.figures import (
    EconomicsUnavailable,
    LatencyTargets,
    WindowReadings,
    window_figures,
)
from berth_operator.economics.pricing import NoPrice, Price, resolve_price
from berth_operator.economics.queries import LAST_DAY, LAST_HOUR, WINDOWS, Window, window_queries
from berth_operator.economics.report import EconomicsInputs, economics_status, inputs_from_spec

INF = math.inf
NOW = datetime(2027, 3, 1, 9, 30, tzinfo=UTC)
DOCS = Path(__file__).resolve().parents[3] / "docs" / "economics.md"
# 900 requests: 600 with TTFT <= 0.5 s, 800 <= 1 s. 20000 intervals: 15000 <= 50 ms, 19000 <= 100 ms.
TTFT = ((0.25, 300.0), (0.5, 600.0), (1.0, 800.0), (INF, 900.0))
ITL = ((0.025, 5000.0), (0.05, 15000.0), (0.1, 19000.0), (INF, 20000.0))
TARGETS = LatencyTargets(ttft_seconds=0.5, itl_seconds=0.05)
PRICE = Price(2.5, "Operator", "USD")


@pytest.mark.parametrize(
    ("window", "readings", "gpus", "expected"),
    [
        # 1.5 replicas on average over the hour, 2 GPUs each: 3 GPU-hours, 7.5 at 2.5 per GPU-hour;
        # 500k tokens: 15 per million.
        (
            LAST_HOUR,
            WindowReadings(1.5, 500_000.0, TTFT, ITL),
            2,
            {"replica_hours": 1.5, "gpu_hours": 3.0, "cost": 7.5, "cost_per_million": 15.0},
        ),
        # The day: 0.25 replicas on average is 6 replica-hours; 8 GPUs each: 48 GPU-hours.
        (
            LAST_DAY,
            WindowReadings(0.25, 12_000_000.0, TTFT, ITL),
            8,
            {"replica_hours": 6.0, "gpu_hours": 48.0, "cost": 120.0, "cost_per_million": 10.0},
        ),
        # A replica the whole hour at one GPU: exactly 1 GPU-hour.
        (
            LAST_HOUR,
            WindowReadings(1.0, 2_500_000.0, TTFT, ITL),
            1,
            {"replica_hours": 1.0, "gpu_hours": 1.0, "cost": 2.5, "cost_per_million": 1.0},
        ),
    ],
)
def test_hours_cost_and_cost_per_million(
    window: Window, readings: WindowReadings, gpus: int, expected: dict[str, float]
) -> None:
    figures = window_figures(window, readings, gpus, PRICE, TARGETS)
    assert figures.replica_hours == pytest.approx(expected["replica_hours"])
    assert figures.gpu_hours == pytest.approx(expected["gpu_hours"])
    assert figures.cost == pytest.approx(expected["cost"])
    assert figures.cost_per_million_output_tokens == pytest.approx(expected["cost_per_million"])
    assert figures.output_tokens == readings.output_tokens
    assert figures.requests == 900.0
    assert figures.ttft_attainment == pytest.approx(600 / 900)
    assert figures.itl_attainment == pytest.approx(15000 / 20000)
    assert figures.notes == ()


@pytest.mark.parametrize(
    ("readings", "price", "targets", "absent", "note"),
    [
        (WindowReadings(None, None), PRICE, TARGETS, "all", "no vllm:num_requests_running series"),
        (WindowReadings(0.0, None), PRICE, TARGETS, "all", "no vllm:num_requests_running series"),
        (
            WindowReadings(1.0, None, TTFT, ITL),
            PRICE,
            TARGETS,
            "output_tokens cost_per_million_output_tokens",
            "no vllm:generation_tokens_total series",
        ),
        (
            WindowReadings(1.0, 0.2, TTFT, ITL),
            PRICE,
            TARGETS,
            "cost_per_million_output_tokens",
            "no output tokens, so no cost per million",
        ),
        (
            WindowReadings(1.0, 1e6, TTFT, ITL),
            NoPrice("why"),
            TARGETS,
            "cost cost_per_million_output_tokens",
            None,
        ),
        (
            WindowReadings(1.0, 1e6, (), ITL),
            PRICE,
            TARGETS,
            "ttft_attainment requests",
            "no vllm:time_to_first_token_seconds_bucket series",
        ),
        (
            WindowReadings(1.0, 1e6, ((0.5, 0.0), (INF, 0.0)), ITL),
            PRICE,
            TARGETS,
            "ttft_attainment",
            "no requests with a first token observed",
        ),
        (
            WindowReadings(1.0, 1e6, TTFT, ((INF, 0.0),)),
            PRICE,
            TARGETS,
            "itl_attainment",
            "no inter-token intervals observed",
        ),
        # No target: no attainment, and no per-window note (the message says it once).
        (
            WindowReadings(1.0, 1e6, TTFT, ITL),
            PRICE,
            LatencyTargets(),
            "ttft_attainment itl_attainment",
            None,
        ),
    ],
)
def test_absent_figures_are_absent_with_a_reason(
    readings: WindowReadings, price: Price | NoPrice, targets: LatencyTargets, absent: str, note: str | None
) -> None:
    figures = window_figures(LAST_HOUR, readings, 1, price, targets)
    names = [
        "replica_hours",
        "gpu_hours",
        "output_tokens",
        "requests",
        "cost",
        "cost_per_million_output_tokens",
        "ttft_attainment",
        "itl_attainment",
    ]
    missing = set(names if absent == "all" else absent.split())
    for name in names:
        assert (getattr(figures, name) is None) is (name in missing), name
    if note is None:
        assert figures.notes == ()
    else:
        assert any(note in text for text in figures.notes), figures.notes


def test_a_target_above_the_highest_bucket_is_a_flagged_lower_bound() -> None:
    targets = LatencyTargets(ttft_seconds=5.0)
    figures = window_figures(LAST_HOUR, WindowReadings(1.0, 1e6, TTFT, ITL), 1, PRICE, targets)
    assert figures.ttft_attainment == pytest.approx(800 / 900)
    assert any(
        "above vllm:time_to_first_token_seconds's highest finite bucket (1s)" in n for n in figures.notes
    )


def test_cpu_replicas_count_replica_hours_but_no_gpu_hours_and_no_cost() -> None:
    spec = _spec(resources={"gpu": {"count": 0}}, cost={"gpuHourlyPrice": 3.0})
    price = resolve_price(spec, {}, None)
    assert isinstance(price, NoPrice) and "CPU replicas" in price.reason
    figures = window_figures(LAST_HOUR, WindowReadings(2.0, 1e6, TTFT, ITL), 0, price, TARGETS)
    assert (figures.replica_hours, figures.gpu_hours) == (2.0, 0.0)
    assert figures.cost is None and figures.cost_per_million_output_tokens is None


def _spec(**sections: Any) -> InferenceDeploymentSpec:
    base: dict[str, Any] = {
        "model": {"name": "chat", "source": "hf://org/chat"},
        "resources": {"gpu": {"count": 2, "product": "NVIDIA-H100-80GB-HBM3"}},
    }
    spec = {**base, **sections}
    ranks = spec["resources"].get("gpu", {}).get("count", 1)  # one GPU per tensor-parallel rank
    return InferenceDeploymentSpec.model_validate({**spec, "runtime": {"tensorParallelSize": max(ranks, 1)}})


OPERATOR_PRICES = {"NVIDIA-H100-80GB-HBM3": 2.49, "NVIDIA-A100-SXM4-80GB": 1.29}


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({}, Price(2.49, "Operator", "USD")),
        ({"cost": {"gpuHourlyPrice": 4.0}}, Price(4.0, "Spec", "USD")),
        ({"cost": {"gpuHourlyPrice": 0}}, Price(0.0, "Spec", "USD")),  # owned hardware: a real zero
        ({"cost": {"currency": "EUR"}}, Price(2.49, "Operator", "EUR")),
        ({"resources": {"gpu": {"count": 1, "product": "NVIDIA-L4"}}}, "no GPU-hour price for NVIDIA-L4"),
        ({"resources": {"gpu": {"count": 1}}}, "resources.gpu.product is unset"),
        (
            {"resources": {"gpu": {"count": 1}}, "cost": {"gpuHourlyPrice": 1.5}},
            Price(1.5, "Spec", "USD"),
        ),
        ({"resources": {"gpu": {"count": 0}}}, "CPU replicas"),
    ],
)
def test_which_price_applies(sections: dict[str, Any], expected: Price | str) -> None:
    price = resolve_price(_spec(**sections), OPERATOR_PRICES, "USD")
    if isinstance(expected, Price):
        assert price == expected
    else:
        assert isinstance(price, NoPrice) and expected in price.reason


def test_an_unpriced_product_names_the_priced_ones() -> None:
    price = resolve_price(_spec(resources={"gpu": {"count": 1, "product": "NVIDIA-L4"}}), OPERATOR_PRICES)
    assert isinstance(price, NoPrice)
    assert "(priced: NVIDIA-A100-SXM4-80GB, NVIDIA-H100-80GB-HBM3)" in price.reason
    assert "spec.cost.gpuHourlyPrice" in price.reason


def _inputs(**changes: Any) -> EconomicsInputs:
    values: dict[str, Any] = {
        "gpus_per_replica": 2,
        "gpu_product": "NVIDIA-H100-80GB-HBM3",
        "price": PRICE,
        "ttft_target_milliseconds": 500,
        "itl_target_milliseconds": 50,
        **changes,
    }
    return EconomicsInputs(**values)


def test_the_status_rounds_for_people_and_reads_back_through_the_models() -> None:
    readings = {
        LAST_HOUR: WindowReadings(1.0, 333_333.4, TTFT, ITL),
        LAST_DAY: WindowReadings(0.5, 4_000_000.0, TTFT, ITL),
    }
    wire = economics_status(readings, _inputs(), NOW)
    assert wire == {
        "time": "2027-03-01T09:30:00Z",
        "gpusPerReplica": 2,
        "gpuProduct": "NVIDIA-H100-80GB-HBM3",
        "gpuHourlyPrice": 2.5,
        "currency": "USD",
        "priceSource": "Operator",
        "ttftTargetMilliseconds": 500,
        "itlTargetMilliseconds": 50,
        "lastHour": {
            "windowSeconds": 3600,
            "replicaHours": 1.0,
            "gpuHours": 2.0,
            "outputTokens": 333333,
            "requests": 900,
            "cost": 5.0,
            "costPerMillionOutputTokens": 15.0,  # 5 / 0.3333334
            "ttftAttainmentPercent": 66.67,
            "itlAttainmentPercent": 75.0,
        },
        "lastDay": {
            "windowSeconds": 86400,
            "replicaHours": 12.0,
            "gpuHours": 24.0,
            "outputTokens": 4000000,
            "requests": 900,
            "cost": 60.0,
            "costPerMillionOutputTokens": 15.0,
            "ttftAttainmentPercent": 66.67,
            "itlAttainmentPercent": 75.0,
        },
    }
    parsed = InferenceDeploymentStatus.model_validate({"economics": wire}).economics
    assert parsed is not None and parsed.last_hour is not None
    assert parsed.last_hour.ttft_attainment_percent == 66.67


def test_the_message_names_every_absent_figure() -> None:
    readings = {
        LAST_HOUR: WindowReadings(0.0, None),
        LAST_DAY: WindowReadings(0.1, 0.0, TTFT, ()),
    }
    wire = economics_status(
        readings,
        _inputs(price=NoPrice("no GPU-hour price for NVIDIA-L4"), itl_target_milliseconds=None),
        NOW,
        who='ml/chat {namespace="ml",app_kubernetes_io_instance="chat"}',
    )
    assert "lastHour" not in wire
    assert wire["lastDay"]["replicaHours"] == 2.4
    assert "cost" not in wire["lastDay"] and "gpuHourlyPrice" not in wire and "priceSource" not in wire
    assert "itlAttainmentPercent" not in wire["lastDay"]
    assert wire["message"] == (
        "no GPU-hour price for NVIDIA-L4; "
        "no ITL target (spec.autoscaling.slo.interTokenLatencyP95Milliseconds), so no ITL attainment; "
        "last hour: no vllm:num_requests_running series, so no figures for "
        'ml/chat {namespace="ml",app_kubernetes_io_instance="chat"}'
    )


def test_prometheus_unavailable_leaves_every_figure_out() -> None:
    wire = economics_status(
        EconomicsUnavailable("Prometheus at http://p:9090 is unavailable: refused"), _inputs(), NOW
    )
    assert "lastHour" not in wire and "lastDay" not in wire
    assert wire["message"] == "no figures: Prometheus at http://p:9090 is unavailable: refused"
    assert wire["gpuHourlyPrice"] == 2.5  # what the figures would be computed with, still shown


def test_inputs_from_the_spec() -> None:
    spec = _spec(autoscaling={"slo": {"timeToFirstTokenP95Milliseconds": 800}})
    inputs = inputs_from_spec(spec, OPERATOR_PRICES, None)
    assert inputs.gpus_per_replica == 2 and inputs.gpu_product == "NVIDIA-H100-80GB-HBM3"
    assert inputs.price == Price(2.49, "Operator", None)
    assert inputs.targets == LatencyTargets(ttft_seconds=0.8, itl_seconds=None)


def test_queries_select_the_deployment_and_span_the_window() -> None:
    queries = window_queries(SeriesSelector("ml", "chat"), LAST_DAY)
    match = '{namespace="ml",app_kubernetes_io_instance="chat"}'
    assert queries == {
        "replicas_mean": f"avg_over_time((count(vllm:num_requests_running{match}) or vector(0))[86400s:60s])",
        "output_tokens": f"sum(increase(vllm:generation_tokens_total{match}[86400s]))",
        "ttft_buckets": f"sum by (le) (increase(vllm:time_to_first_token_seconds_bucket{match}[86400s]))",
        "itl_buckets": f"sum by (le) (increase(vllm:inter_token_latency_seconds_bucket{match}[86400s]))",
    }
    with pytest.raises(ValueError, match="not a whole number"):
        Window("odd", 100, 30)


@pytest.mark.parametrize("window", WINDOWS, ids=lambda window: window.label)
def test_docs_show_the_queries_as_run(window: Window) -> None:
    text = DOCS.read_text()
    for promql in window_queries(SeriesSelector("NAMESPACE", "NAME"), window).values():
        assert promql in text, promql
