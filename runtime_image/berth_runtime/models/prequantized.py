"""Pre-quantized checkpoints: what config.json's `quantization_config` says, and the reference
dequantization of each format's tensors to float32 at load.

Formats, as their libraries write them:
- FP8 (`compressed-tensors`, format "float-quantized", 8-bit float weights, per-tensor or
  per-channel scales): `W.weight` float8_e4m3fn [out, in], `W.weight_scale` [1] or [out, 1];
  `W.input_scale` (static activation scales) is not used: activations stay in the serving dtype.
- FP8 block-wise (transformers' "fp8", as Qwen3 and DeepSeek publish it): `W.weight` float8_e4m3fn
  [out, in], `W.weight_scale_inv` [ceil(out / rows), ceil(in / columns)] for `weight_block_size`
  [rows, columns] blocks; activations stay in the serving dtype (no dynamic FP8 activations). Kept
  as stored by `store_fp8_blocks`, scales as `W.weight_scale`.
- 4-bit weights (AWQ GEMM, GPTQ, compressed-tensors "pack-quantized"): see `int4_formats`.

FP8 weights are served as stored where the device runs FP8 (the CPU reference, CUDA compute
capability >= 8.9): the decoder's linears become `WeightOnlyLinear`s holding the float8 weights and
a per-output-channel scale (a per-tensor scale repeated per row), so fused q/k/v and gate/up simply
concatenate rows; with block-wise FP8 they hold the block scales (the weight-only kernel's block
mode), and fused parts concatenate whole row blocks. 4-bit weights are served as stored too, on
every device: the decoder's linears become `quantization.Int4Linear`s and each checkpoint linear is
converted once to berth's output-major int4 layout (`kernels.int4_linear`: `.weight` packed
[out, in / 8], `.weight_scale` [out, groups], `.weight_zero` [out, groups], and where act-order is possible
`.input_permutation` [1, in], inputs sorted by group so each group is contiguous). A mixture of
experts' stacked experts take the same stored forms per expert (`quantization.QuantizedExperts`,
filled through the same names), and block-wise FP8 too (its `weight_scale_inv` as `.weight_scale`).
Anything else (FP8 on a GPU without e4m3, fused block-wise FP8 parts that split a row block, an int4
linear or expert whose shape the layout cannot take, a shared expert outside block-wise FP8) becomes
one float `W.weight` tensor [out, in], copied like any other weight.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from berth_runtime.kernels.torch_reference import dequantize_fp8_blocks
from berth_runtime.models.int4_formats import (
    Int4Parts,
    awq_to_int4,
    dequantize_awq,
    dequantize_gptq,
    dequantize_pack_quantized,
    gptq_to_int4,
    pack_quantized_to_int4,
)
from berth_runtime.models.layers import fused_split_sizes
from berth_runtime.models.model_config import ModelConfig, ModelDirectoryError, UnsupportedModelError
from berth_runtime.models.moe import SparseMoE
from berth_runtime.quantization.int4_linear import Int4Linear
from berth_runtime.quantization.linear import WeightOnlyLinear

logger = logging.getLogger(__name__)

PREQUANTIZED_FORMATS = (
    "compressed-tensors float-quantized (FP8)",
    "fp8 with weight_block_size",
    "awq (4-bit GEMM)",
    "gptq (4-bit)",
    "compressed-tensors pack-quantized (4-bit int, group or channel)",
)
INT4_METHODS = ("awq", "gptq", "pack-quantized")
STORED_DTYPES = (torch.float8_e4m3fn, torch.int32)
"""A destination of one of these dtypes takes the checkpoint's weight as stored (FP8, packed int4)."""
# Architectures whose checkpoints store q/k/v and gate/up already fused (one tensor per fused linear).
_FUSED_CHECKPOINTS = ("Phi3ForCausalLM",)
_PACKED_PARTS = {
    "awq": ("qweight", "qzeros", "scales"),
    "gptq": ("qweight", "qzeros", "scales", "g_idx"),
    "pack-quantized": ("weight_packed", "weight_scale", "weight_shape", "weight_zero_point", "weight_g_idx"),
}


@dataclass(frozen=True)
class PreQuantization:
    method: str
    """"fp8" (per tensor or channel), "fp8-block", "awq", "gptq" or "pack-quantized"."""
    group_size: int = 0
    """Inputs per scale and zero (4-bit); 0: one group per output channel (pack-quantized "channel")."""
    act_order: bool = True
    """Inputs may be permuted by a `g_idx` (gptq; pack-quantized with actorder "group")."""
    block_size: tuple[int, int] = (0, 0)
    """Rows and columns per scale (fp8-block)."""


