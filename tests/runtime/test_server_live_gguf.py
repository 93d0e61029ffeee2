"""A live `python -m berth_runtime serve --model <file>.gguf` answers a chat request through the `openai`
SDK with the text `transformers` generates greedily from the same GGUF file: the real SmolLM2 model,
float32 on the CPU, tokenizer and chat template read from the file's metadata."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from live_server import LiveServer

from tests.smollm2_reference import Reference, chat

pytest_plugins = ["gguf_fixtures"]

MAX_TOKENS = 24
QUESTION = "What is the capital of France? Answer in one sentence."


@pytest.fixture(scope="module")
def gguf_server(
    smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[LiveServer]:
    log = tmp_path_factory.mktemp("live-gguf") / "server.log"
    live = LiveServer(smollm2_gguf, log, "--served-model-name", "smollm2", "--max-model-len", "1024")
    live.model_name = "smollm2"
    try:
        request.getfixturevalue("smollm2_reference")  # loads while the server does
        live.wait_ready()
        yield live
    finally:
        assert live.stop() == 0, live.log()


@pytest.mark.slow
def test_live_gguf_chat_answers_with_the_reference_greedy_text(
    gguf_server: LiveServer, smollm2_reference: Reference
) -> None:
    client = openai.OpenAI(base_url=f"{gguf_server.url}/v1", api_key="unused", max_retries=0)
    assert [model.id for model in client.models.list()] == ["smollm2"]
    answer = client.chat.completions.create(
        model="smollm2", messages=chat(QUESTION), max_tokens=MAX_TOKENS, temperature=0
    )
    prompt = smollm2_reference.chat_ids(QUESTION)
    expected_ids = smollm2_reference.greedy(prompt, MAX_TOKENS, stop_at_eos=True)
    expected = smollm2_reference.tokenizer.decode(expected_ids, skip_special_tokens=True)
    assert "Paris" in expected  # the reference itself is a real answer, not noise
    assert answer.choices[0].message.content == expected
    stopped = expected_ids[-1] == smollm2_reference.tokenizer.eos_token_id
    assert answer.choices[0].finish_reason == ("stop" if stopped else "length")
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == len(prompt)
    assert answer.usage.completion_tokens == len(expected_ids)
