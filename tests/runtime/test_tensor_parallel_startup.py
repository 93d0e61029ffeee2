"""What --tensor-parallel-size allows, decided from config.json before any weight is read: head counts
that split (and the sizes a model allows when they do not), the families, formats and checkpoints
that shard; and the sharding arithmetic every rank's slices come from."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from berth_runtime.cli import main
from berth_runtime.models.model_config import load_model_config
from berth_runtime.models.prequantized import PreQuantization
from berth_runtime.models.registry import check_tensor_parallel_support
from berth_runtime.parallel.sharding import ShardLayout, allowed_sizes


def _config_only(model_dir: Path, destination: Path, **changes: object) -> Path:
    """config.json (changed) and the tokenizer, no weights: a run that read weights would fail."""
    destination.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(model_dir / name, destination / name)
    config = json.loads((model_dir / "config.json").read_text())
    (destination / "config.json").write_text(json.dumps({**config, **changes}))
    return destination


def _serve_exit(model_dir: Path, tensor_parallel_size: int, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "serve",
                "--model",
                str(model_dir),
                "--device",
                "cpu",
                "--tensor-parallel-size",
                str(tensor_parallel_size),
            ]
        )
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_heads_that_do_not_split_exit_2_naming_the_sizes_the_model_allows(
    tiny_llama_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = _serve_exit(_config_only(tiny_llama_dir, tmp_path / "llama"), 3, capsys)
    assert "invalid tensor_parallel_size=3 (--tensor-parallel-size)" in message
    assert "4 attention heads and 2 KV heads" in message
    assert "accepted values for this model: 1, 2, 4" in message


@pytest.mark.parametrize(
    ("architecture", "fields"),
    [
        ("MixtralForCausalLM", {"model_type": "mixtral", "num_local_experts": 4, "num_experts_per_tok": 2}),
        ("Gemma2ForCausalLM", {"model_type": "gemma2", "hidden_activation": "gelu_pytorch_tanh"}),
    ],
)
def test_a_family_that_does_not_shard_exits_2_listing_those_that_do(
    architecture: str,
    fields: dict[str, object],
    tiny_llama_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    other = _config_only(tiny_llama_dir, tmp_path / "other", architectures=[architecture], **fields)
    message = _serve_exit(other, 2, capsys)
    assert f"{architecture} runs on one GPU" in message
    assert (
        "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Phi3ForCausalLM" in message
    )


def test_gguf_and_prequantized_checkpoints_are_refused_above_one_rank(tiny_llama_dir: Path) -> None:
    config = load_model_config(tiny_llama_dir)
    check_tensor_parallel_support(config, "huggingface", 2)
    with pytest.raises(ValueError, match="GGUF checkpoints run on one GPU; accepted for this model: 1"):
        check_tensor_parallel_support(config, "gguf", 2)
    awq = dataclasses.replace(config, prequantization=PreQuantization("awq", group_size=32))
    with pytest.raises(ValueError, match=r"pre-quantized checkpoints \(awq\) run on one GPU"):
        check_tensor_parallel_support(awq, "huggingface", 2)
    check_tensor_parallel_support(awq, "huggingface", 1)


def test_allowed_sizes_follow_the_heads_and_the_mlp() -> None:
    assert allowed_sizes(32, 8, 14336) == [1, 2, 4, 8, 16]  # Llama 3 8B: KV heads replicated at 16
    assert allowed_sizes(28, 4, 18944) == [1, 2, 4]  # Qwen2 7B
    assert allowed_sizes(40, 8, 13824) == [1, 2, 4, 8]  # 8 KV heads: 5 and 10 neither divide nor are divided
    assert allowed_sizes(4, 2, 130) == [1, 2]  # the MLP's 130 columns do not split in 4


@pytest.mark.parametrize(("heads", "kv_heads", "world_size"), [(4, 2, 2), (4, 2, 4), (8, 1, 4), (32, 8, 16)])
def test_every_head_and_vocabulary_row_is_held_and_queries_keep_their_kv_head(
    heads: int, kv_heads: int, world_size: int
) -> None:
    layouts = [ShardLayout(rank, world_size, heads, kv_heads, 16, 64, 323) for rank in range(world_size)]
    rows = [
        row
        for layout in layouts
        for row in range(layout.vocab_start, layout.vocab_start + layout.local_vocab)
    ]
    assert rows == list(range(323))
    group = heads // kv_heads
    for layout in layouts:
        for head in range(layout.head_start, layout.head_start + layout.local_heads):
            local_kv = (head - layout.head_start) // (layout.local_heads // layout.local_kv_heads)
            assert head // group == layout.kv_head_start + local_kv
    held = {layout.kv_head_start + index for layout in layouts for index in range(layout.local_kv_heads)}
    assert held == set(range(kv_heads))