def read_prequantization(config: dict[str, Any], path: Path) -> PreQuantization | None:
    """The checkpoint's quantization from config.json's `quantization_config`; None if it has none.
    A format this runtime cannot load fails naming the supported ones."""
    settings = config.get("quantization_config")
    if settings is None:
        return None
    method = settings.get("quant_method") if isinstance(settings, dict) else None

    def unsupported(detail: str) -> UnsupportedModelError:
        return UnsupportedModelError(
            f"{path}: quantization_config {detail} is not supported; "
            f"accepted: {', '.join(PREQUANTIZED_FORMATS)}"
        )

    if method == "compressed-tensors" and settings.get("format") == "pack-quantized":
        return _read_pack_quantized(settings, unsupported)
    if method == "compressed-tensors":
        if settings.get("format") != "float-quantized":
            raise unsupported(f"compressed-tensors format {settings.get('format')!r}")
        for group in (settings.get("config_groups") or {}).values():
            weights = group.get("weights") or {}
            if (weights.get("type"), weights.get("num_bits"), weights.get("strategy")) not in (
                ("float", 8, "tensor"),
                ("float", 8, "channel"),
            ):
                raise unsupported(f"weights {weights!r}")
        return PreQuantization("fp8")
    if method == "fp8":
        block = settings.get("weight_block_size")
        if not (
            isinstance(block, list) and len(block) == 2 and all(isinstance(n, int) and n > 0 for n in block)
        ):
            raise unsupported(f"fp8 with weight_block_size={block!r} (expected [rows, columns])")
        return PreQuantization("fp8-block", block_size=(block[0], block[1]))
    if method in ("awq", "gptq"):
        bits, group_size = (
            settings.get("bits", settings.get("w_bit")),
            settings.get("group_size", settings.get("q_group_size")),
        )
        version = str(settings.get("version", "gemm")).lower()
        if (
            bits != 4
            or not isinstance(group_size, int)
            or group_size < 1
            or (method == "awq" and version != "gemm")
        ):
            raise unsupported(f"{method} with bits={bits!r}, group_size={group_size!r}, version={version!r}")
        if method == "gptq" and settings.get("checkpoint_format", "gptq") != "gptq":
            raise unsupported(f"gptq checkpoint_format {settings.get('checkpoint_format')!r}")
        return PreQuantization(method, group_size, act_order=method == "gptq")
    raise unsupported(f"quant_method {method!r}")


def _read_pack_quantized(
    settings: dict[str, Any], unsupported: Callable[[str], UnsupportedModelError]
) -> PreQuantization:
    """compressed-tensors "pack-quantized": every config group 4-bit int weights, one strategy."""
    schemes: set[tuple[int, bool]] = set()
    for group in (settings.get("config_groups") or {}).values():
        weights = group.get("weights") or {}
        strategy, group_size = weights.get("strategy"), weights.get("group_size")
        if (weights.get("type"), weights.get("num_bits")) != ("int", 4) or not (
            strategy == "channel" or (strategy == "group" and isinstance(group_size, int) and group_size > 0)
        ):
            raise unsupported(f"compressed-tensors format 'pack-quantized' with weights {weights!r}")
        schemes.add(
            (
                group_size if isinstance(group_size, int) and strategy == "group" else 0,
                weights.get("actorder") == "group",
            )
        )
    if len(schemes) != 1:
        raise unsupported(f"compressed-tensors format 'pack-quantized' with {len(schemes)} weight schemes")
    group_size, act_order = schemes.pop()
    return PreQuantization("pack-quantized", group_size, act_order=act_order)


