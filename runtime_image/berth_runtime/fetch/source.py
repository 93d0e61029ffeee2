"""Parsing of the fetcher's SOURCE argument into one typed source per storage kind.

The operator renders `spec.model.source` verbatim into the init container's command line, so this
parser is where a malformed source is caught and explained (the value and the accepted forms).
It is also where a source is kept inside what it names: a pvc:// path stays under its claim's
mount and a file:// path has no `..` segments, even when they are percent-encoded, because the
fetcher copies whatever directory the path resolves to into the model cache.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from berth_runtime.fetch.errors import FetchError

ACCEPTED_FORMS = "hf://org/name[@revision], s3://bucket/prefix, file:///absolute/path or pvc://claim/path"
DEFAULT_PVC_MOUNT_ROOT = Path("/mnt/pvc")
DEFAULT_HUB_REVISION = "main"

_HUB_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_CLAIM_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_CLAIM_NAME_MAX_LENGTH = 253

S3_BUCKET_RULES = (
    "3-63 characters of a-z, 0-9, '.' and '-', beginning and ending with a letter or digit, "
    "no '..', not an IPv4 address, no prefix xn--, sthree- or amzn-s3-demo-, "
    "no suffix -s3alias, --ol-s3, .mrap or --x-s3"
)
_S3_BUCKET_CHARACTERS = frozenset(string.ascii_lowercase + string.digits + ".-")
_IPV4_SHAPED = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")
_S3_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_S3_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3")


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
        return _parse_file(uri, rest, revision)
    if scheme == "pvc":
        return _parse_pvc(uri, rest, revision, pvc_mount_root)
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
    problem = s3_bucket_problem(bucket)
    if problem is not None:
        raise FetchError(
            f"model source {uri!r}: {bucket!r} is not a valid S3 bucket name: {problem}; "
            f"accepted: {S3_BUCKET_RULES}"
        )
    return S3Source(bucket=bucket, prefix=prefix.strip("/"), revision=revision)


def s3_bucket_problem(bucket: str) -> str | None:
    """Why `bucket` is not an Amazon S3 general-purpose bucket name, or None when it is one.

    Amazon's rules (docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html), checked
    in this order; the first one broken is the reason returned:
    1. 3 to 63 characters long;
    2. only lower-case letters a-z, digits 0-9, dots (.) and hyphens (-);
    3. begins with a letter or digit and ends with a letter or digit;
    4. no two adjacent dots (..);
    5. not formatted as an IPv4 address: four runs of digits joined by dots (192.168.5.4; also
       999.1.1.1, which has an address's form though no address's value);
    6. does not start with xn--, sthree- (which covers sthree-configurator) or amzn-s3-demo-;
    7. does not end with -s3alias, --ol-s3, .mrap or --x-s3.
    """
    if not 3 <= len(bucket) <= 63:
        return f"it is {len(bucket)} characters long"
    invalid = [character for character in bucket if character not in _S3_BUCKET_CHARACTERS]
    if invalid:
        return f"it contains {invalid[0]!r}"
    if bucket[0] in ".-" or bucket[-1] in ".-":
        return "it does not begin and end with a letter or digit"
    if ".." in bucket:
        return "it contains two adjacent dots"
    if _IPV4_SHAPED.fullmatch(bucket):
        return "it is formatted as an IPv4 address"
    reserved_prefix = next((prefix for prefix in _S3_RESERVED_PREFIXES if bucket.startswith(prefix)), None)
    if reserved_prefix is not None:
        return f"it starts with the reserved prefix {reserved_prefix!r}"
    reserved_suffix = next((suffix for suffix in _S3_RESERVED_SUFFIXES if bucket.endswith(suffix)), None)
    if reserved_suffix is not None:
        return f"it ends with the reserved suffix {reserved_suffix!r}"
    return None


def _parse_file(uri: str, rest: str, revision: str | None) -> LocalSource:
    if not rest.startswith("/"):
        raise FetchError(f"model source {uri!r}: file:// needs an absolute path (file:///models/llama)")
    path = unquote(rest)
    _check_local_path(uri, path)
    return LocalSource(uri=uri, path=Path(path), revision=revision)


def _parse_pvc(uri: str, rest: str, revision: str | None, pvc_mount_root: Path) -> LocalSource:
    """pvc://claim/path: `path` inside the claim's mount, which the operator puts at mount root / claim."""
    claim, _, encoded_path = rest.partition("/")
    if not claim:
        raise FetchError(f"model source {uri!r}: pvc:// needs a claim name (pvc://claim/path)")
    if len(claim) > _CLAIM_NAME_MAX_LENGTH or not _CLAIM_NAME.fullmatch(claim):
        raise FetchError(
            f"model source {uri!r}: {claim!r} is not a PersistentVolumeClaim name (at most "
            f"{_CLAIM_NAME_MAX_LENGTH} characters: lower-case letters, digits, '-' and '.', "
            "beginning and ending with a letter or digit)"
        )
    path = unquote(encoded_path)
    if path.startswith("/"):
        raise FetchError(
            f"model source {uri!r}: the path after the claim may not be absolute ({path!r}); "
            "give it relative to the claim (pvc://claim/models/llama)"
        )
    _check_local_path(uri, path)
    return LocalSource(uri=uri, path=pvc_mount_root / claim / path, revision=revision)


def _check_local_path(uri: str, path: str) -> None:
    """A `..` segment (also as %2e%2e) would leave the directory the source names; a NUL byte (%00)
    is no path at all."""
    if "\x00" in path:
        raise FetchError(f"model source {uri!r}: the path may not contain a NUL byte (%00)")
    if ".." in path.split("/"):
        raise FetchError(
            f"model source {uri!r}: the path {path!r} may not contain '..' segments; "
            "name the model directory directly"
        )
