"""A GGUF file the runtime cannot serve fails at start with a ValueError that names the file, the key
and what is accepted: another architecture, a tokenizer other than byte-level BPE, an unknown
pre-tokenizer, a mixture of experts, unsupported rope scaling, a tensor type gguf cannot dequantize,
a split file, a file that is not GGUF, a directory with two GGUF files. The same error stops
`build_engine`, which the server runs before it turns ready."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from engine_reference import engine_config
from gguf_writer import minimal_gguf

from berth_runtime.engine.builder import build_engine
from berth_runtime.models.checkpoint import gguf_file_for, open_checkpoint
from berth_runtime.models.model_config import ModelDirectoryError

LLAMA_KEYS: dict[str, Any] = {
    "llama.context_length": 64,
    "llama.embedding_length": 4,
    "llama.feed_forward_length": 8,
    "llama.block_count": 1,
    "llama.attention.head_count": 2,
    "llama.attention.head_count_kv": 1,
    "llama.attention.layer_norm_rms_epsilon": 1e-5,
    "tokenizer.ggml.model": "gpt2",
    "tokenizer.ggml.pre": "gpt-2",
    "tokenizer.ggml.tokens": ["a", "b", "c", "ab", "<|end|>", "d", "e", "f"],
    "tokenizer.ggml.merges": ["a b"],
    "tokenizer.ggml.token_type": [1, 1, 1, 1, 3, 1, 1, 1],
    "tokenizer.ggml.eos_token_id": 4,
}


def llama_file(tmp_path: Path, name: str = "model.gguf", changes: dict[str, Any] | None = None) -> Path:
    """A minimal llama GGUF with `changes` applied to its metadata (None removes a key)."""
    metadata = {**LLAMA_KEYS, **(changes or {})}
    return minimal_gguf(tmp_path / name, {k: v for k, v in metadata.items() if v is not None})


def test_the_minimal_file_is_accepted(tmp_path: Path) -> None:
    """The baseline the refusals below change one key of."""
    checkpoint = open_checkpoint(llama_file(tmp_path))
    assert (checkpoint.config.vocab_size, checkpoint.config.head_dim) == (8, 2)
    assert checkpoint.tokenizer.encode("ab<|end|>c") == [3, 4, 2]


def test_unsupported_architecture_names_the_supported_one(tmp_path: Path) -> None:
    path = minimal_gguf(tmp_path / "gemma.gguf", {"gemma2.context_length": 64}, architecture="gemma2")
    with pytest.raises(ValueError, match=r"architecture 'gemma2' \(general.architecture\).*accepted: llama"):
        open_checkpoint(path)
    # What the server runs before it turns ready: the same refusal, before any weight is read.
    with pytest.raises(ValueError, match=r"gemma\.gguf: GGUF architecture 'gemma2'"):
        build_engine(engine_config(path))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"tokenizer.ggml.model": "llama"},
            r"tokenizer model 'llama' \(tokenizer.ggml.model\) is not supported; "
            r"accepted: gpt2 \(byte-level BPE\)",
        ),
        (
            {"tokenizer.ggml.pre": "some-new-model"},
            r"pre-tokenizer 'some-new-model' \(tokenizer.ggml.pre\) is not supported; "
            r"accepted: .*gpt-2.*smollm",
        ),
        ({"tokenizer.ggml.pre": None}, r"pre-tokenizer None \(tokenizer.ggml.pre\) is not supported"),
        ({"llama.expert_count": 8}, r"mixture-of-experts model \(llama.expert_count=8\) is not supported"),
        (
            {"llama.rope.scaling.type": "yarn"},
            r"llama.rope.scaling.type 'yarn' is not supported; accepted: none, linear",
        ),
        ({"llama.rope.dimension_count": 1}, r"llama.rope.dimension_count=1 differs from the head size 2"),
        ({"llama.attention.head_count_kv": 3}, r"head_count=2 is not a multiple of .*head_count_kv=3"),
        ({"llama.block_count": None}, r"GGUF metadata key 'llama.block_count' is missing"),
        ({"split.count": 3}, r"one part of a split GGUF model \(split.count=3\)"),
    ],
)
def test_unsupported_metadata_fails_naming_the_key(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ModelDirectoryError, match=message):
        open_checkpoint(llama_file(tmp_path, changes=changes))


def test_a_tensor_type_gguf_cannot_dequantize_fails_before_loading(tmp_path: Path) -> None:
    path = minimal_gguf(
        tmp_path / "ints.gguf", LLAMA_KEYS, tensors={"token_embd.weight": np.zeros((8, 4), dtype=np.int32)}
    )
    with pytest.raises(
        ModelDirectoryError, match=r"tensor 'token_embd.weight' is stored as I32, which .* cannot"
    ):
        build_engine(engine_config(path))


def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"PK\x03\x04 not a gguf file")
    with pytest.raises(ModelDirectoryError, match=r"is a file but not a GGUF file.*accepted: a GGUF file"):
        open_checkpoint(path)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(llama_file(tmp_path).read_bytes()[:200])
    with pytest.raises(ModelDirectoryError, match=r"truncated.gguf is not a readable GGUF file"):
        open_checkpoint(truncated)
    with pytest.raises(ModelDirectoryError, match=r"missing.gguf: the GGUF file does not exist"):
        open_checkpoint(tmp_path / "missing.gguf")


def test_a_directory_with_two_gguf_files_asks_for_one(tmp_path: Path) -> None:
    llama_file(tmp_path, "a.Q4_0.gguf")
    llama_file(tmp_path, "b.Q8_0.gguf")
    with pytest.raises(
        ModelDirectoryError, match=r"holds 2 GGUF files \(a.Q4_0.gguf, b.Q8_0.gguf\); accepted: exactly one"
    ):
        gguf_file_for(tmp_path)
