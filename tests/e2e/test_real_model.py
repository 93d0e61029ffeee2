"""The real model through berth: an InferenceDeployment of SmolLM2 on a local node becomes Ready only
once the runtime in its pod is ready, a chat completion sent to its Service with the openai SDK
equals `transformers`' greedy answer from the same GGUF file, and the replica's cold start shows in
status (the kubelet's timestamps) and in the runtime's metrics (load and warm-up)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.local_model import local_model, service_address
from tests.integration.idep_reads import idep_status, runtime_pods
from tests.integration.operator_process import OperatorProcess
from tests.integration.support import ClusterAccess, wait_for
from tests.smollm2_reference import Reference, chat

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

READY_SECONDS = 180.0
MAX_TOKENS = 24
QUESTIONS = ("What is the capital of France? Answer in one sentence.", "Name three primary colors.")


def _runtime_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def test_ready_only_once_the_runtime_is_and_the_answer_equals_transformers(
    bed: ClusterAccess, bed_namespace: str, bed_operator: OperatorProcess, smollm2_reference: Reference
) -> None:
    started = time.monotonic()
    bed.apply(local_model("smol"), namespace=bed_namespace)
    url = service_address(bed, bed_namespace, "smol")

    running_but_not_ready = False
    while True:
        status = idep_status(bed, bed_namespace, "smol")
        if status.get("phase") == "Ready":
            # The moment the resource says Ready, the runtime behind its Service answers ready.
            assert _runtime_ready(url), status
            break
        pods = runtime_pods(bed, bed_namespace, "smol")
        running_but_not_ready |= any(pod["status"].get("phase") == "Running" for pod in pods)
        assert time.monotonic() - started < READY_SECONDS, f"not Ready after {READY_SECONDS:.0f} s: {status}"
        time.sleep(0.2)
    ready_after = time.monotonic() - started
    assert running_but_not_ready, "the pod was never seen running before Ready: the model load went unseen"
    assert status["ready"] == "1/1"
    print(f"\napply -> Ready: {ready_after:.1f} s")

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)
    model = local_model("smol")["spec"]["model"]["name"]
    assert [served.id for served in client.models.list()] == [model]
    for question in QUESTIONS:
        answer = client.chat.completions.create(
            model=model, messages=chat(question), max_tokens=MAX_TOKENS, temperature=0
        )
        expected_ids = smollm2_reference.greedy(
            smollm2_reference.chat_ids(question), MAX_TOKENS, stop_at_eos=True
        )
        expected = smollm2_reference.tokenizer.decode(expected_ids, skip_special_tokens=True)
        assert answer.choices[0].message.content == expected, question
        assert answer.usage is not None and answer.usage.completion_tokens == len(expected_ids)
    print(f"apply -> first answer: {time.monotonic() - started:.1f} s")

    cold_start = wait_for(
        lambda: idep_status(bed, bed_namespace, "smol").get("coldStart"), 30, "status.coldStart"
    )
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        stages = {
            sample.labels["stage"]: sample.value
            for family in text_string_to_metric_families(response.read().decode())
            if family.name == "berth:cold_start_seconds"
            for sample in family.samples
        }
    print(f"status.coldStart: {cold_start}; runtime stages: {stages}")
    assert cold_start["pods"] == 1 and cold_start["revision"] == status["revision"]["current"], cold_start
    assert "downloadSeconds" not in cold_start  # a file:// source: no fetch step
    # The runtime's load and warm-up lie within the container's start-up, which lies within the total.
    assert set(stages) == {"load", "warmup"}, stages
    assert (
        stages["load"] + stages["warmup"]
        <= cold_start["startupSeconds"] + 1
        <= cold_start["totalSeconds"] + 1
    )
