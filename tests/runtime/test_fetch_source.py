"""SOURCE parsing for `python -m berth_runtime fetch`: every accepted form, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth_runtime.fetch import FetchError, parse_source
from berth_runtime.fetch.source import HubSource, LocalSource, S3Source


@pytest.mark.parametrize(
    ("uri", "revision", "expected"),
    [
        ("hf://meta-llama/Llama-3.1-8B", None, HubSource("meta-llama/Llama-3.1-8B", "main")),
        ("hf://meta-llama/Llama-3.1-8B@0e9e39f2", None, HubSource("meta-llama/Llama-3.1-8B", "0e9e39f2")),
        ("hf://org/name", "v1.0", HubSource("org/name", "v1.0")),
        ("hf://org/name@v1.0", "v1.0", HubSource("org/name", "v1.0")),
        ("hf://gpt2", None, HubSource("gpt2", "main")),
        ("s3://models/llama/8b", None, S3Source("models", "llama/8b", None)),
        ("s3://models/llama/8b/", "abc", S3Source("models", "llama/8b", "abc")),
        ("s3://models", None, S3Source("models", "", None)),
    ],
)
def test_remote_sources(uri: str, revision: str | None, expected: object) -> None:
    assert parse_source(uri, revision) == expected


def test_file_source_is_its_absolute_path() -> None:
    source = parse_source("file:///data/models/llama", None)
    assert isinstance(source, LocalSource)
    assert source.path == Path("/data/models/llama")


def test_pvc_source_is_under_the_claim_mount(tmp_path: Path) -> None:
    source = parse_source("pvc://model-store/llama/8b", "r1", pvc_mount_root=tmp_path)
    assert isinstance(source, LocalSource)
    assert source.path == tmp_path / "model-store" / "llama/8b"
    assert source.revision == "r1"


def test_default_pvc_mount_root_is_what_the_operator_mounts() -> None:
    source = parse_source("pvc://claim/dir", None)
    assert isinstance(source, LocalSource)
    assert source.path == Path("/mnt/pvc/claim/dir")


@pytest.mark.parametrize(
    ("uri", "revision", "message"),
    [
        ("meta-llama/Llama", None, "has no scheme"),
        ("gs://bucket/model", None, "unknown scheme 'gs'"),
        ("hf://", None, "is not a Hub repository id"),
        ("hf://org/name/extra", None, "is not a Hub repository id"),
        ("hf://org/name@", None, "without a revision"),
        ("hf://org/name@v1", "v2", "names revision 'v1' but --revision is 'v2'"),
        ("s3://Bad_Bucket/x", None, "not a valid S3 bucket name"),
        ("file://relative/path", None, "needs an absolute path"),
        ("pvc:///path", None, "needs a claim name"),
        ("hf://org/name", "  ", "--revision is empty"),
    ],
)
def test_malformed_sources_are_explained(uri: str, revision: str | None, message: str) -> None:
    with pytest.raises(FetchError, match=message) as raised:
        parse_source(uri, revision)
    if "revision is empty" not in message:
        assert repr(uri) in str(raised.value) or uri in str(raised.value)