def dequantize_fp8(weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """weight: float8 [out, in]; scale: [1] / [] (per tensor) or [out, 1] (per channel) -> float32."""
    scale = scale.float()
    return weight.float() * (scale.view(-1, 1) if scale.numel() > 1 else scale.reshape(()))


def stores_fp8(device: torch.device) -> bool:
    """FP8 weights run as stored on this device (the weight-only kernel needs e4m3: Ada, Hopper)."""
    return device.type != "cuda" or torch.cuda.get_device_capability(device) >= (8, 9)


def float_tensors(
    names: list[str],
    read: Callable[[str], torch.Tensor],
    quantization: PreQuantization | None,
    keeps_fp8: Callable[[str], bool],
) -> Iterator[tuple[str, torch.Tensor]]:
    """The checkpoint's tensors by name, each quantized linear's parts replaced by its float32
    `.weight`, except weights whose destination `keeps_fp8` (name of the `.weight` -> bool: a
    `STORED_DTYPES` destination) takes them as stored: FP8 with its scale as `.weight_scale` [out]
    float32, 4-bit formats in berth's int4 layout (`_int4_parts`). `read` returns a stored tensor by name."""
    if quantization is None:
        yield from ((name, read(name)) for name in names)
        return
    available = set(names)
    for name in names:
        if quantization.method == "fp8-block":
            scale_name = name.removesuffix(".weight") + ".weight_scale_inv"
            if name.endswith(".weight_scale_inv"):
                continue
            if name.endswith(".weight") and scale_name in available and keeps_fp8(name):
                yield name, read(name)  # a stored expert: its block scales as `.weight_scale`
                yield name.removesuffix(".weight") + ".weight_scale", read(scale_name).float()
            elif name.endswith(".weight") and scale_name in available:
                yield name, dequantize_fp8_blocks(read(name), read(scale_name), quantization.block_size)
            else:
                yield name, read(name)
            continue
        if quantization.method == "fp8":
            if name.endswith((".weight_scale", ".input_scale")):
                continue
            scale_name = name.removesuffix(".weight") + ".weight_scale"
            if name.endswith(".weight") and scale_name in available and keeps_fp8(name):
                weight = read(name)
                yield name, weight
                yield scale_name, read(scale_name).float().reshape(-1).expand(weight.shape[0]).contiguous()
            elif name.endswith(".weight") and scale_name in available:
                yield name, dequantize_fp8(read(name), read(scale_name))
            else:
                yield name, read(name)
            continue
        prefix, _, part = name.rpartition(".")
        parts = _PACKED_PARTS[quantization.method]
        if part not in parts:
            yield name, read(name)
        elif part == parts[0]:  # the packed weight: the linear's other parts are read with it
            yield from _int4_tensors(prefix, read, available, quantization, keeps_fp8(f"{prefix}.weight"))


def _int4_tensors(
    prefix: str,
    read: Callable[[str], torch.Tensor],
    available: set[str],
    quantization: PreQuantization,
    stored: bool,
) -> Iterator[tuple[str, torch.Tensor]]:
    """One 4-bit linear's tensors: berth's int4 layout when `stored`, else its float32 `.weight`."""
    method = quantization.method
    optional = ("g_idx", "weight_shape", "weight_zero_point", "weight_g_idx")
    missing = [p for p in _PACKED_PARTS[method] if p not in optional and f"{prefix}.{p}" not in available]
    if missing:
        raise ModelDirectoryError(f"quantized {prefix!r} lacks {', '.join(missing)}")

    def part(name: str) -> torch.Tensor | None:
        return read(f"{prefix}.{name}") if f"{prefix}.{name}" in available else None

    parts: Int4Parts
    if method == "awq":
        qweight, qzeros, scales = (read(f"{prefix}.{p}") for p in ("qweight", "qzeros", "scales"))
        if not stored:
            yield f"{prefix}.weight", dequantize_awq(qweight, qzeros, scales, quantization.group_size)
            return
        parts = awq_to_int4(qweight, qzeros, scales)
    elif method == "gptq":
        qweight, qzeros, scales = (read(f"{prefix}.{p}") for p in ("qweight", "qzeros", "scales"))
        group_index = part("g_idx")
        if group_index is None:
            group_index = torch.arange(qweight.shape[0] * 8) // quantization.group_size
        if not stored:
            yield f"{prefix}.weight", dequantize_gptq(qweight, qzeros, scales, group_index)
            return
        parts = gptq_to_int4(qweight, qzeros, scales, group_index, prefix)
    else:
        packed, scale = read(f"{prefix}.weight_packed"), read(f"{prefix}.weight_scale")
        zero_point, group_index = part("weight_zero_point"), part("weight_g_idx")
        if not stored:
            yield f"{prefix}.weight", dequantize_pack_quantized(packed, scale, zero_point, group_index)
            return
        parts = pack_quantized_to_int4(packed, scale, zero_point, group_index, prefix)
        if quantization.act_order and parts[3] is None:  # the layer has an input order to fill
            parts = (*parts[:3], torch.arange(packed.shape[1] * 8))
    yield from _int4_parts(prefix, *parts)


def _int4_parts(
    prefix: str, qweight: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, order: torch.Tensor | None
) -> Iterator[tuple[str, torch.Tensor]]:
    """An `Int4Linear`'s buffers under the names `models.layers` routes to them."""
    yield f"{prefix}.weight", qweight
    yield f"{prefix}.weight_scale", scale
    yield f"{prefix}.weight_zero", zero
    if order is not None:
        yield f"{prefix}.input_permutation", order.to(torch.int32).view(1, -1)


def stores_int4(in_features: int, group_size: int) -> bool:
    """The int4 kernel takes this linear as stored (whole groups, 8-input words, one K tile per group)."""
    return in_features % 8 == 0 and in_features % group_size == 0 and group_size % 16 == 0


def store_fp8_blocks(module: torch.nn.Module, config: ModelConfig, block_size: tuple[int, int]) -> None:
    """Block-wise FP8 (Qwen3's and DeepSeek's FP8 checkpoints): the decoder's linears, a shared
    expert's too, become empty `WeightOnlyLinear`s with block scales, and a mixture of experts'
    stacked experts `QuantizedExperts`, which the loader fills as stored. A fused linear (q/k/v,
    gate/up) whose parts are not each whole row blocks would need a scale row shared by two parts: it
    stays float (dequantized at load), said in one log line; so does every linear when a block's
    columns are not a multiple of 16 (the kernel's K tile must lie inside one block)."""
    rows, columns = block_size
    fused_in_checkpoint = config.architecture in _FUSED_CHECKPOINTS
    kept_float: set[str] = set()
    for parent in list(module.modules()):
        if isinstance(parent, SparseMoE):
            parent.store_experts_as_fp8(block_size)
        for child_name, child in list(parent.named_children()):
            if not isinstance(child, torch.nn.Linear):
                continue
            parts = [child.out_features]
            if child_name in ("qkv_proj", "gate_up_proj") and not fused_in_checkpoint:
                parts = fused_split_sizes(config, child_name)
            elif child_name == "shared_gate_up_proj":  # Qwen2-MoE's shared expert: gate, up
                parts = [child.out_features // 2] * 2
            if columns % 16 or (len(parts) > 1 and any(part % rows for part in parts)):
                kept_float.add(child_name)
                continue
            setattr(parent, child_name, WeightOnlyLinear.empty_fp8(child, block_size))
    if kept_float:
        logger.info(
            "block-wise FP8 %s: %s kept float (dequantized at load): %s",
            list(block_size),
            ", ".join(sorted(kept_float)),
            "blocks narrower than 16 columns or not a multiple of 16"
            if columns % 16
            else "a block of rows would straddle two fused parts",
        )


def store_linears_as_int4(module: torch.nn.Module, config: ModelConfig, group_size: int, method: str) -> None:
    """Swaps the decoder's `nn.Linear`s for empty `Int4Linear`s, and a mixture of experts' stacked
    experts for int4 buffers, that the loader fills as stored (linears and experts the layout cannot
    take, and a shared expert, stay float: dequantized at load).
    Layers whose inputs may be act-order permuted get one input-order row per checkpoint tensor fused
    into them. Scales are held as the format stores them (fp16 for AWQ and GPTQ), in float32 for
    compressed-tensors (bf16 or fp16 there: float32 holds either exactly)."""
    fused_in_checkpoint = config.architecture in _FUSED_CHECKPOINTS
    act_order = config.prequantization is not None and config.prequantization.act_order
    scale_dtype = torch.float32 if method == "pack-quantized" else torch.float16
    for parent in list(module.modules()):
        if isinstance(parent, SparseMoE):
            inputs = (parent.router.shape[1], parent.settings.intermediate_size)  # gate/up's, down's
            if all(stores_int4(size, group_size or size) for size in inputs):
                parent.store_experts_as_int4(group_size, act_order, scale_dtype)
            continue
        for child_name, child in list(parent.named_children()):
            group = group_size or child.in_features if isinstance(child, torch.nn.Linear) else 0
            if not isinstance(child, torch.nn.Linear) or not stores_int4(child.in_features, group):
                continue
            shards = [child.out_features]
            if child_name in ("qkv_proj", "gate_up_proj") and not fused_in_checkpoint:
                shards = fused_split_sizes(config, child_name)
            bias = None if child.bias is None else child.bias.detach()
            replacement = Int4Linear(
                child.in_features,
                child.out_features,
                group,
                bias,
                shards if act_order else None,
                child.weight.device,
                scale_dtype,
            )
            setattr(parent, child_name, replacement)
