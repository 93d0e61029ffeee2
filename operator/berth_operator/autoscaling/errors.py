"""Typed errors for talking to Prometheus, kept apart from the client so that modules which only
classify failures (signals, the policy's callers) need not import an HTTP library."""

from __future__ import annotations


class PrometheusError(Exception):
    """Any failure to obtain an answer from Prometheus; the autoscaler holds replicas on it."""


class PrometheusUnavailable(PrometheusError):
    """Prometheus could not be reached, timed out, or answered with a server error (5xx)."""

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"Prometheus at {url} is unavailable: {detail}")
        self.url = url
        self.detail = detail


class PrometheusQueryRejected(PrometheusError):
    """Prometheus refused the query (HTTP 4xx, e.g. `bad_data` for a PromQL syntax error)."""

    def __init__(self, query: str, error_type: str, message: str) -> None:
        super().__init__(f"Prometheus rejected query {query!r}: {error_type}: {message}")
        self.query = query
        self.error_type = error_type
        self.message = message


class PrometheusResponseInvalid(PrometheusError):
    """Prometheus answered, but not with the JSON shape its HTTP API documents."""

    def __init__(self, query: str, detail: str) -> None:
        super().__init__(f"Prometheus answered query {query!r} with an unexpected response: {detail}")
        self.query = query
        self.detail = detail
