"""A small stand-in for AsyncEngine for in-process route tests (the live tests use the real engine).

It answers every request with the token 7 ('ok') and records each request's prompt and params, so
a test can check what the HTTP layer handed to the engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from berth_runtime.engine.outputs import EngineStats, RequestOutput
from berth_runtime.sampling_params import SamplingParams


class FakeTokenizer:
    vocab_size = 100
    longest_token_chars = 1

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [ord(character) % self.vocab_size for character in text]

    def decode(self, token_ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(chr(32 + token % 90) for token in token_ids)

    def apply_chat_template(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        return "".join(f"<{message['role']}>{message['content']}" for message in messages) + "<assistant>"


class FakeEngine:
    def __init__(self, fail_generation: bool = False, max_model_len: int = 64) -> None:
        self.tokenizer = FakeTokenizer()
        self.max_model_len = max_model_len
        self.max_queue = 256
        self.requests: list[tuple[str, list[int], SamplingParams]] = []
        self.fail_generation = fail_generation

    @property
    def request_ids(self) -> list[str]:
        return [request_id for request_id, _, _ in self.requests]

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def stats(self) -> EngineStats:
        return EngineStats()

    def generate(
        self, prompt: list[int], params: SamplingParams, request_id: str
    ) -> AsyncIterator[RequestOutput]:
        self.requests.append((request_id, prompt, params))
        return self._outputs(prompt, request_id)

    async def _outputs(self, prompt: list[int], request_id: str) -> AsyncIterator[RequestOutput]:
        if self.fail_generation:
            raise RuntimeError("the device fell over")
        yield RequestOutput(request_id, [7], "ok", True, "stop", len(prompt), 1)
