"""Builds a ready `LLMEngine` from a `RuntimeConfig`: tokenizer, model weights (from a Hugging Face
directory or a GGUF file, see `models.checkpoint`), context limit and KV cache size (explicit, or
derived from free device memory after a profiling forward pass).

The device half (`model_shard`: weights, KV cache, decode graphs) runs on every rank of a
tensor-parallel group alike; rank 0 alone adds the scheduler, tokenizer and sampler on top, after
starting the workers (`parallel.launcher`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from berth_runtime.config import RuntimeConfig
from berth_runtime.engine.block_manager import BlockManager
from berth_runtime.engine.llm_engine import LLMEngine
from berth_runtime.engine.model_shard import build_model_shard, resolve_max_model_len
from berth_runtime.engine.scheduler import Scheduler
from berth_runtime.engine.speculation import NgramSpeculator
from berth_runtime.models.checkpoint import open_checkpoint
from berth_runtime.models.registry import check_tensor_parallel_support
from berth_runtime.parallel.launcher import WorkerPool, start_workers
from berth_runtime.speculative import NgramProposer
from berth_runtime.tokenizer import Tokenizer

logger = logging.getLogger(__name__)


@dataclass
class BuiltEngine:
    engine: LLMEngine
    tokenizer: Tokenizer
    max_model_len: int
    num_kv_blocks: int
    workers: WorkerPool | None = None
    """Rank 0's tensor-parallel workers (None on one device)."""


def build_engine(config: RuntimeConfig) -> BuiltEngine:
    checkpoint = open_checkpoint(Path(config.model))
    model_config = checkpoint.config
    tokenizer = checkpoint.tokenizer
    if model_config.prequantization is not None and config.quantization != "none":
        raise ValueError(
            f"--quantization {config.quantization}: the checkpoint is already quantized "
            f"({model_config.prequantization.method}, its config.json's quantization_config) and is "
            "loaded as it says; accepted: --quantization none"
        )
    check_tensor_parallel_support(model_config, checkpoint.format, config.tensor_parallel_size)
    resolve_max_model_len(config, model_config)  # a bad --max-model-len fails before any worker starts
    workers = start_workers(config) if config.tensor_parallel_size > 1 else None
    try:
        built = build_model_shard(config, checkpoint, workers.group if workers else None)
    except BaseException:
        if workers is not None:
            workers.release()
        raise
    runner, max_model_len, num_blocks = built.runner, built.max_model_len, built.num_kv_blocks
    if workers is not None:
        runner.channel = workers.channel
    logger.info(
        "loaded %s (%s, %s) on %s%s: max_model_len=%d, %d KV blocks of %d tokens",
        checkpoint.path,
        model_config.architecture,
        checkpoint.format,
        runner.device,
        f" and {config.tensor_parallel_size - 1} worker(s)" if workers else "",
        max_model_len,
        num_blocks,
        config.block_size,
    )
    block_manager = BlockManager(num_blocks, config.block_size, config.enable_prefix_caching)
    scheduler = Scheduler(block_manager, config.max_num_seqs, config.max_num_batched_tokens)
    eos_token_ids = tuple(dict.fromkeys(tokenizer.eos_token_ids + model_config.eos_token_ids))
    speculator = None
    if config.speculative_method == "ngram":
        speculator = NgramSpeculator(NgramProposer(config.num_speculative_tokens), max_model_len)
    engine = LLMEngine(runner, scheduler, tokenizer, eos_token_ids, max_model_len, config.seed, speculator)
    return BuiltEngine(
        engine=engine,
        tokenizer=tokenizer,
        max_model_len=max_model_len,
        num_kv_blocks=num_blocks,
        workers=workers,
    )
