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


class PrometheusAccessDenied(PrometheusError):
    """Prometheus (or the proxy in front of it) refused the operator: HTTP 401 (no or wrong
    credentials) or 403 (credentials without the permission to query). `hint` names the setting to fix;
    no credential ever appears in the message."""

    def __init__(self, url: str, status: int, detail: str, hint: str) -> None:
        reason = (
            "401 Unauthorized" if status == 401 else f"{status} Forbidden" if status == 403 else str(status)
        )
        super().__init__(f"Prometheus at {url} refused the request: HTTP {reason}{detail}; {hint}")
        self.url = url
        self.status = status
        self.hint = hint


class PrometheusTlsFailed(PrometheusUnavailable):
    """The TLS handshake with Prometheus failed: an untrusted certificate, a certificate for another
    name, a CA bundle that does not load, or a server that does not speak TLS at all."""


class PrometheusCredentialsUnreadable(PrometheusError):
    """A credential the operator reads from its own filesystem (a bearer token or password file) could
    not be read, or is empty; the message names the file and the setting, never the contents."""

    def __init__(self, what: str, path: str, detail: str, setting: str) -> None:
        super().__init__(f"cannot read the Prometheus {what} from {path}: {detail}; check {setting}")
        self.path = path
        self.setting = setting
