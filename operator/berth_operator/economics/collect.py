"""The economics' only I/O: run each window's queries against Prometheus, all at one evaluation time.

Every failure to get an answer -- Prometheus unreachable or slow, a query refused, a reply of the
wrong shape -- becomes `EconomicsUnavailable` with Prometheus' own words, on which the figures are
left out (never zeros). The day-long subquery is heavier than the autoscaler's queries, so the
timeout is longer than its 5 s.
"""

from __future__ import annotations

import asyncio

from berth_operator.autoscaling.connection import PrometheusAccess
from berth_operator.autoscaling.errors import PrometheusError
from berth_operator.autoscaling.prometheus import PrometheusClient
from berth_operator.autoscaling.samples import InstantQuerier
from berth_operator.autoscaling.signals import SeriesSelector
from berth_operator.economics.figures import EconomicsUnavailable, WindowReadings
from berth_operator.economics.histograms import buckets_from_samples
from berth_operator.economics.queries import WINDOWS, Window, window_queries

QUERY_TIMEOUT_SECONDS = 20.0
"""Seconds one economics query may take end to end; default 20 s, a third of the 60 s interval."""


async def collect_readings(
    querier: InstantQuerier,
    selector: SeriesSelector,
    windows: tuple[Window, ...] = WINDOWS,
    at: float | None = None,
) -> dict[Window, WindowReadings] | EconomicsUnavailable:
    """Every window's queries, concurrently, evaluated at epoch second `at` (Prometheus' now if None)."""
    planned = [(window, window_queries(selector, window)) for window in windows]
    try:
        answers = await asyncio.gather(
            *(
                asyncio.gather(*(querier.query(promql, at) for promql in queries.values()))
                for _, queries in planned
            )
        )
        readings = {}
        for (window, queries), results in zip(planned, answers, strict=True):
            by_name = dict(zip(queries, results, strict=True))
            readings[window] = WindowReadings(
                replicas_mean=by_name["replicas_mean"].single_value(),
                output_tokens=by_name["output_tokens"].single_value(),
                ttft_buckets=buckets_from_samples(by_name["ttft_buckets"].samples),
                itl_buckets=buckets_from_samples(by_name["itl_buckets"].samples),
            )
    except PrometheusError as error:
        return EconomicsUnavailable(str(error))
    return readings


async def read_economics(
    prometheus: PrometheusAccess | str,
    selector: SeriesSelector,
    at: float | None = None,
    timeout_seconds: float = QUERY_TIMEOUT_SECONDS,
) -> dict[Window, WindowReadings] | EconomicsUnavailable:
    """`collect_readings` against `prometheus` (its URL and credentials), each query within
    `timeout_seconds`."""
    try:
        client = PrometheusClient(prometheus, timeout_seconds=timeout_seconds)
    except ValueError as error:
        return EconomicsUnavailable(str(error))
    async with client:
        return await collect_readings(client, selector, at=at)
