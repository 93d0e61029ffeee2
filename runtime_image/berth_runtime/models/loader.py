"""Loads a Hugging Face layout directory (config.json + single or sharded safetensors) into a model.

Checkpoint tensors keep Hugging Face's names; the model says where each goes
(`CausalLM.checkpoint_destination`: q/k/v -> qkv_proj, gate/up -> gate_up_proj, …), so one loader
serves every family. Every shape is checked; a tensor missing, unexpected or the wrong shape fails
with the file and tensor name.

With tensor parallelism the model's destinations name the slice of each tensor this rank holds
(`WeightDestination.source`), and the loader reads only that slice (`get_slice`): no process ever
holds a whole weight it does not keep.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
from safetensors import safe_open

from berth_runtime.models.interface import CausalLM
from berth_runtime.models.model_config import ModelConfig, ModelDirectoryError, load_model_config, read_json
from berth_runtime.models.moe import SparseMoE
from berth_runtime.models.prequantized import (
    INT4_METHODS,
    STORED_DTYPES,
    float_tensors,
    store_fp8_blocks,
    store_linears_as_int4,
    stores_fp8,
)
from berth_runtime.models.registry import ARCHITECTURES
from berth_runtime.parallel.group import TensorShard
from berth_runtime.quantization import WeightOnlyLinear

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
# Checkpoint entries that are derived state, not weights.
_IGNORED = re.compile(r".*rotary_emb\.inv_freq$")


def weight_files(model_dir: Path) -> list[Path]:
    """The safetensors files of the checkpoint, from the index when there is one."""
    index_path = model_dir / INDEX_FILE
    if index_path.exists():
        weight_map = read_json(index_path).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelDirectoryError(f"{index_path}: 'weight_map' is missing or empty")
        files = [model_dir / name for name in sorted(set(weight_map.values()))]
        missing = [str(f.name) for f in files if not f.exists()]
        if missing:
            raise ModelDirectoryError(f"{index_path} names shards that are missing: {', '.join(missing)}")
        return files
    if (model_dir / SINGLE_FILE).exists():
        return [model_dir / SINGLE_FILE]
    shards = sorted(model_dir.glob("*.safetensors"))
    if shards:
        return shards
    found = ", ".join(sorted(p.name for p in model_dir.iterdir())) or "nothing"
    raise ModelDirectoryError(
        f"{model_dir} holds no safetensors weights ({SINGLE_FILE} or {INDEX_FILE} with shards); "
        f"found: {found}. "
        "PyTorch .bin checkpoints are not supported: convert them to safetensors"
    )


def load_weights(model: CausalLM, files: list[Path]) -> None:
    """Copies every checkpoint tensor into `model` (dtype converted; pre-quantized ones dequantized,
    see `prequantized`) where the model says it goes, then checks nothing is missing."""
    config = model.config
    module = cast(torch.nn.Module, model)
    params = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    filled: dict[int, int] = {}  # id(parameter) -> elements written
    with contextlib.ExitStack() as stack, torch.no_grad():
        file_of: dict[str, Path] = {}
        handles: dict[Path, Any] = {}
        for path in files:
            handles[path] = stack.enter_context(safe_open(str(path), framework="pt", device="cpu"))
            file_of.update(dict.fromkeys(handles[path].keys(), path))
        # A tied model's stored copy of the head is never read (with tensor parallelism, a whole
        # vocabulary-sized tensor no rank keeps).
        tied_head = "lm_head.weight" if config.tie_word_embeddings else None
        names = [name for name in file_of if not _IGNORED.match(name) and name != tied_head]

        def read(name: str) -> torch.Tensor:
            handle = handles[file_of[name]]
            destination = model.checkpoint_destination(name)
            sources = destination.source if destination is not None else None
            if sources is None:
                return cast(torch.Tensor, handle.get_tensor(name))
            stored = handle.get_slice(name)
            parts = [
                stored[(slice(None),) * part.dim + (slice(part.start, part.start + part.length),)]
                for part in sources
            ]
            return parts[0] if len(parts) == 1 else torch.cat(parts, dim=sources[0].dim)

        def keeps_fp8(name: str) -> bool:
            destination = model.checkpoint_destination(name)
            return destination is not None and destination.parameter.dtype in STORED_DTYPES

        for name, tensor in float_tensors(names, read, config.prequantization, keeps_fp8):
            source = file_of.get(name, file_of.get(name.removesuffix(".weight") + ".qweight"))
            where = source.name if source is not None else "checkpoint"
            target = model.checkpoint_destination(name)
            if target is None:
                if name == "lm_head.weight" and config.tie_word_embeddings:
                    continue
                raise ModelDirectoryError(
                    f"{where}: unexpected tensor {name!r} for {config.architecture}; "
                    "is config.json from the same checkpoint?"
                )
            destination = target.view()
            if tuple(tensor.shape) != tuple(destination.shape):
                raise ModelDirectoryError(
                    f"{where}: tensor {name!r} has shape {tuple(tensor.shape)}, "
                    f"config.json implies {tuple(destination.shape)}"
                )
            destination.copy_(tensor)
            key = id(target.parameter)
            filled[key] = filled.get(key, 0) + tensor.numel()
    missing = [name for name, p in params.items() if filled.get(id(p), 0) != p.numel()]
    if missing:
        raise ModelDirectoryError(
            f"the checkpoint lacks weights for: {', '.join(missing[:8])}{' …' if len(missing) > 8 else ''}"
        )


def store_linears_as_fp8(module: torch.nn.Module) -> None:
    """Swaps every `nn.Linear` for a `WeightOnlyLinear` with empty float8 weights and per-row scales,
    which the loader fills from an FP8 checkpoint as stored; a mixture of experts' stacked experts
    are held as stored too (its shared expert and router stay float)."""
    for parent in list(module.modules()):
        if isinstance(parent, SparseMoE):
            parent.store_experts_as_fp8()
            continue
        for child_name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear):
                device = child.weight.device
                qweight = torch.empty(child.weight.shape, dtype=torch.float8_e4m3fn, device=device)
                scale = torch.empty(child.out_features, dtype=torch.float32, device=device)
                bias = None if child.bias is None else child.bias.detach()
                setattr(parent, child_name, WeightOnlyLinear(qweight, scale, bias))


def build_model(
    config: ModelConfig,
    dtype: torch.dtype,
    device: torch.device,
    max_positions: int,
    load_weights_into: Callable[[CausalLM], None],
    shard: TensorShard | None = None,
) -> CausalLM:
    """Allocates the model for `config` (its family's class, see `registry`) on `device` in `dtype`
    (no init pass) and fills it with `load_weights_into`, the one step that differs between
    checkpoint formats. With a `shard`, only this rank's slices (families in
    `registry.TENSOR_PARALLEL_FAMILIES`)."""
    model_class: Callable[..., CausalLM] = ARCHITECTURES[config.architecture].model_class
    extra = () if shard is None else (shard,)
    with torch.device("meta"):
        module = cast(torch.nn.Module, model_class(config, dtype, max_positions, *extra))
    # stored forms swapped in while still on "meta": the float tensors they replace are never allocated
    prequantization = config.prequantization
    if prequantization is not None and prequantization.method == "fp8" and stores_fp8(device):
        store_linears_as_fp8(module)
    if prequantization is not None and prequantization.method == "fp8-block" and stores_fp8(device):
        store_fp8_blocks(module, config, prequantization.block_size)
    if prequantization is not None and prequantization.method in INT4_METHODS:
        store_linears_as_int4(module, config, prequantization.group_size, prequantization.method)
    module = module.to_empty(device=device).eval()
    model = cast(CausalLM, module)
    load_weights_into(model)
    model.init_rotary_tables(device)
    model.use_kernel_ops = device.type == "cuda"
    return model


def load_model(
    model_dir: Path,
    dtype: torch.dtype,
    device: torch.device,
    max_positions: int,
    shard: TensorShard | None = None,
) -> CausalLM:
    """Builds the model for `model_dir` on `device` in `dtype` with its weights (this rank's slices
    with a `shard`) loaded."""
    config = load_model_config(model_dir)
    files = weight_files(model_dir)
    return build_model(config, dtype, device, max_positions, lambda model: load_weights(model, files), shard)
