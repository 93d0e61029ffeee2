"""One rank's device half of the engine: the model (its slices, with tensor parallelism), the KV
cache sized from memory (explicit, or what is left after a profiling forward pass) and the model
runner, with decode CUDA graphs on CUDA. Every rank of a tensor-parallel group runs
`build_model_shard` alike, so their collectives line up; it imports nothing of the scheduler or the
sampler, so a worker process starts without them."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from berth_runtime.config import RuntimeConfig
from berth_runtime.engine.decode_graphs import DecodeGraphs
from berth_runtime.engine.model_runner import ModelRunner, allocate_kv_caches, kv_cache_bytes_per_block
from berth_runtime.engine.scheduler import ScheduledRow
from berth_runtime.engine.sequence import Sequence
from berth_runtime.models.checkpoint import Checkpoint
from berth_runtime.models.interface import CausalLM, KVCache
from berth_runtime.models.model_config import ModelConfig
from berth_runtime.parallel.group import ShardGroup, TensorShard
from berth_runtime.parallel.sharding import ShardLayout
from berth_runtime.quantization import quantize_linear_layers
from berth_runtime.sampling_params import SamplingParams

logger = logging.getLogger(__name__)

#: KV cache budget on the CPU when --kv-cache-blocks is not given.
CPU_KV_CACHE_BYTES = 2 * 1024**3


@dataclass
class ModelShard:
    """One rank's model, KV cache and runner (the whole model on one device)."""

    runner: ModelRunner
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
    config: RuntimeConfig,
    model: CausalLM,
    dtype: torch.dtype,
    max_model_len: int,
    group: ShardGroup | None = None,
) -> int:
    """Blocks of the KV cache: explicit, or what device memory allows; with a tensor-parallel
    `group` the smallest any rank allows, so one block table addresses every rank's cache."""
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
    if group is not None:
        blocks = group.agree_min(blocks)
    # Rank 0 alone refuses, so its exit-2 message ends the server rather than a worker's exit racing
    # it; a worker goes on and is ended by rank 0.
    if blocks < needed and (group is None or group.rank == 0):
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


def build_model_shard(config: RuntimeConfig, checkpoint: Checkpoint, group: ShardGroup | None) -> ModelShard:
    """This rank's model (its slices with a `group`), KV cache and runner; every rank runs this."""
    model_config = checkpoint.config
    max_model_len = resolve_max_model_len(config, model_config)
    dtype = getattr(torch, config.dtype)
    device = torch.device(str(config.device)) if group is None else group.device
    shard = None
    if group is not None:
        layout = ShardLayout(
            group.rank,
            group.world_size,
            model_config.num_heads,
            model_config.num_kv_heads,
            model_config.head_dim,
            model_config.intermediate_size,
            model_config.vocab_size,
        )
        shard = TensorShard(layout, group)
    model = checkpoint.load_model(dtype, device, max_model_len, shard)
    # Before KV sizing, so the memory the full-precision weights free goes to the cache; after
    # sharding, so each rank quantizes its own slices.
    quantized = quantize_linear_layers(model, config.quantization)
    if quantized:
        logger.info("quantized %d linear layers to %s (weight-only)", quantized, config.quantization)
    num_blocks = resolve_num_kv_blocks(config, model, dtype, max_model_len, group)
    kv_caches = allocate_kv_caches(model, num_blocks, config.block_size, dtype, device)
    runner = ModelRunner(model, kv_caches, config.block_size, device)
    if device.type == "cuda" and model.supports_decode_graphs:
        graphs = _captured_decode_graphs(config, model, kv_caches, max_model_len, device)
        if group is not None and group.agree_min(int(graphs is not None)) == 0:
            graphs = None  # every rank replays graphs or none does: a graph holds a collective
        runner.decode_graphs = graphs
    return ModelShard(runner, max_model_len, num_blocks)
