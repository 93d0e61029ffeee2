"""The model families this runtime serves, keyed by the `architectures` name in config.json: the one
place a new family is added (its module defines a `ModelFamily`; list it here). An architecture not
listed fails at start-up with the list of the supported ones.
"""

from __future__ import annotations

from pathlib import Path

from berth_runtime.models import gemma, llama, mixtral, phi3, qwen3, qwen_moe
from berth_runtime.models.interface import ModelFamily
from berth_runtime.models.model_config import ModelConfig, UnsupportedModelError
from berth_runtime.parallel.sharding import check_tensor_parallel

FAMILIES: tuple[ModelFamily, ...] = (
    llama.FAMILY,
    qwen3.FAMILY,
    phi3.FAMILY,
    gemma.FAMILY,
    mixtral.FAMILY,
    qwen_moe.FAMILY,
)

ARCHITECTURES: dict[str, ModelFamily] = {
    architecture: family for family in FAMILIES for architecture in family.architectures
}

SUPPORTED_ARCHITECTURES = tuple(ARCHITECTURES)

TENSOR_PARALLEL_FAMILIES = ("llama", "qwen3", "phi3")
"""Families whose layers shard (`layers`, with a `TensorShard`): Llama, Mistral, Qwen2, Qwen3 and
Phi-3. Gemma and the mixtures of experts have layers of their own: they run on one GPU."""


def check_tensor_parallel_support(config: ModelConfig, checkpoint_format: str, world_size: int) -> None:
    """ValueError (exit 2, before any weight loads) when this checkpoint cannot run split over
    `world_size` ranks: a family, format or head count that does not shard, naming what would."""
    if world_size == 1:
        return
    flag = f"tensor_parallel_size={world_size} (--tensor-parallel-size)"
    family = ARCHITECTURES[config.architecture]
    if family.name not in TENSOR_PARALLEL_FAMILIES:
        architectures = ", ".join(
            architecture for name in TENSOR_PARALLEL_FAMILIES for architecture in _family(name).architectures
        )
        raise ValueError(
            f"invalid {flag}: {config.architecture} runs on one GPU in this build; tensor parallelism "
            f"supports {architectures}; accepted for this model: 1"
        )
    if checkpoint_format == "gguf":
        raise ValueError(f"invalid {flag}: GGUF checkpoints run on one GPU; accepted for this model: 1")
    if config.prequantization is not None:
        raise ValueError(
            f"invalid {flag}: pre-quantized checkpoints ({config.prequantization.method}) run on one GPU "
            "in this build (runtime --quantization int8/fp8 shards); accepted for this model: 1"
        )
    check_tensor_parallel(world_size, config.num_heads, config.num_kv_heads, config.intermediate_size)


def _family(name: str) -> ModelFamily:
    return next(family for family in FAMILIES if family.name == name)


def family_for(architecture: object, path: Path) -> ModelFamily:
    """The family serving `architecture` (config.json's first `architectures` entry, read from `path`)."""
    family = ARCHITECTURES.get(architecture) if isinstance(architecture, str) else None
    if family is None:
        raise UnsupportedModelError(
            f"{path}: architecture {architecture!r} is not supported by this runtime; "
            f"accepted: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    return family
