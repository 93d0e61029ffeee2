"""Builds a ready `LLMEngine` from a `RuntimeConfig`: tokenizer, model weights (from a Hugging Face
directory or a GGUF file, see `models.checkpoint`), context limit and KV cache size (explicit, or
derived from free device memory after a profiling forward pass)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from berth_runtime.config import RuntimeConfig
from berth_runtime.engine.block_manager import BlockManager
from berth_runtime.engine.decode_graphs import DecodeGraphs
from berth_runtime.engine.llm_engine import LLMEngine
from berth_runtime.engine.model_runner import (
    ModelRunner,
    allocate_kv_caches,
    kv_cache_bytes_per_block,
)
from berth_runtime.engine.scheduler import ScheduledRow, Scheduler
from berth_runtime.engine.sequence import Sequence
from berth_runtime.engine.speculation import NgramSpeculator
from berth_runtime.models.checkpoint import open_checkpoint
from berth_runtime.models.interface import CausalLM, KVCache
from berth_runtime.models.model_config import ModelConfig
from berth_runtime.quantization import quantize_linear_layers
from berth_runtime.sampling_params import SamplingParams
from berth_runtime.speculative import NgramProposer
from berth_runtime.tokenizer import Tokenizer

logger = logging.getLogger(__name__)

#: KV cache budget on the CPU when --kv-cache-blocks is not given.
CPU_KV_CACHE_BYTES = 2 * 1024**3


@dataclass
class BuiltEngine:
    engine: LLMEngine
    tokenizer: Tokenizer
    max_model_len: int
    num_kv_blocks: int


def resolve_max_model_len(config: RuntimeConfig, model_config: ModelConfig) -> int:
    limit = model_config.max_context_len
    if config.max_model_len is None:
        return limit
    if config.max_model_len > limit:
        raise ValueError(
            f"max_model_len={config.max_model_len} exceeds what the model supports ({limit}: "
            "max_position_embeddings, its sliding window, or LongRoPE's original length); "
            f"accepted: an integer <= {limit}"
        )
    return config.max_model_len


def _blocks_for(tokens: int, block_size: int) -> int:
    return -(-tokens // block_size)


def _profile_peak_bytes(model: CausalLM, config: RuntimeConfig, dtype: torch.dtype) -> int:
    """Peak device memory of one forward over a full token budget (weights + activations)."""
    device = torch.device(str(config.device))
    tokens = min(config.max_num_batched_tokens, model.max_positions)
    blocks = _blocks_for(tokens, config.block_size)
    runner = ModelRunner(
        model, allocate_kv_caches(model, blocks, config.block_size, dtype, device), config.block_size, device
    )
    seq = Sequence("profile", [0] * tokens, SamplingParams(), arrival=0)
    seq.block_table = list(range(blocks))
    torch.cuda.reset_peak_memory_stats(device)
    runner.run([ScheduledRow(seq, tokens)])
    torch.cuda.synchronize(device)
    peak = int(torch.cuda.max_memory_allocated(device))
    del runner
    torch.cuda.empty_cache()
    return peak


def resolve_num_kv_blocks(
    config: RuntimeConfig, model: CausalLM, dtype: torch.dtype, max_model_len: int
) -> int:
    per_block = kv_cache_bytes_per_block(model, config.block_size, dtype)
    needed = _blocks_for(max_model_len, config.block_size)
    if config.kv_cache_blocks:
        blocks = config.kv_cache_blocks
    elif config.device == "cuda":
        device = torch.device("cuda")
        _, total = torch.cuda.mem_get_info(device)
        budget = total * config.effective_gpu_memory_utilization - _profile_peak_bytes(model, config, dtype)
        blocks = int(budget // per_block)
    else:
        blocks = min(CPU_KV_CACHE_BYTES // per_block, config.max_num_seqs * needed)
        blocks = max(blocks, needed)
    if blocks < needed:
        raise ValueError(
            f"the KV cache holds {blocks} blocks of {config.block_size} tokens, but one sequence of "
            f"max_model_len={max_model_len} needs {needed}; raise --kv-cache-blocks or "
            "--gpu-memory-utilization, or lower --max-model-len"
        )
    return blocks


def _captured_decode_graphs(
    config: RuntimeConfig,
    model: CausalLM,
    kv_caches: list[KVCache],
    max_model_len: int,
    device: torch.device,
) -> DecodeGraphs | None:
    """CUDA graphs for decode at every batch bucket; None (decode runs eagerly) if capture fails."""
    graphs = DecodeGraphs(
        model, kv_caches, config.block_size, max_model_len, config.max_num_seqs, device, capture=True
    )
    try:
        graphs.capture_all()
    except RuntimeError as error:  # a slower engine beats one that cannot start
        logger.warning("CUDA graph capture failed, decode runs eagerly: %s", error)
        return None
    logger.info("captured decode CUDA graphs for batch sizes %s", graphs.buckets)
    return graphs


def build_engine(config: RuntimeConfig) -> BuiltEngine:
    checkpoint = open_checkpoint(Path(config.model))
    model_config = checkpoint.config
    tokenizer = checkpoint.tokenizer
    max_model_len = resolve_max_model_len(config, model_config)
    dtype = getattr(torch, config.dtype)
    device = torch.device(str(config.device))
    if model_config.prequantization is not None and config.quantization != "none":
        raise ValueError(
            f"--quantization {config.quantization}: the checkpoint is already quantized "
            f"({model_config.prequantization.method}, its config.json's quantization_config) and is "
            "loaded as it says; accepted: --quantization none"
        )
    model = checkpoint.load_model(dtype, device, max_positions=max_model_len)
    # Before KV sizing, so the memory the full-precision weights free goes to the cache.
    quantized = quantize_linear_layers(model, config.quantization)
    if quantized:
        logger.info("quantized %d linear layers to %s (weight-only)", quantized, config.quantization)
    num_blocks = resolve_num_kv_blocks(config, model, dtype, max_model_len)
    kv_caches = allocate_kv_caches(model, num_blocks, config.block_size, dtype, device)
    logger.info(
        "loaded %s (%s, %s) on %s: max_model_len=%d, %d KV blocks of %d tokens",
        checkpoint.path,
        model_config.architecture,
        checkpoint.format,
        device,
        max_model_len,
        num_blocks,
        config.block_size,
    )
    block_manager = BlockManager(num_blocks, config.block_size, config.enable_prefix_caching)
    scheduler = Scheduler(block_manager, config.max_num_seqs, config.max_num_batched_tokens)
    runner = ModelRunner(model, kv_caches, config.block_size, device)
    if device.type == "cuda" and model.supports_decode_graphs:
        runner.decode_graphs = _captured_decode_graphs(config, model, kv_caches, max_model_len, device)
    eos_token_ids = tuple(dict.fromkeys(tokenizer.eos_token_ids + model_config.eos_token_ids))
    speculator = None
    if config.speculative_method == "ngram":
        speculator = NgramSpeculator(NgramProposer(config.num_speculative_tokens), max_model_len)
    engine = LLMEngine(runner, scheduler, tokenizer, eos_token_ids, max_model_len, config.seed, speculator)
    return BuiltEngine(
        engine=engine, tokenizer=tokenizer, max_model_len=max_model_len, num_kv_blocks=num_blocks
    )
