"""s3:// fetches through boto3 against moto's S3 server on 127.0.0.1 (a real HTTP endpoint, no mocks)."""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from berth_runtime.fetch import FetchError, fetch, parse_source
from berth_runtime.fetch.selection import RemoteFile
from berth_runtime.fetch.state import FileLedger, read_marker

BUCKET = "models"
PREFIX = "qwen/tiny"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return s3_endpoint


@pytest.fixture
def uploaded(s3_env: str, tiny_qwen2_dir: Path) -> Path:
    client = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")
    if BUCKET not in [bucket["Name"] for bucket in client.list_buckets().get("Buckets", [])]:
        client.create_bucket(Bucket=BUCKET)
    for path in tiny_qwen2_dir.iterdir():
        client.upload_file(str(path), BUCKET, f"{PREFIX}/{path.name}")
    client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/original/consolidated.pth", Body=b"not needed")
    return tiny_qwen2_dir


def test_s3_prefix_is_fetched_verified_and_marked(uploaded: Path, tmp_path: Path) -> None:
    outcome = fetch(parse_source(f"s3://{BUCKET}/{PREFIX}", "v1"), tmp_path / "model")
    assert not outcome.skipped
    assert outcome.resolved_revision.startswith("listing-")
    for path in uploaded.iterdir():
        assert (tmp_path / "model" / path.name).read_bytes() == path.read_bytes()
    assert not (tmp_path / "model" / "original").exists(), "sub-folders are not model files"
    marker = read_marker(tmp_path / "model")
    assert marker is not None and marker.revision == "v1"


def test_s3_second_fetch_is_skipped(uploaded: Path, tmp_path: Path) -> None:
    source = parse_source(f"s3://{BUCKET}/{PREFIX}", "v1")
    fetch(source, tmp_path / "model")
    assert fetch(source, tmp_path / "model").skipped


def test_s3_partial_object_resumes_with_a_range_request(uploaded: Path, tmp_path: Path, s3_env: str) -> None:
    weights = sorted(uploaded.glob("*.safetensors"))[0]
    client = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")
    etag = client.head_object(Bucket=BUCKET, Key=f"{PREFIX}/{weights.name}")["ETag"].strip('"')
    destination = tmp_path / "model"
    destination.mkdir()
    partial = FileLedger(destination).partial_path(RemoteFile(weights.name, weights.stat().st_size, etag))
    partial.parent.mkdir(parents=True)
    original = weights.read_bytes()
    header_end = 8 + struct.unpack("<Q", original[:8])[0]
    # Flipped tensor bytes in the kept prefix: they survive only if the rest was fetched by range.
    prefix = original[:header_end] + bytes(b ^ 0xFF for b in original[header_end : header_end + 16])
    prefix += original[header_end + 16 : len(original) // 2]
    partial.write_bytes(prefix)
    fetch(parse_source(f"s3://{BUCKET}/{PREFIX}", None), destination)
    assert (destination / weights.name).read_bytes() == prefix + original[len(prefix) :]


def test_s3_missing_bucket_is_a_clear_404(s3_env: str, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"404 NoSuchBucket.*'no-such-bucket' does not exist"):
        fetch(parse_source("s3://no-such-bucket/model", None), tmp_path / "model")


def test_s3_empty_prefix_is_a_clear_404(uploaded: Path, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="404 Not Found: no objects under s3://models/absent"):
        fetch(parse_source(f"s3://{BUCKET}/absent", None), tmp_path / "model")


@pytest.fixture
def iam_enforced(s3_endpoint: str, uploaded: Path) -> Iterator[dict[str, str]]:
    """Moto checks signatures and IAM policies from now on; yields keys of a user with no permissions."""
    iam = boto3.client("iam", endpoint_url=s3_endpoint, region_name="us-east-1")
    user = f"reader-{uuid.uuid4().hex[:12]}"
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    httpx.post(f"{s3_endpoint}/moto-api/reset-auth", content=b"0").raise_for_status()
    try:
        yield {"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
    finally:
        httpx.post(f"{s3_endpoint}/moto-api/reset-auth", content=b"inf").raise_for_status()


def test_s3_unknown_credentials_are_rejected_clearly(
    iam_enforced: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000000")
    with pytest.raises(FetchError, match=r"403 InvalidAccessKeyId.*credentials were rejected"):
        fetch(parse_source(f"s3://{BUCKET}/{PREFIX}", None), tmp_path / "model")


def test_s3_credentials_without_permission_are_a_clear_403(
    iam_enforced: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", iam_enforced["id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", iam_enforced["secret"])
    with pytest.raises(FetchError, match=r"403 AccessDenied.*may not read.*s3:GetObject"):
        fetch(parse_source(f"s3://{BUCKET}/{PREFIX}", None), tmp_path / "model")


def test_s3_missing_credentials_are_explained(
    s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(FetchError, match="no AWS credentials: set AWS_ACCESS_KEY_ID"):
        fetch(parse_source(f"s3://{BUCKET}/{PREFIX}", None), tmp_path / "model")
