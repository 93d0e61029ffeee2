"""SOURCE parsing for `python -m berth_runtime fetch`: every accepted form, and clear refusals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from berth_runtime.fetch import FetchError, parse_source
from berth_runtime.fetch.source import HubSource, LocalSource, S3Source, s3_bucket_problem


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


@pytest.mark.parametrize(
    "bucket",
    [
        "abc",
        "a" * 63,
        "my-bucket",
        "my.bucket.name",
        "123",
        "1.2.3",
        "1.2.3.4.5",
        "192.168.5.4a",
        "my-.bucket",
        "xn-bucket",
        "my-sthree-bucket",
        "amzn-s3-demo",
        "bucket-s3alias-2",
        "bucket-ol-s3",
        "bucket-mrap",
        "bucket-x-s3",
    ],
)
def test_s3_bucket_names_amazon_accepts(bucket: str) -> None:
    assert s3_bucket_problem(bucket) is None
    assert parse_source(f"s3://{bucket}/llama", None) == S3Source(bucket, "llama", None)


@pytest.mark.parametrize(
    ("bucket", "reason"),
    [
        ("", "it is 0 characters long"),
        ("ab", "it is 2 characters long"),
        ("a" * 64, "it is 64 characters long"),
        ("Models", "it contains 'M'"),
        ("my_bucket", "it contains '_'"),
        ("my bucket", "it contains ' '"),
        ("bücket", "it contains 'ü'"),
        ("-bucket", "it does not begin and end with a letter or digit"),
        ("bucket-", "it does not begin and end with a letter or digit"),
        (".bucket", "it does not begin and end with a letter or digit"),
        ("bucket.", "it does not begin and end with a letter or digit"),
        ("my..bucket", "it contains two adjacent dots"),
        ("192.168.5.4", "it is formatted as an IPv4 address"),
        ("999.1.1.1", "it is formatted as an IPv4 address"),
        ("xn--bucket", "it starts with the reserved prefix 'xn--'"),
        ("sthree-bucket", "it starts with the reserved prefix 'sthree-'"),
        ("sthree-configurator", "it starts with the reserved prefix 'sthree-'"),
        ("amzn-s3-demo-bucket", "it starts with the reserved prefix 'amzn-s3-demo-'"),
        ("bucket-s3alias", "it ends with the reserved suffix '-s3alias'"),
        ("bucket--ol-s3", "it ends with the reserved suffix '--ol-s3'"),
        ("bucket.mrap", "it ends with the reserved suffix '.mrap'"),
        ("bucket--usw2-az1--x-s3", "it ends with the reserved suffix '--x-s3'"),
    ],
)
def test_s3_bucket_names_amazon_refuses(bucket: str, reason: str) -> None:
    assert s3_bucket_problem(bucket) == reason


def test_a_refused_bucket_is_named_with_the_uri_and_the_rules() -> None:
    with pytest.raises(FetchError) as raised:
        parse_source("s3://ab/llama", None)
    message = str(raised.value)
    assert "'s3://ab/llama'" in message
    assert "'ab' is not a valid S3 bucket name: it is 2 characters long" in message
    assert "accepted: 3-63 characters of a-z, 0-9, '.' and '-'" in message
    assert "no suffix -s3alias, --ol-s3, .mrap or --x-s3" in message


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("pvc://claim/../../../etc", "may not contain '..' segments"),
        ("pvc://claim/models/..", "may not contain '..' segments"),
        ("pvc://claim/%2e%2e/%2e%2e/etc", "may not contain '..' segments"),
        ("pvc://claim/%2E%2E/etc", "may not contain '..' segments"),
        ("pvc://claim/models/..%2f..%2fetc", "may not contain '..' segments"),
        ("pvc://claim//etc", "the path after the claim may not be absolute ('/etc')"),
        ("pvc://claim/%2fetc", "the path after the claim may not be absolute ('/etc')"),
        ("pvc://../etc", "'..' is not a PersistentVolumeClaim name"),
        ("pvc://%2e%2e/etc", "'%2e%2e' is not a PersistentVolumeClaim name"),
        ("pvc://Model_Store/llama", "'Model_Store' is not a PersistentVolumeClaim name"),
        ("file:///models/../etc", "may not contain '..' segments"),
        ("file:///..", "may not contain '..' segments"),
        ("file:///models/%2e%2e/etc", "may not contain '..' segments"),
        ("file:///models/..%2F..%2Fetc", "may not contain '..' segments"),
    ],
)
def test_local_paths_may_not_leave_what_they_name(uri: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=re.escape(message)) as raised:
        parse_source(uri, None, pvc_mount_root=tmp_path)
    assert repr(uri) in str(raised.value)


@pytest.mark.parametrize(
    "uri",
    ["pvc://claim/a..b/model", "pvc://claim.v2/llama", "pvc://claim/.cache/llama%20v2", "pvc://claim"],
)
def test_pvc_paths_that_stay_under_the_claim_are_accepted(uri: str, tmp_path: Path) -> None:
    source = parse_source(uri, None, pvc_mount_root=tmp_path)
    assert isinstance(source, LocalSource)
    claim = uri.removeprefix("pvc://").split("/")[0]
    assert source.path.resolve().is_relative_to(tmp_path / claim)


def test_file_paths_with_dots_inside_a_name_are_accepted() -> None:
    source = parse_source("file:///models/llama..v2", None)
    assert isinstance(source, LocalSource)
    assert source.path == Path("/models/llama..v2")


@pytest.mark.parametrize("uri", ["file:///models/llama%00.txt", "pvc://claim/models%00/llama"])
def test_a_nul_byte_in_a_local_path_is_a_clear_error(uri: str) -> None:
    with pytest.raises(FetchError, match="NUL byte"):
        parse_source(uri, None)
