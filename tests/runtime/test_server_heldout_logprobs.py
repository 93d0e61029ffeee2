"""Logprobs name every token by its own bytes (issue #17 held-out defects), live and on the tiny
model's real byte-level tokenizer, where 128 of 320 tokens are one byte of a multi-byte character.

Before: completions' top_logprobs were keyed by each token's decoded text, so every such byte token
became the same "\\ufffd" key (asked 5, got fewer, a lower logprob overwriting a higher one), and
chat's `bytes` held U+FFFD's bytes [239, 191, 189] instead of the token's own ([227]). The server
fixture is in live_api_fixtures.py."""

from __future__ import annotations

from pathlib import Path

import openai
from live_server import LiveServer

from berth_runtime.engine.outputs import TokenLogprob
from berth_runtime.server.openai_format import chat_logprobs, completion_logprobs
from berth_runtime.tokenizer import Tokenizer

pytest_plugins = ["live_api_fixtures"]


def byte_token(tokenizer: Tokenizer, byte: int) -> int:
    """The id of the byte-level token that stands for `byte` alone."""
    (token_id,) = [
        token_id
        for token_id in range(tokenizer.vocab_size)
        if tokenizer.token_to_text(token_id) and tokenizer.token_bytes(token_id) == bytes([byte])
    ]
    return token_id


def test_distinct_byte_tokens_keep_distinct_labels_and_the_higher_logprob(tiny_llama_dir: Path) -> None:
    tokenizer = Tokenizer(tiny_llama_dir)
    e3, e4, a = byte_token(tokenizer, 0xE3), byte_token(tokenizer, 0xE4), tokenizer.encode("a", False)[0]
    entry = TokenLogprob(token_id=e3, logprob=-0.5, top={e3: -0.5, e4: -1.5, a: -2.5})
    listing = completion_logprobs(tokenizer, [entry])
    assert listing["tokens"] == ["bytes:\\xe3"]
    assert listing["top_logprobs"] == [{"bytes:\\xe3": -0.5, "bytes:\\xe4": -1.5, "a": -2.5}]
    chat = chat_logprobs(tokenizer, [entry])["content"][0]
    assert chat["token"] == "bytes:\\xe3" and chat["bytes"] == [0xE3]
    assert [alternative["bytes"] for alternative in chat["top_logprobs"]] == [[0xE3], [0xE4], [ord("a")]]


def test_completion_top_logprobs_hold_as_many_entries_as_asked(
    oai: openai.OpenAI, server: LiveServer
) -> None:
    completion = oai.completions.create(
        model=server.model_name, prompt="東京 and café", max_tokens=40, logprobs=5, temperature=1.0, seed=3
    )
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None and logprobs.top_logprobs is not None
    assert [len(top) for top in logprobs.top_logprobs] == [5] * 40
    assert not any("\ufffd" in label for top in logprobs.top_logprobs for label in top)
    assert any(label.startswith("bytes:") for top in logprobs.top_logprobs for label in top), (
        "the check needs byte tokens among the alternatives"
    )
    for top, token, chosen in zip(
        logprobs.top_logprobs, logprobs.tokens or [], logprobs.token_logprobs or [], strict=True
    ):
        assert top.get(token, chosen) == chosen, "the sampled token's entry keeps its own logprob"


def test_chat_logprob_bytes_are_each_tokens_own_bytes(oai: openai.OpenAI, server: LiveServer) -> None:
    chat = oai.chat.completions.create(
        model=server.model_name,
        messages=[{"role": "user", "content": "東京 and café"}],
        max_tokens=40,
        logprobs=True,
        top_logprobs=3,
        seed=5,
    )
    choice = chat.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content is not None
    entries = choice.logprobs.content
    joined = b"".join(bytes(entry.bytes or []) for entry in entries)
    assert joined.decode("utf-8", errors="replace") == choice.message.content
    assert any(len(entry.bytes or []) == 1 and (entry.bytes or [0])[0] >= 0x80 for entry in entries), (
        "the check needs a token that is one byte of a multi-byte character"
    )
    assert all(entry.bytes != [239, 191, 189] for entry in entries)
