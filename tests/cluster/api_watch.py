"""List-then-watch of one kind of object, kept in step through resourceVersion and 410 Gone.

Why: the local service proxy must follow EndpointSlice changes as they happen (a pod turning
unready must stop getting connections within a second), which polling cannot promise. This is the
informer pattern in its smallest asyncio form: list, hand the whole list over, watch from the
list's resourceVersion with bookmarks, resume from the last version seen when a watch ends, and
list again when the server answers 410 Gone (the version is too old) or the connection fails.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

from tests.cluster.api_access import ApiServer

log = logging.getLogger(__name__)

WATCH_SECONDS = 240
"""How long one watch request lasts on the server (timeoutSeconds) before it is renewed."""
RETRY_SECONDS = 1.0
"""Pause before listing again after a failed list or watch."""

Reset = Callable[[list[dict[str, Any]]], Awaitable[None]]
"""Receives every object after a (re-)list; replaces whatever the receiver knew."""
Change = Callable[[str, dict[str, Any]], Awaitable[None]]
"""Receives one watch event: ADDED, MODIFIED or DELETED, and the object."""


class Gone(Exception):
    """The resourceVersion is too old to watch from (HTTP 410 or an ERROR event with code 410)."""


class ApiError(Exception):
    """The API server refused a request; the message carries its status and answer."""


class KubeClient:
    """The few API calls the local stand-ins need, over one HTTP connection pool."""

    def __init__(self, api: ApiServer) -> None:
        self._client = httpx.AsyncClient(
            base_url=api.server,
            verify=api.ssl_context(),
            headers=api.headers(),
            timeout=httpx.Timeout(10.0, read=WATCH_SECONDS + 30.0),
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def get(self, path: str, **params: str) -> dict[str, Any]:
        response = await self._client.get(path, params=params)
        if response.status_code != 200:
            raise ApiError(f"GET {path} answered {response.status_code}: {response.text[:500]}")
        return dict(response.json())

    async def merge_patch(self, path: str, patch: dict[str, Any], field_manager: str) -> int:
        """A JSON merge patch under ``field_manager``; returns the HTTP status (404: gone already)."""
        try:
            response = await self._client.patch(
                path,
                params={"fieldManager": field_manager},
                content=json.dumps(patch),
                headers={"Content-Type": "application/merge-patch+json"},
            )
        except httpx.HTTPError as error:
            raise ApiError(f"PATCH {path} failed: {type(error).__name__}: {error}") from error
        if response.status_code not in (200, 404):
            raise ApiError(f"PATCH {path} answered {response.status_code}: {response.text[:500]}")
        return response.status_code

    async def watch(
        self, path: str, resource_version: str, label_selector: str
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """The events of one watch request, bookmarks included; raises Gone on 410."""
        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
            "labelSelector": label_selector,
        }
        async with self._client.stream("GET", path, params=params) as response:
            if response.status_code == 410:
                raise Gone(path)
            if response.status_code != 200:
                body = (await response.aread()).decode(errors="replace")
                raise ApiError(f"watch {path} answered {response.status_code}: {body[:500]}")
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                event_type, obj = str(event["type"]), dict(event["object"])
                if event_type == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone(path)
                    raise ApiError(f"watch {path}: {obj.get('message', obj)}")
                yield event_type, obj


async def list_and_watch(
    client: KubeClient, path: str, label_selector: str, on_reset: Reset, on_change: Change
) -> None:
    """Keeps a receiver in step with the objects at ``path`` until cancelled."""
    while True:
        try:
            listing = await client.get(path, labelSelector=label_selector)
            version = str(listing["metadata"]["resourceVersion"])
            await on_reset(list(listing.get("items") or []))
            while True:  # one watch request after another, each from the last version seen
                async for event_type, obj in client.watch(path, version, label_selector):
                    version = str(obj["metadata"]["resourceVersion"])
                    if event_type != "BOOKMARK":
                        await on_change(event_type, obj)
        except Gone:
            log.info("watch of %s: resourceVersion expired (410); listing again", path)
        except (httpx.HTTPError, ApiError, json.JSONDecodeError, KeyError) as error:
            log.warning("watch of %s failed (%s: %s); listing again", path, type(error).__name__, error)
            await asyncio.sleep(RETRY_SECONDS)
