"""The values an instant query yields, and the one-method protocol a querier offers, apart from
the HTTP client so that `signals` (and everything the pure policy imports) stays free of I/O."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from berth_operator.autoscaling.errors import PrometheusResponseInvalid


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector: its labels, value and the evaluation timestamp (epoch s)."""

    labels: Mapping[str, str]
    value: float
    timestamp: float


@dataclass(frozen=True)
class QueryResult:
    """The answer to one instant query. A scalar result becomes one sample with no labels."""

    query: str
    samples: tuple[Sample, ...]

    def single_value(self) -> float | None:
        """The value of a one-element result; None for an empty result or NaN (no data to compute
        from, e.g. a quantile over zero requests). More than one element is a selector bug."""
        if not self.samples:
            return None
        if len(self.samples) > 1:
            raise PrometheusResponseInvalid(
                self.query, f"expected at most one series, got {len(self.samples)}; aggregate the query"
            )
        value = self.samples[0].value
        return None if math.isnan(value) else value


class InstantQuerier(Protocol):
    """Anything that evaluates an instant PromQL query: `PrometheusClient`, or an in-memory stand-in."""

    async def query(self, promql: str, at: float | None = None) -> QueryResult: ...
