"""Fetching every object under an S3 prefix with boto3 (AWS or S3-compatible, via AWS_ENDPOINT_URL).

The listing's keys, sizes and ETags fingerprint the snapshot (S3 has no commits). A partial object
resumes with a Range request pinned to the ETag it started with (`IfMatch`), so an object replaced
mid-download fails clearly instead of producing a file spliced from two versions.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

from berth_runtime.fetch.errors import FetchError
from berth_runtime.fetch.selection import RemoteFile, Snapshot
from berth_runtime.fetch.source import S3Source

_CHUNK_BYTES = 8 * 1024 * 1024
_CREDENTIAL_ERRORS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}


class S3Backend:
    """One bucket prefix; credentials, endpoint and region come from the standard AWS_* variables."""

    def __init__(self, source: S3Source) -> None:
        self._source = source
        self._key_prefix = f"{source.prefix}/" if source.prefix else ""
        # A fresh session reads the AWS_* variables now (the default session caches credentials).
        self._client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
            region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            config=Config(retries={"max_attempts": 5, "mode": "standard"}),
        )

    def snapshot(self) -> Snapshot:
        files: list[RemoteFile] = []
        try:
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self._source.bucket, Prefix=self._key_prefix):
                for entry in page.get("Contents", []):
                    relative = entry["Key"][len(self._key_prefix) :]
                    if relative and not relative.endswith("/"):
                        etag = str(entry.get("ETag", "")).strip('"')
                        files.append(RemoteFile(path=relative, size=int(entry["Size"]), identity=etag))
        except (ClientError, BotoCoreError) as error:
            raise self._explain(error) from None
        if not files:
            raise FetchError(f"404 Not Found: no objects under {self._source}/ (check the bucket and prefix)")
        listing = "\n".join(f"{file.path}\0{file.size}\0{file.identity}" for file in sorted(files, key=_path))
        fingerprint = hashlib.sha256(listing.encode()).hexdigest()[:20]
        return Snapshot(resolved_revision=f"listing-{fingerprint}", files=tuple(files))

    def download(self, remote: RemoteFile, partial: Path) -> None:
        """Append the rest of `remote` to `partial`, resuming from the bytes already there."""
        resume_size = partial.stat().st_size if partial.exists() else 0
        if resume_size >= remote.size:
            return
        request: dict[str, Any] = {"Bucket": self._source.bucket, "Key": self._key_prefix + remote.path}
        if remote.identity:
            request["IfMatch"] = f'"{remote.identity}"'
        if resume_size:
            request["Range"] = f"bytes={resume_size}-"
        try:
            response = self._client.get_object(**request)
            with partial.open("ab") as handle:
                for chunk in response["Body"].iter_chunks(_CHUNK_BYTES):
                    handle.write(chunk)
        except (ClientError, BotoCoreError) as error:
            raise self._explain(error, remote.path) from None

    def _explain(self, error: ClientError | BotoCoreError, filename: str | None = None) -> FetchError:
        where = f"{self._source}" + (f" object {filename!r}" if filename else "")
        if isinstance(error, NoCredentialsError):
            return FetchError(
                f"{where}: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(spec.model.credentialsSecretRef)"
            )
        if isinstance(error, EndpointConnectionError):
            return FetchError(f"{where}: cannot reach the S3 endpoint: {error}")
        if not isinstance(error, ClientError):
            return FetchError(f"{where}: {error}")
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _CREDENTIAL_ERRORS or status == 401:
            return FetchError(
                f"{status} {code}: {where}: the AWS credentials were rejected; check AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY"
            )
        if status == 403:
            return FetchError(
                f"403 {code or 'Forbidden'}: {where}: the credentials may not read this bucket or prefix "
                "(grant s3:ListBucket and s3:GetObject)"
            )
        if code == "NoSuchBucket":
            return FetchError(f"404 NoSuchBucket: {where}: bucket {self._source.bucket!r} does not exist")
        if status == 404:
            return FetchError(f"404 {code or 'Not Found'}: {where} does not exist")
        if status == 412:
            return FetchError(
                f"412 PreconditionFailed: {where} changed during the download; run the fetch again"
            )
        return FetchError(f"{status} {code}: {where}: {error}")


def _path(file: RemoteFile) -> str:
    return file.path
