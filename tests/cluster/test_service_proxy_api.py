"""How the local service proxy reaches the API server: list, then watch, resuming where it left off
and listing again when the version is gone (410), and the credentials a kubeconfig names or embeds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.api_access import KubeconfigError, from_kubeconfig
from tests.cluster.api_watch import Gone, list_and_watch

# ---- list, then watch


class _ScriptedApi:
    """Answers lists from a queue and plays one scripted watch per call; the last watch blocks."""

    def __init__(self, listings: list[dict[str, Any]], watches: list[list[Any]]) -> None:
        self.listings, self.watches = listings, watches
        self.watched_from: list[str] = []

    async def get(self, path: str, **params: str) -> dict[str, Any]:
        return self.listings.pop(0)

    async def watch(
        self, path: str, resource_version: str, label_selector: str
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        self.watched_from.append(resource_version)
        if not self.watches:
            await asyncio.Event().wait()
        for step in self.watches.pop(0):
            if isinstance(step, Exception):
                raise step
            yield step


def _object(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": version}}


async def test_list_then_watch_resumes_from_the_last_version_and_lists_again_on_410() -> None:
    api = _ScriptedApi(
        listings=[
            {"metadata": {"resourceVersion": "10"}, "items": [_object("a", "9")]},
            {"metadata": {"resourceVersion": "30"}, "items": [_object("b", "29")]},
        ],
        watches=[
            [("ADDED", _object("c", "11")), ("BOOKMARK", _object("", "15"))],  # the server ended this watch
            [("MODIFIED", _object("c", "16")), Gone("/things")],
        ],
    )
    resets: list[list[str]] = []
    changes: list[tuple[str, str]] = []

    async def on_reset(items: list[dict[str, Any]]) -> None:
        resets.append([item["metadata"]["name"] for item in items])

    async def on_change(event_type: str, obj: dict[str, Any]) -> None:
        changes.append((event_type, obj["metadata"]["name"]))

    task = asyncio.ensure_future(list_and_watch(api, "/things", "", on_reset, on_change))  # type: ignore[arg-type]
    while len(api.watched_from) < 3:
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert resets == [["a"], ["b"]]
    assert changes == [("ADDED", "c"), ("MODIFIED", "c")]  # bookmarks only move the version on
    assert api.watched_from == ["10", "15", "30"]


# ---- kubeconfig


def test_a_kubeconfig_names_files_or_embeds_them(tmp_path: Path) -> None:
    local = {
        "current-context": "local",
        "contexts": [{"name": "local", "context": {"cluster": "c", "user": "u"}}],
        "clusters": [
            {"name": "c", "cluster": {"server": "https://127.0.0.1:6443/", "certificate-authority": "ca.crt"}}
        ],
        "users": [
            {"name": "u", "user": {"client-certificate": "/pki/admin.crt", "client-key": "/pki/admin.key"}}
        ],
    }
    (tmp_path / "local.yaml").write_text(json.dumps(local))
    api = from_kubeconfig(tmp_path / "local.yaml", tmp_path / "secrets")
    assert (api.server, api.ca_file, api.cert_file, api.key_file) == (
        "https://127.0.0.1:6443",
        tmp_path / "ca.crt",  # relative to the kubeconfig
        Path("/pki/admin.crt"),
        Path("/pki/admin.key"),
    )
    kind = {
        "current-context": "kind",
        "contexts": [{"name": "kind", "context": {"cluster": "k", "user": "k"}}],
        "clusters": [
            {"name": "k", "cluster": {"server": "https://k:1", "certificate-authority-data": "Q0E="}}
        ],
        "users": [
            {
                "name": "k",
                "user": {"client-key-data": "S0VZ", "client-certificate-data": "Q0VSVA==", "token": "t"},
            }
        ],
    }
    (tmp_path / "kind.yaml").write_text(json.dumps(kind))
    api = from_kubeconfig(tmp_path / "kind.yaml", tmp_path / "secrets")
    assert api.ca_file is not None and api.ca_file.read_bytes() == b"CA"
    assert api.cert_file is not None and api.cert_file.read_bytes() == b"CERT"
    assert api.key_file is not None and api.key_file.read_bytes() == b"KEY"
    assert api.headers() == {"Authorization": "Bearer t"}
    del kind["current-context"]
    (tmp_path / "kind.yaml").write_text(json.dumps(kind))
    with pytest.raises(KubeconfigError, match="no current-context"):
        from_kubeconfig(tmp_path / "kind.yaml", tmp_path / "secrets")
