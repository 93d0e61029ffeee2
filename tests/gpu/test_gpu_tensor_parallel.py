"""Tensor parallelism on CUDA (NCCL), the paths the CPU tests (gloo) cannot reach: decode CUDA graphs
that capture the model's all-reduces, and ranks on separate GPUs.

- One GPU: the NCCL path with world size 1 through the same code (a real NCCL group, the sharded
  model built with it, every all-reduce issued and captured in the decode graphs) produces the
  greedy tokens of the model built without a group.
- Two GPUs or more: `build_engine` at --tensor-parallel-size 2 (rank 0 here on GPU 0, a spawned
  worker on GPU 1) produces the greedy tokens of the single-GPU engine, decode graphs on both.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
import torch

from berth_runtime.config import RuntimeConfig
from berth_runtime.engine.block_manager import BlockManager
from berth_runtime.engine.builder import build_engine
from berth_runtime.engine.llm_engine import LLMEngine
from berth_runtime.engine.model_shard import ModelShard, build_model_shard
from berth_runtime.engine.scheduler import Scheduler
from berth_runtime.models.checkpoint import Checkpoint
from berth_runtime.models.model_config import load_model_config
from berth_runtime.parallel.group import create_store, join_as_host, leave_group

NEW_TOKENS = 24
NUM_BLOCKS = 256
BLOCK_SIZE = 16


def _prompts() -> list[list[int]]:
    generator = torch.Generator().manual_seed(11)
    return [[1, *torch.randint(3, 1024, (length,), generator=generator).tolist()] for length in (3, 40, 129)]


def _config(checkpoint: Path, tensor_parallel_size: int = 1) -> RuntimeConfig:
    return RuntimeConfig(
        model=str(checkpoint),
        device="cuda",
        dtype="float32",
        kv_cache_blocks=NUM_BLOCKS,
        block_size=BLOCK_SIZE,
        max_model_len=512,
        max_num_seqs=8,
        tensor_parallel_size=tensor_parallel_size,
    )


def _engine(shard: ModelShard) -> LLMEngine:
    scheduler = Scheduler(BlockManager(NUM_BLOCKS, BLOCK_SIZE, False), 8, 2048)
    return LLMEngine(shard.runner, scheduler, None, (), shard.max_model_len, seed=0)


def test_nccl_with_world_size_1_captures_its_collectives_and_matches_no_group(
    tiny_llama_checkpoint: Path, greedy_tokens: Callable[[object, list[list[int]], int], list[list[int]]]
) -> None:
    config = _config(tiny_llama_checkpoint)
    checkpoint = Checkpoint(
        tiny_llama_checkpoint, "huggingface", load_model_config(tiny_llama_checkpoint), cast(Any, None), None
    )
    plain = build_model_shard(config, checkpoint, None)
    expected = greedy_tokens(_engine(plain), _prompts(), NEW_TOKENS)
    group = join_as_host(create_store(1), 1, "cuda")
    try:
        sharded = build_model_shard(config, checkpoint, group)
        assert sharded.runner.decode_graphs is not None, "capturing the all-reduces failed"
        assert greedy_tokens(_engine(sharded), _prompts(), NEW_TOKENS) == expected
    finally:
        leave_group()


@pytest.fixture
def checkpoint_with_tokenizer(tiny_llama_checkpoint: Path, tmp_path: Path) -> Path:
    """The tiny checkpoint plus a word-level tokenizer: workers open the checkpoint as the server does."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    for path in tiny_llama_checkpoint.iterdir():
        (tmp_path / path.name).symlink_to(path)
    tokenizer = Tokenizer(models.WordLevel({f"t{i}": i for i in range(1024)}, unk_token="t0"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    return tmp_path


def test_two_gpus_produce_the_single_gpu_greedy_tokens(
    checkpoint_with_tokenizer: Path,
    greedy_tokens: Callable[[object, list[list[int]], int], list[list[int]]],
) -> None:
    if torch.cuda.device_count() < 2:
        pytest.skip(f"needs two GPUs; this machine has {torch.cuda.device_count()}")
    single = build_engine(_config(checkpoint_with_tokenizer))
    expected = greedy_tokens(single.engine, _prompts(), NEW_TOKENS)
    del single
    sharded = build_engine(_config(checkpoint_with_tokenizer, tensor_parallel_size=2))
    assert sharded.workers is not None
    try:
        assert sharded.engine.runner.decode_graphs is not None
        assert greedy_tokens(sharded.engine, _prompts(), NEW_TOKENS) == expected
    finally:
        sharded.workers.stop()
