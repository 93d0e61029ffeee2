"""Reading one revision's serving from Prometheus: the I/O beside the pure `analysis`.

Why apart: `analysis` builds the PromQL and judges; this runs the queries through any
`InstantQuerier` (the autoscaler's `PrometheusClient`, or an in-memory stand-in in tests), so the
judgement stays testable without a server. Failures are not swallowed here: a `PrometheusError`
propagates, and the caller treats it as missing metrics (an Inconclusive step, never a Pass).
"""

from __future__ import annotations

import asyncio

from berth_operator.autoscaling.samples import InstantQuerier
from berth_operator.autoscaling.signals import SeriesSelector
from berth_operator.rollout.analysis import (
    REVISION_SERIES_LABEL,
    RevisionMetrics,
    parse_revision_metrics,
    revision_queries,
)


async def query_revision(
    querier: InstantQuerier,
    selector: SeriesSelector,
    revision: str,
    window_seconds: int,
    *,
    revision_label: str = REVISION_SERIES_LABEL,
    at: float | None = None,
) -> RevisionMetrics | None:
    """What `revision` of the deployment `selector` picks served over the last `window_seconds`
    (evaluated at epoch second `at`, Prometheus' now if None); None when it has no series at all.
    The queries run concurrently. Raises `PrometheusError` when any of them fails.

    An empty `revision` (not known yet) is None without a query: the matcher `label=""` would
    select the series that carry no revision label at all, which belong to no revision."""
    if not revision:
        return None
    queries = revision_queries(selector, revision, window_seconds, revision_label)
    results = await asyncio.gather(*(querier.query(promql, at) for promql in queries.values()))
    values = {name: result.single_value() for name, result in zip(queries, results, strict=True)}
    return parse_revision_metrics(values)
