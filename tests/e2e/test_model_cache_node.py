"""Weights once per node: two replicas of one InferenceDeployment with spec.model.cache.mode Node, on
one local node whose pods really run, download each file of an s3:// model once (counted at the S3
stand-in), serve from the shared entry (holding it against eviction), and a replaced pod downloads
nothing.

Why on the local bed: the pieces are proven apart (tests/runtime/test_fetch_node_cache*.py for the
locking and verification, tests/unit/builders/test_builder_model_cache.py for the pod), but only
here does the operator's pod template meet a kubelet: the hostPath volume, the root hand-over step,
the link the fetch leaves in the pod-local emptyDir and the runtime loading through it, read-only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth_runtime.fetch.cache_layout import CacheLayout, try_locked
from tests.e2e.local_model import local_model
from tests.integration.idep_reads import idep_status, runtime_pods
from tests.integration.operator_process import OperatorProcess
from tests.integration.support import ClusterAccess, wait_for
from tests.runtime.conftest import write_tiny_model
from tests.runtime.counting_s3 import CountingS3, counting_s3_server, upload_model

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

BUCKET = "node-cache"
PREFIX = "tiny-qwen2"
READY_SECONDS = 300.0


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CountingS3, dict[str, bytes]]]:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    model_dir = write_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"), Qwen2Config, Qwen2ForCausalLM)
    with counting_s3_server() as server:
        yield server, upload_model(server.url, BUCKET, PREFIX, model_dir)


@pytest.fixture
def cache_root(tmp_path: Path) -> Path:
    return tmp_path / "node-model-cache"


@pytest.fixture
def cache_operator(
    bed: ClusterAccess, bed_namespace: str, cache_root: Path, tmp_path: Path
) -> Iterator[OperatorProcess]:
    environment = {"BERTH_MODEL_CACHE_ROOT": str(cache_root), "BERTH_MODEL_CACHE_BUDGET": "1Gi"}
    process = OperatorProcess(bed.kubeconfig, bed_namespace, tmp_path / "operator.log", environment)
    process.start()
    yield process
    try:
        bed.kubectl("delete", "inferencedeployments", "--all", "--timeout=120s", namespace=bed_namespace)
    finally:
        process.stop()


def ready_pods(bed: ClusterAccess, namespace: str, replicas: int, started: float) -> set[str]:
    def ready() -> set[str] | None:
        status = idep_status(bed, namespace, "cached")
        pods = runtime_pods(bed, namespace, "cached")
        names = {
            pod["metadata"]["name"]
            for pod in pods
            if not pod["metadata"].get("deletionTimestamp")
            and any(
                c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", [])
            )
        }
        return names if status.get("readyReplicas") == replicas and len(names) == replicas else None

    return wait_for(ready, READY_SECONDS - (time.monotonic() - started), f"{replicas} ready replicas", 1.0)


def test_two_pods_on_one_node_download_once_and_a_replaced_pod_downloads_nothing(
    bed: ClusterAccess,
    bed_namespace: str,
    cache_operator: OperatorProcess,
    cache_root: Path,
    s3: tuple[CountingS3, dict[str, bytes]],
) -> None:
    server, uploaded = s3
    credentials = {
        "AWS_ENDPOINT_URL": server.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }
    bed.apply(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3"}, "stringData": credentials},
        namespace=bed_namespace,
    )
    model = {
        "name": "tiny",
        "source": f"s3://{BUCKET}/{PREFIX}",
        "dtype": "float32",
        "maxModelLen": 256,
        "credentialsSecretRef": {"name": "s3"},
        "cache": {"mode": "Node"},
    }
    before = server.object_gets(BUCKET)
    started = time.monotonic()
    bed.apply(local_model("cached", model=model, replicas=2), namespace=bed_namespace)
    first_pods = ready_pods(bed, bed_namespace, 2, started)
    print(f"\napply -> 2 ready replicas: {time.monotonic() - started:.1f} s")

    fetched = server.object_gets(BUCKET) - before
    assert fetched == {f"{PREFIX}/{name}": 1 for name in uploaded}, "each file once for the two pods"
    entries = list((cache_root / "entries").iterdir())
    assert len(entries) == 1 and sorted(path.name for path in entries[0].glob("*.safetensors"))
    with try_locked(CacheLayout(cache_root).users_lock_file(entries[0].name)) as evictable:
        assert not evictable, "the running servers hold their entry's users lock (hold_entry)"

    replaced = sorted(first_pods)[0]
    bed.kubectl("delete", "pod", replaced, "--wait=false", namespace=bed_namespace)
    started = time.monotonic()
    second_pods = ready_pods(bed, bed_namespace, 2, started)
    assert replaced not in second_pods
    assert server.object_gets(BUCKET) - before == fetched, "the new pod reused the node's entry"
