"""Parsing of the fetcher's SOURCE argument into one typed source per storage kind.

The operator renders `spec.model.source` verbatim into the init container's command line, so this
parser is where a malformed source is caught and explained (the value and the accepted forms).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from berth_runtime.fetch.errors import FetchError

ACCEPTED_FORMS = "hf://org/name[@revision], s3://bucket/prefix, file:///absolute/path or pvc://claim/path"
DEFAULT_PVC_MOUNT_ROOT = Path("/mnt/pvc")
DEFAULT_HUB_REVISION = "main"

_HUB_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class HubSource:
    """A model repository on the Hugging Face Hub (or a Hub-compatible endpoint from HF_ENDPOINT)."""

    repo_id: str
    revision: str

    def __str__(self) -> str:
        return f"hf://{self.repo_id}@{self.revision}"


@dataclass(frozen=True)
class S3Source:
    """Every object under a prefix of an S3 (or S3-compatible, via AWS_ENDPOINT_URL) bucket."""

    bucket: str
    prefix: str
    revision: str | None

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass(frozen=True)
class LocalSource:
    """A model directory already on this machine (file://) or on a mounted PersistentVolumeClaim (pvc://)."""

    uri: str
    path: Path
    revision: str | None

    def __str__(self) -> str:
        return self.uri


Source = HubSource | S3Source | LocalSource


def parse_source(uri: str, revision: str | None, pvc_mount_root: Path = DEFAULT_PVC_MOUNT_ROOT) -> Source:
    """Parse SOURCE; `revision` is the --revision flag, which must agree with an `@rev` in an hf:// source."""
    if revision is not None and not revision.strip():
        raise FetchError("--revision is empty; leave it out or give a branch, tag or commit")
    scheme, separator, rest = uri.partition("://")
    if not separator:
        raise FetchError(f"model source {uri!r} has no scheme; accepted: {ACCEPTED_FORMS}")
    if scheme == "hf":
        return _parse_hub(uri, rest, revision)
    if scheme == "s3":
        return _parse_s3(uri, rest, revision)
    if scheme == "file":
        if not rest.startswith("/"):
            raise FetchError(f"model source {uri!r}: file:// needs an absolute path (file:///models/llama)")
        return LocalSource(uri=uri, path=Path(unquote(rest)), revision=revision)
    if scheme == "pvc":
        claim, _, sub_path = rest.partition("/")
        if not claim:
            raise FetchError(f"model source {uri!r}: pvc:// needs a claim name (pvc://claim/path)")
        return LocalSource(uri=uri, path=pvc_mount_root / claim / unquote(sub_path), revision=revision)
    raise FetchError(f"model source {uri!r} has an unknown scheme {scheme!r}; accepted: {ACCEPTED_FORMS}")


def _parse_hub(uri: str, rest: str, revision: str | None) -> HubSource:
    repo_id, at, embedded_revision = rest.partition("@")
    repo_id = repo_id.strip("/")
    if not _HUB_REPO_ID.match(repo_id):
        raise FetchError(f"model source {uri!r}: {repo_id!r} is not a Hub repository id (org/name)")
    if at and not embedded_revision:
        raise FetchError(f"model source {uri!r} ends in '@' without a revision")
    if at and revision is not None and embedded_revision != revision:
        raise FetchError(
            f"model source {uri!r} names revision {embedded_revision!r} but --revision is {revision!r}; "
            "give one of them or make them agree"
        )
    return HubSource(repo_id=repo_id, revision=embedded_revision or revision or DEFAULT_HUB_REVISION)


def _parse_s3(uri: str, rest: str, revision: str | None) -> S3Source:
    bucket, _, prefix = rest.partition("/")
    if not _S3_BUCKET.match(bucket):
        raise FetchError(
            f"model source {uri!r}: {bucket!r} is not a valid S3 bucket name "
            "(3-63 characters: lower-case letters, digits, '.' and '-')"
        )
    return S3Source(bucket=bucket, prefix=prefix.strip("/"), revision=revision)
