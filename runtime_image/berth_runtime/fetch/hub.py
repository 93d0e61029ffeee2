"""Fetching from the Hugging Face Hub (or any endpoint that speaks its API, via HF_ENDPOINT).

`huggingface_hub` resolves the revision to a commit, lists the files and downloads them; berth
adds byte-level resume (a partial shard continues with an HTTP Range request, which
`snapshot_download` does not do) and turns the Hub's HTTP errors into messages that say what to
fix: the token, the gated-model terms, the repository name or the revision.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import HfApi, hf_hub_url
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import http_get
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import build_hf_headers, disable_progress_bars

from berth_runtime.fetch.errors import FetchError
from berth_runtime.fetch.selection import RemoteFile, Snapshot
from berth_runtime.fetch.source import HubSource


class HubBackend:
    """One Hub repository at one revision; the token comes from HF_TOKEN, the endpoint from HF_ENDPOINT."""

    def __init__(self, source: HubSource) -> None:
        self._source = source
        self._endpoint = os.environ.get("HF_ENDPOINT") or None
        self._token = os.environ.get("HF_TOKEN") or None
        self._api = HfApi(endpoint=self._endpoint, token=self._token)
        self._commit: str | None = None
        disable_progress_bars()

    def snapshot(self) -> Snapshot:
        repo_id = self._source.repo_id
        try:
            info = self._api.model_info(repo_id, revision=self._source.revision)
            if not info.sha:
                raise FetchError(f"{self._source}: the Hub did not return a commit for this revision")
            entries = self._api.list_repo_tree(repo_id, revision=info.sha, recursive=True)
            files = tuple(
                RemoteFile(
                    path=entry.path,
                    size=entry.size,
                    identity=entry.lfs.sha256 if entry.lfs is not None else entry.blob_id,
                )
                for entry in entries
                if isinstance(entry, RepoFile)
            )
        except HfHubHTTPError as error:
            raise self._explain(error) from None
        self._commit = info.sha
        return Snapshot(resolved_revision=info.sha, files=files)

    def download(self, remote: RemoteFile, partial: Path) -> None:
        """Append the rest of `remote` to `partial`, resuming from the bytes already there."""
        if self._commit is None:
            raise RuntimeError("snapshot() must run before download()")
        url = hf_hub_url(self._source.repo_id, remote.path, revision=self._commit, endpoint=self._endpoint)
        resume_size = partial.stat().st_size if partial.exists() else 0
        try:
            with partial.open("ab") as handle:
                http_get(
                    url,
                    handle,
                    resume_size=resume_size,
                    headers=build_hf_headers(token=self._token),
                    expected_size=remote.size,
                    displayed_filename=remote.path,
                )
        except HfHubHTTPError as error:
            raise self._explain(error, remote.path) from None

    def _explain(self, error: HfHubHTTPError, filename: str | None = None) -> FetchError:
        status = error.response.status_code if error.response is not None else None
        where = f"{self._source}" + (f" file {filename!r}" if filename else "")
        token_note = (
            "a token from HF_TOKEN was sent" if self._token else "no token was sent (HF_TOKEN is unset)"
        )
        if isinstance(error, RevisionNotFoundError):
            return FetchError(
                f"404 Not Found: {where}: revision {self._source.revision!r} does not exist in "
                f"{self._source.repo_id}; give an existing branch, tag or commit"
            )
        if status == 401:
            return FetchError(
                f"401 Unauthorized: {where}: the Hub refused the request ({token_note}); the repository is "
                "private or does not exist: set HF_TOKEN (spec.model.credentialsSecretRef) to a token that "
                "can read it"
            )
        if isinstance(error, GatedRepoError) or status == 403:
            return FetchError(
                f"403 Forbidden: {where}: access is gated or the token lacks permission ({token_note}); "
                "accept the model's terms on the Hub with the account that owns the token"
            )
        if isinstance(error, RemoteEntryNotFoundError):
            return FetchError(f"404 Not Found: {where}: the file is listed but cannot be downloaded")
        if isinstance(error, RepositoryNotFoundError) or status == 404:
            return FetchError(
                f"404 Not Found: {where}: repository {self._source.repo_id!r} does not exist "
                f"(or is private and {token_note})"
            )
        return FetchError(f"HTTP {status}: {where}: {error}")
