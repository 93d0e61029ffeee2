"""The tokenizer built from a GGUF file's metadata (no tokenizer.json) encodes, decodes and renders the
chat template exactly as `transformers` does from the same file, on the SmolLM2 GGUF: byte-level BPE
with SmolLM's digit split, control tokens matched whole, the template from tokenizer.chat_template."""

from __future__ import annotations

import pytest

from berth_runtime.models.checkpoint import Checkpoint
from berth_runtime.tokenizer import Tokenizer
from tests.smollm2_reference import CHAT_PROMPTS, Reference, chat

pytest_plugins = ["gguf_fixtures"]

TEXTS = [
    "Hello world",
    " leading space and  two  spaces ",
    "naïve café, 東京, Ελληνικά, emoji 🚀🇫🇷 and ümlauts",
    "numbers 12345 and 3.14159, dates 2024-11-26",
    "tabs\tand\nnewlines\n\n  indented\r\n",
    "I'm sure they'll say we've done it, don't you?",
    "<|im_start|>user\nhi<|im_end|>",
    "def f(x):\n    return x**2  # square",
    "",
]


@pytest.fixture
def tokenizer(smollm2_checkpoint: Checkpoint) -> Tokenizer:
    return smollm2_checkpoint.tokenizer


@pytest.mark.parametrize("add_special_tokens", [True, False])
def test_gguf_tokenizer_ids_match_transformers(
    tokenizer: Tokenizer, smollm2_reference: Reference, add_special_tokens: bool
) -> None:
    reference = smollm2_reference.tokenizer
    for text in TEXTS:
        expected = reference.encode(text, add_special_tokens=add_special_tokens)
        assert tokenizer.encode(text, add_special_tokens=add_special_tokens) == expected, text


def test_gguf_tokenizer_decodes_like_transformers(tokenizer: Tokenizer, smollm2_reference: Reference) -> None:
    reference = smollm2_reference.tokenizer
    for text in TEXTS:
        ids = reference.encode(text, add_special_tokens=False)
        assert tokenizer.decode(ids, skip_special_tokens=False) == text
        assert tokenizer.decode(ids) == reference.decode(ids, skip_special_tokens=True)


def test_gguf_control_tokens_are_whole_and_special(tokenizer: Tokenizer) -> None:
    assert tokenizer.encode("<|im_start|><|im_end|>", add_special_tokens=False) == [1, 2]
    assert tokenizer.decode([1, 19556, 2]) == "Hello"  # special tokens skipped when decoding
    assert tokenizer.eos_token_ids == (2,)  # tokenizer.ggml.eos_token_id: <|im_end|>
    assert (tokenizer.bos_token, tokenizer.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert tokenizer.vocab_size == 49152


@pytest.mark.parametrize("content", CHAT_PROMPTS[:2])
def test_gguf_chat_template_matches_transformers(
    tokenizer: Tokenizer, smollm2_reference: Reference, content: str
) -> None:
    conversations = [
        chat(content),
        [{"role": "system", "content": "You answer in French."}, *chat(content)],
        [*chat(content), {"role": "assistant", "content": "Sure."}, *chat("Thanks! 🙏")],
    ]
    for messages in conversations:
        expected = smollm2_reference.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        rendered = tokenizer.apply_chat_template(messages)
        assert rendered == expected
        assert rendered.endswith("<|im_start|>assistant\n")
    prompt_ids = tokenizer.encode(tokenizer.apply_chat_template(chat(content)), add_special_tokens=False)
    assert prompt_ids == smollm2_reference.chat_ids(content)
