"""API server errors as exceptions a handler can decide on (retry later, give up, report)."""

from __future__ import annotations

import json


class KubeApiError(Exception):
    """A request the API server answered with an error status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @classmethod
    def from_response(cls, status: int, body: bytes) -> KubeApiError:
        try:
            details = json.loads(body)
            reason, message = str(details.get("reason", "")), str(details.get("message", ""))
        except (ValueError, AttributeError):
            reason, message = "", body.decode(errors="replace")[:500]
        error_class = {404: NotFound, 403: Forbidden, 409: Conflict, 422: Invalid}.get(status, KubeApiError)
        return error_class(status, reason or "Error", message)


class NotFound(KubeApiError):
    """404: the object does not exist."""


class Forbidden(KubeApiError):
    """403: the operator's service account may not do this (RBAC)."""


class Conflict(KubeApiError):
    """409: a field-manager conflict or a stale resourceVersion."""


class Invalid(KubeApiError):
    """422: the object failed validation."""
