"""Tensor parallelism through berth: an InferenceDeployment with runtime.tensorParallelSize 2 on CPU
ranks (resources.gpu.count 0, gloo) becomes Ready on a local node whose pods really run, and its
Service answers completions that equal `transformers`' greedy continuation of the same checkpoint.

Why here: the runtime's own tests prove the sharded forward equals one rank's (tests/runtime/
test_tensor_parallel*.py); only here does the operator's pod (the rendered flag, /dev/shm, the
probes) meet the runtime's worker processes under a kubelet.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from transformers import AutoTokenizer

from tests.cluster import launcher
from tests.cluster.local_node.logs import pod_log_files
from tests.e2e.local_model import local_model, service_address
from tests.integration.idep_reads import idep_status, runtime_pods
from tests.integration.operator_process import OperatorProcess
from tests.integration.support import ClusterAccess
from tests.runtime.conftest import write_tiny_model
from tests.runtime.engine_reference import make_prompts, reference_greedy

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

NAME = "tiny-tp2"
READY_SECONDS = 240.0
NEW_TOKENS = 12


@pytest.fixture(scope="module")
def tiny_llama() -> Iterator[Path]:
    """4 attention heads and 2 KV heads: each of the 2 ranks holds 2 query heads and 1 KV head.

    Outside /tmp: a local node's pod has its own /tmp (an emptyDir), where a file:// path under the
    host's /tmp would not be found."""
    from transformers import LlamaConfig, LlamaForCausalLM

    directory = Path(tempfile.mkdtemp(prefix="berth-e2e-tiny-llama-tp-", dir="/var/tmp"))
    try:
        yield write_tiny_model(directory, LlamaConfig, LlamaForCausalLM)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_a_two_rank_deployment_serves_what_transformers_computes(
    local_bed: launcher.RunningCluster,
    bed: ClusterAccess,
    bed_namespace: str,
    bed_operator: OperatorProcess,
    tiny_llama: Path,
) -> None:
    resource = local_model(
        NAME,
        model={"name": "tiny", "source": f"file://{tiny_llama}", "dtype": "float32", "maxModelLen": 512},
        runtime={"tensorParallelSize": 2, "maxBatchSize": 4, "kvCache": {"blocks": 64}},
        resources={"gpu": {"count": 0}, "cpu": "500m", "memory": "3Gi", "sharedMemorySize": "1Gi"},
    )
    started = time.monotonic()
    bed.apply(resource, namespace=bed_namespace)
    while (status := idep_status(bed, bed_namespace, NAME)).get("phase") != "Ready":
        assert time.monotonic() - started < READY_SECONDS, f"not Ready after {READY_SECONDS:.0f} s: {status}"
        time.sleep(1.0)
    print(f"\napply -> Ready with 2 ranks: {time.monotonic() - started:.1f} s")
    (pod,) = runtime_pods(bed, bed_namespace, NAME)
    pods_root = local_bed.state_dir / launcher.LOCAL_NODE / "pods"
    log = pod_log_files(pods_root, bed_namespace, pod["metadata"]["name"])["runtime"].read_text()
    assert "started tensor-parallel worker rank 1 of 2" in log, log[-3000:]

    vocab_size = int(json.loads((tiny_llama / "config.json").read_text())["vocab_size"])
    prompts = make_prompts(3, vocab_size, seed=5, min_len=4, max_len=24)
    expected = reference_greedy(tiny_llama, prompts, NEW_TOKENS)
    client = openai.OpenAI(
        base_url=f"{service_address(bed, bed_namespace, NAME)}/v1",
        api_key="unused",
        max_retries=0,
        timeout=120,
    )
    answer = client.completions.create(
        model="tiny",
        prompt=prompts,
        max_tokens=NEW_TOKENS,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    served = {choice.index: choice.text for choice in answer.choices}
    for index, tokens in enumerate(expected):
        assert served[index] == tokenizer.decode(tokens, skip_special_tokens=True), (
            index,
            served[index],
            tokens,
        )
