"""hf:// fetches through huggingface_hub against a local stand-in for the Hub (HF_ENDPOINT).

The stand-in is a real HTTP server implementing the routes `huggingface_hub` calls to resolve a
revision, list a repository and download files (with Range), plus the Hub's error conventions
(status codes and X-Error-Code) for private, gated and missing repositories and revisions.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from berth_runtime.fetch import FetchError, fetch, parse_source
from berth_runtime.fetch.selection import RemoteFile
from berth_runtime.fetch.state import FileLedger, read_marker

GOOD_TOKEN = "hf_good_token"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubRepo:
    files: dict[str, bytes]
    private: bool = False
    gated: bool = False


@dataclass
class HubStandIn:
    repos: dict[str, HubRepo] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""


class _Handler(BaseHTTPRequestHandler):
    hub: HubStandIn

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._handle(send_body=False)

    def do_GET(self) -> None:
        self._handle(send_body=True)

    def _handle(self, send_body: bool) -> None:
        path = self.path.split("?", 1)[0]
        self.hub.requests.append(
            {
                "method": self.command,
                "path": path,
                "range": self.headers.get("Range"),
                "auth": self.headers.get("Authorization"),
            }
        )
        api = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(revision|tree)/([^/]+)", path)
        resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        match = api or resolve
        if match is None:
            return self._error(404, "EntryNotFound", "no such route")
        repo_id = match.group(1)
        revision = match.group(3) if api else match.group(2)
        repo = self._authorize(repo_id)
        if repo is None:
            return None
        if revision not in ("main", COMMIT):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        if api and api.group(2) == "revision":
            siblings = [{"rfilename": name} for name in repo.files]
            return self._json(
                {
                    "id": repo_id,
                    "modelId": repo_id,
                    "sha": COMMIT,
                    "private": repo.private,
                    "siblings": siblings,
                }
            )
        if api:
            return self._json([self._tree_entry(name, data) for name, data in repo.files.items()])
        assert resolve is not None
        data = repo.files.get(resolve.group(3))
        if data is None:
            return self._error(404, "EntryNotFound", "Entry not found")
        return self._file(data, send_body)

    def _authorize(self, repo_id: str) -> HubRepo | None:
        repo = self.hub.repos.get(repo_id)
        authorization = self.headers.get("Authorization")
        if authorization is not None and authorization != f"Bearer {GOOD_TOKEN}":
            self._error(401, None, "Invalid credentials in Authorization header")
            return None
        if repo is None:
            self._error(404 if authorization else 401, "RepoNotFound", "Repository not found")
            return None
        if repo.private and authorization is None:
            self._error(401, "RepoNotFound", "Repository not found")
            return None
        if repo.gated:
            self._error(403, "GatedRepo", "Access to this model is restricted; you must accept its terms")
            return None
        return repo

    @staticmethod
    def _tree_entry(name: str, data: bytes) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "type": "file",
            "oid": hashlib.sha1(data).hexdigest(),
            "size": len(data),
            "path": name,
        }
        if name.endswith(".safetensors"):
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return entry

    def _file(self, data: bytes, send_body: bool) -> None:
        start = 0
        requested = self.headers.get("Range")
        if requested is not None:
            start = int(re.fullmatch(r"bytes=(\d+)-", requested).group(1))  # type: ignore[union-attr]
        body = data[start:]
        self.send_response(206 if requested else 200)
        self.send_header("Content-Length", str(len(body)))
        if requested:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("X-Repo-Commit", COMMIT)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _json(self, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: str | None, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


@pytest.fixture(scope="module")
def hub_server() -> Iterator[HubStandIn]:
    hub = HubStandIn()
    handler = type("Handler", (_Handler,), {"hub": hub})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield hub
    server.shutdown()
    server.server_close()


@pytest.fixture
def hub(hub_server: HubStandIn, tiny_qwen2_dir: Path, monkeypatch: pytest.MonkeyPatch) -> HubStandIn:
    files = {path.name: path.read_bytes() for path in tiny_qwen2_dir.iterdir() if path.is_file()}
    files["original/consolidated.pth"] = b"a checkpoint the runtime does not read"
    files["pytorch_model.bin"] = b"pickled weights the runtime does not read"
    hub_server.repos.clear()
    hub_server.repos.update(
        {
            "org/public": HubRepo(files),
            "org/private": HubRepo(files, private=True),
            "org/gated": HubRepo(files, gated=True),
        }
    )
    hub_server.requests.clear()
    monkeypatch.setenv("HF_ENDPOINT", hub_server.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return hub_server


def test_hub_repo_is_fetched_at_its_commit_and_marked(
    hub: HubStandIn, tiny_qwen2_dir: Path, tmp_path: Path
) -> None:
    outcome = fetch(parse_source("hf://org/public", None), tmp_path / "model")
    assert outcome.resolved_revision == COMMIT
    for path in tiny_qwen2_dir.iterdir():
        assert (tmp_path / "model" / path.name).read_bytes() == path.read_bytes()
    requested = {request["path"] for request in hub.requests}
    assert not any("pytorch_model.bin" in path or "original/" in path for path in requested)
    assert all(f"/resolve/{COMMIT}/" in path for path in requested if "/resolve/" in path), (
        "files pinned to the commit"
    )
    marker = read_marker(tmp_path / "model")
    assert marker is not None and marker.resolved_revision == COMMIT and marker.revision == "main"


def test_hub_second_fetch_is_skipped_without_network(hub: HubStandIn, tmp_path: Path) -> None:
    fetch(parse_source("hf://org/public@main", None), tmp_path / "model")
    hub.requests.clear()
    assert fetch(parse_source("hf://org/public@main", None), tmp_path / "model").skipped
    assert hub.requests == []


def test_hub_partial_file_resumes_with_a_range_request(
    hub: HubStandIn, tiny_qwen2_dir: Path, tmp_path: Path
) -> None:
    weights = sorted(tiny_qwen2_dir.glob("*.safetensors"))[0]
    original = weights.read_bytes()
    destination = tmp_path / "model"
    destination.mkdir()
    remote = RemoteFile(weights.name, len(original), hashlib.sha256(original).hexdigest())
    partial = FileLedger(destination).partial_path(remote)
    partial.parent.mkdir(parents=True)
    header_end = 8 + struct.unpack("<Q", original[:8])[0]
    prefix = original[:header_end] + bytes(b ^ 0xFF for b in original[header_end : header_end + 16])
    prefix += original[header_end + 16 : len(original) // 2]
    partial.write_bytes(prefix)
    fetch(parse_source("hf://org/public", None), destination)
    assert (destination / weights.name).read_bytes() == prefix + original[len(prefix) :]
    ranges = [r["range"] for r in hub.requests if r["path"].endswith(weights.name) and r["method"] == "GET"]
    assert ranges == [f"bytes={len(prefix)}-"]


def test_hub_private_repo_needs_the_token(
    hub: HubStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(
        FetchError, match=r"401 Unauthorized: hf://org/private@main.*no token was sent.*HF_TOKEN"
    ):
        fetch(parse_source("hf://org/private", None), tmp_path / "model")
    monkeypatch.setenv("HF_TOKEN", GOOD_TOKEN)
    assert not fetch(parse_source("hf://org/private", None), tmp_path / "model").skipped
    assert {r["auth"] for r in hub.requests if r["auth"]} == {f"Bearer {GOOD_TOKEN}"}


def test_hub_wrong_token_is_a_clear_401(
    hub: HubStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(FetchError, match=r"401 Unauthorized.*a token from HF_TOKEN was sent"):
        fetch(parse_source("hf://org/public", None), tmp_path / "model")


def test_hub_gated_repo_is_a_clear_403(
    hub: HubStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", GOOD_TOKEN)
    with pytest.raises(
        FetchError, match=r"403 Forbidden: hf://org/gated@main: access is gated.*accept the model's terms"
    ):
        fetch(parse_source("hf://org/gated", None), tmp_path / "model")


def test_hub_missing_repo_is_a_clear_404(
    hub: HubStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", GOOD_TOKEN)
    with pytest.raises(
        FetchError, match="404 Not Found: hf://org/absent@main: repository 'org/absent' does not exist"
    ):
        fetch(parse_source("hf://org/absent", None), tmp_path / "model")


def test_hub_missing_revision_is_a_clear_404(hub: HubStandIn, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"404 Not Found.*revision 'v9' does not exist in org/public"):
        fetch(parse_source("hf://org/public", "v9"), tmp_path / "model")
