"""A thin async client for Prometheus' HTTP API (`/api/v1/query`), built on httpx.

Why our own and not a library: the autoscaler needs exactly one call (an instant query), a hard
timeout on it, and failures sorted into types the caller can act on — unreachable or slow
(`PrometheusUnavailable`: hold replicas, retry next interval), a query Prometheus refuses
(`PrometheusQueryRejected`: a bug or a bad selector), or a reply of the wrong shape
(`PrometheusResponseInvalid`). Every failure is a `PrometheusError`; nothing else escapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx

from berth_operator.autoscaling.errors import (
    PrometheusQueryRejected,
    PrometheusResponseInvalid,
    PrometheusUnavailable,
)
from berth_operator.autoscaling.samples import QueryResult, Sample

DEFAULT_TIMEOUT_SECONDS = 5.0
"""Seconds one query may take end to end (connect + answer); default 5 s, well under one interval."""


def validate_base_url(url: str, field: str = "prometheus.url") -> str:
    """Return `url` without a trailing slash, or raise ValueError naming the field and the value."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"{field}: {url!r} is not a Prometheus base URL; expected http(s)://host[:port][/path]"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"{field}: {url!r} must not carry a query string or fragment")
    return url.rstrip("/")


class PrometheusClient:
    """Instant queries against one Prometheus server. Use as an async context manager, or call
    `aclose()`; pass `transport` only to route requests in-process."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not timeout_seconds > 0:
            raise ValueError(f"timeout_seconds: {timeout_seconds!r} must be a positive number of seconds")
        self.base_url = validate_base_url(base_url)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=httpx.Timeout(timeout_seconds), transport=transport
        )

    async def __aenter__(self) -> PrometheusClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def query(self, promql: str, at: float | None = None) -> QueryResult:
        """Evaluate `promql` as an instant query, at epoch second `at` (Prometheus' now if None)."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        try:
            response = await self._http.post("/api/v1/query", data=params)
        except httpx.TimeoutException as error:
            raise PrometheusUnavailable(self.base_url, f"timed out ({type(error).__name__})") from error
        except httpx.HTTPError as error:
            raise PrometheusUnavailable(self.base_url, f"{type(error).__name__}: {error}") from error
        if response.status_code >= 500:
            raise PrometheusUnavailable(self.base_url, f"HTTP {response.status_code}: {response.text[:200]}")
        body = _json_object(promql, response)
        if response.status_code >= 400 or body.get("status") != "success":
            raise PrometheusQueryRejected(
                promql,
                str(body.get("errorType", f"HTTP {response.status_code}")),
                str(body.get("error", response.text[:200])),
            )
        return QueryResult(promql, _parse_data(promql, body.get("data")))


def _json_object(promql: str, response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as error:
        raise PrometheusResponseInvalid(
            promql, f"HTTP {response.status_code}, body is not JSON: {response.text[:200]!r}"
        ) from error
    if not isinstance(body, dict):
        raise PrometheusResponseInvalid(promql, f"body is a JSON {type(body).__name__}, not an object")
    return body


def _parse_data(promql: str, data: object) -> tuple[Sample, ...]:
    if not isinstance(data, dict):
        raise PrometheusResponseInvalid(promql, "'data' is missing or not an object")
    result_type, result = data.get("resultType"), data.get("result")
    if result_type == "scalar":
        return (_parse_point(promql, {}, result),)
    if result_type != "vector":
        raise PrometheusResponseInvalid(promql, f"resultType {result_type!r}; expected 'vector' or 'scalar'")
    if not isinstance(result, list):
        raise PrometheusResponseInvalid(promql, "'data.result' of a vector is not a list")
    samples = []
    for element in result:
        if not isinstance(element, dict) or not isinstance(element.get("metric"), dict):
            raise PrometheusResponseInvalid(promql, f"vector element {element!r} has no 'metric' object")
        labels = {str(name): str(value) for name, value in element["metric"].items()}
        samples.append(_parse_point(promql, labels, element.get("value")))
    return tuple(samples)


def _parse_point(promql: str, labels: Mapping[str, str], point: object) -> Sample:
    if not isinstance(point, list) or len(point) != 2:
        raise PrometheusResponseInvalid(promql, f"sample {point!r} is not a [timestamp, value] pair")
    timestamp, value = point
    try:
        return Sample(labels=labels, value=float(value), timestamp=float(timestamp))
    except (TypeError, ValueError) as error:
        raise PrometheusResponseInvalid(promql, f"sample {point!r} does not hold numbers") from error
