"""The test bed's Prometheus, queried over its HTTP API: instant vectors by pod, scalars, and range
series -- what the SLA e2e test reads to check that the operator acted on what Prometheus showed."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from typing import Any


class Prometheus:
    """The bed's Prometheus, queried over its HTTP API."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _get(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]["result"]

    def vector(self, promql: str) -> dict[str, float]:
        """An instant query's series by their `pod` label."""
        return {
            series["metric"].get("pod", ""): float(series["value"][1])
            for series in self._get("/api/v1/query", query=promql)
        }

    def scalar(self, promql: str) -> float | None:
        result = self._get("/api/v1/query", query=promql)
        value = float(result[0]["value"][1]) if result else None
        return None if value is None or value != value else value

    def series(self, promql: str, start: float, end: float, step: float) -> list[tuple[float, float]]:
        """(time, value) points of a one-series range query; NaN points are left out."""
        result = self._get("/api/v1/query_range", query=promql, start=start, end=end, step=step)
        if not result:
            return []
        return [(float(t), float(v)) for t, v in result[0]["values"] if v != "NaN"]
