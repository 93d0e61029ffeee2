"""Pre-quantized checkpoints: what config.json's `quantization_config` says, and the reference
dequantization of each format's tensors to float32 at load.

Formats, as their libraries write them:
- FP8 (`compressed-tensors`, format "float-quantized", 8-bit float weights, per-tensor or
  per-channel scales): `W.weight` float8_e4m3fn [out, in], `W.weight_scale` [1] or [out, 1];
  `W.input_scale` (static activation scales) is not used: activations stay in the serving dtype.
- FP8 block-wise (transformers' "fp8", as Qwen3 and DeepSeek publish it): `W.weight` float8_e4m3fn
  [out, in], `W.weight_scale_inv` [ceil(out / rows), ceil(in / columns)] for `weight_block_size`
  [rows, columns] blocks; activations stay in the serving dtype (no dynamic FP8 activations).
- AWQ (4-bit, GEMM layout, zero point): `W.qweight` int32 [in, out / 8] (eight nibbles per int in
  AWQ's interleaved order), `W.qzeros` int32 [in / group, out / 8], `W.scales` [in / group, out].
- GPTQ (4-bit, the original "gptq" checkpoint format): `W.qweight` int32 [in / 8, out] (nibbles along
  the input), `W.qzeros` int32 [in / group, out / 8] stored minus one, `W.scales` [in / group, out],
  `W.g_idx` [in] (each input's group; act-order checkpoints permute it).

FP8 weights are served as stored where the device runs FP8 (the CPU reference, CUDA compute
capability >= 8.9): the decoder's linears become `WeightOnlyLinear`s holding the float8 weights and
a per-output-channel scale (a per-tensor scale repeated per row), so fused q/k/v and gate/up simply
concatenate rows. AWQ and GPTQ weights are served as stored too, on every device: the decoder's
linears become `quantization.Int4Linear`s and each checkpoint linear is converted once to berth's
output-major int4 layout (`kernels.int4_linear`: `.weight` packed [out, in / 8], `.weight_scale`
[out, groups], `.weight_zero` [out, groups], and for GPTQ `.input_permutation` [1, in], act-order
inputs sorted by group so each group is contiguous). Anything else (FP8 elsewhere, any format in a
mixture of experts' stacked experts, an int4 linear whose shape the layout cannot take) becomes one
float `W.weight` tensor [out, in], copied like any other weight.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from berth_runtime.models.layers import fused_split_sizes
from berth_runtime.models.model_config import ModelConfig, ModelDirectoryError
from berth_runtime.models.moe import SparseMoE
from berth_runtime.quantization.int4_linear import Int4Linear

PREQUANTIZED_FORMATS = (
    "compressed-tensors float-quantized (FP8)",
    "fp8 with weight_block_size",
    "awq (4-bit GEMM)",
    "gptq (4-bit)",
)
_AWQ_REVERSE_ORDER = (0, 4, 1, 5, 2, 6, 3, 7)
INT4_METHODS = ("awq", "gptq")
STORED_DTYPES = (torch.float8_e4m3fn, torch.int32)
"""A destination of one of these dtypes takes the checkpoint's weight as stored (FP8, packed int4)."""
# Architectures whose checkpoints store q/k/v and gate/up already fused (one tensor per fused linear).
_FUSED_CHECKPOINTS = ("Phi3ForCausalLM",)
_PACKED_PARTS = {"awq": ("qweight", "qzeros", "scales"), "gptq": ("qweight", "qzeros", "scales", "g_idx")}


@dataclass(frozen=True)
class PreQuantization:
    method: str
    """"fp8" (per tensor or channel), "fp8-block", "awq" or "gptq"."""
    group_size: int = 0
    """Inputs per scale and zero (awq, gptq)."""
    block_size: tuple[int, int] = (0, 0)
    """Rows and columns per scale (fp8-block)."""


def read_prequantization(config: dict[str, Any], path: Path) -> PreQuantization | None:
    """The checkpoint's quantization from config.json's `quantization_config`; None if it has none.
    A format this runtime cannot load fails naming the supported ones."""
    settings = config.get("quantization_config")
    if settings is None:
        return None
    method = settings.get("quant_method") if isinstance(settings, dict) else None

    def unsupported(detail: str) -> ModelDirectoryError:
        return ModelDirectoryError(
            f"{path}: quantization_config {detail} is not supported; "
            f"accepted: {', '.join(PREQUANTIZED_FORMATS)}"
        )

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
        return PreQuantization(method, group_size)
    raise unsupported(f"quant_method {method!r}")


def _unpack_nibbles(packed: torch.Tensor, dim: int) -> torch.Tensor:
    """int32 -> eight 4-bit values each, lowest nibble first, expanded along `dim` (0 or 1)."""
    shifts = torch.arange(0, 32, 4, dtype=torch.int32)
    if dim == 1:  # [rows, cols] -> [rows, cols * 8]
        return ((packed.unsqueeze(-1) >> shifts) & 0xF).reshape(packed.shape[0], -1)
    return ((packed.unsqueeze(1) >> shifts.view(1, 8, 1)) & 0xF).reshape(-1, packed.shape[1])


def _awq_order(values: torch.Tensor) -> torch.Tensor:
    """Undo AWQ's interleaving of the eight nibbles of each int32 (columns grouped by eight)."""
    rows, columns = values.shape
    return values.view(rows, columns // 8, 8)[:, :, list(_AWQ_REVERSE_ORDER)].reshape(rows, columns)


def dequantize_awq(
    qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor, group_size: int
) -> torch.Tensor:
    """-> float32 weight [out, in]."""
    weight = _awq_order(_unpack_nibbles(qweight, dim=1))  # [in, out]
    zeros = _awq_order(_unpack_nibbles(qzeros, dim=1)).repeat_interleave(group_size, dim=0)
    return ((weight - zeros).float() * scales.float().repeat_interleave(group_size, dim=0)).t().contiguous()


def dequantize_gptq(
    qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor, group_index: torch.Tensor
) -> torch.Tensor:
    """-> float32 weight [out, in]."""
    weight = _unpack_nibbles(qweight, dim=0)  # [in, out]
    zeros = _unpack_nibbles(qzeros, dim=1) + 1  # [groups, out]; stored minus one
    groups = group_index.long()
    return ((weight - zeros[groups]).float() * scales.float()[groups]).t().contiguous()


def dequantize_fp8(weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """weight: float8 [out, in]; scale: [1] / [] (per tensor) or [out, 1] (per channel) -> float32."""
    scale = scale.float()
    return weight.float() * (scale.view(-1, 1) if scale.numel() > 1 else scale.reshape(()))


def stores_fp8(device: torch.device) -> bool:
    """FP8 weights run as stored on this device (the weight-only kernel needs e4m3: Ada, Hopper)."""
    return device.type != "cuda" or torch.cuda.get_device_capability(device) >= (8, 9)


def dequantize_fp8_blocks(
    weight: torch.Tensor, scale_inv: torch.Tensor, block_size: tuple[int, int]
) -> torch.Tensor:
    """weight: float8 [out, in]; scale_inv: [ceil(out / rows), ceil(in / columns)] -> float32."""
    rows, columns = weight.shape
    scales = scale_inv.float().repeat_interleave(block_size[0], 0).repeat_interleave(block_size[1], 1)
    return weight.float() * scales[:rows, :columns]


def float_tensors(
    names: list[str],
    read: Callable[[str], torch.Tensor],
    quantization: PreQuantization | None,
    keeps_fp8: Callable[[str], bool],
) -> Iterator[tuple[str, torch.Tensor]]:
    """The checkpoint's tensors by name, each quantized linear's parts replaced by its float32
    `.weight`, except weights whose destination `keeps_fp8` (name of the `.weight` -> bool: a
    `STORED_DTYPES` destination) takes them as stored: FP8 with its scale as `.weight_scale` [out]
    float32, AWQ / GPTQ in berth's int4 layout (`_int4_parts`). `read` returns a stored tensor by name."""
    if quantization is None:
        yield from ((name, read(name)) for name in names)
        return
    available = set(names)
    for name in names:
        if quantization.method == "fp8-block":
            scale_name = name.removesuffix(".weight") + ".weight_scale_inv"
            if name.endswith(".weight_scale_inv"):
                continue
            if name.endswith(".weight") and scale_name in available:
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
        elif part == "qweight":
            missing = [p for p in parts if p != "g_idx" and f"{prefix}.{p}" not in available]
            if missing:
                raise ModelDirectoryError(f"quantized {prefix!r} lacks {', '.join(missing)}")
            qweight, qzeros, scales = (read(f"{prefix}.{p}") for p in ("qweight", "qzeros", "scales"))
            stored = keeps_fp8(f"{prefix}.weight")
            if quantization.method == "awq":
                if stored:
                    yield from _int4_parts(prefix, *awq_to_int4(qweight, qzeros, scales), None)
                else:
                    yield f"{prefix}.weight", dequantize_awq(qweight, qzeros, scales, quantization.group_size)
                continue
            group_index = (
                read(f"{prefix}.g_idx")
                if f"{prefix}.g_idx" in available
                else torch.arange(qweight.shape[0] * 8) // quantization.group_size
            )
            if stored:
                yield from _int4_parts(prefix, *gptq_to_int4(qweight, qzeros, scales, group_index, prefix))
            else:
                yield f"{prefix}.weight", dequantize_gptq(qweight, qzeros, scales, group_index)


def _int4_parts(
    prefix: str, qweight: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, order: torch.Tensor | None
) -> Iterator[tuple[str, torch.Tensor]]:
    """An `Int4Linear`'s buffers under the names `models.layers` routes to them."""
    yield f"{prefix}.weight", qweight
    yield f"{prefix}.weight_scale", scale
    yield f"{prefix}.weight_zero", zero
    if order is not None:
        yield f"{prefix}.input_permutation", order.to(torch.int32).view(1, -1)


def _pack_inputs(values: torch.Tensor) -> torch.Tensor:
    """[out, in] 4-bit values -> int32 [out, in / 8], input 8w + j in nibble j of word w."""
    grouped = values.to(torch.int64).view(values.shape[0], -1, 8)
    packed = sum(grouped[:, :, j] << (4 * j) for j in range(8))
    return torch.as_tensor(packed).to(torch.int32).contiguous()  # wraps to signed int32


def awq_to_int4(
    qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """AWQ's GEMM tensors -> berth's int4 layout (qweight [out, in / 8], scale and zero [out, groups])."""
    weight = _awq_order(_unpack_nibbles(qweight, dim=1))  # [in, out]
    zeros = _awq_order(_unpack_nibbles(qzeros, dim=1))  # [groups, out]
    return _pack_inputs(weight.t()), scales.t().contiguous(), zeros.t().to(torch.uint8).contiguous()


def gptq_to_int4(
    qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor, group_index: torch.Tensor, name: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """GPTQ's tensors -> berth's int4 layout plus the input order that makes each group contiguous
    (act-order `g_idx` sorted; the identity otherwise)."""
    groups = group_index.long()
    order = torch.argsort(groups, stable=True)
    group_size = groups.numel() // scales.shape[0]
    if not torch.equal(groups[order], torch.arange(groups.numel()) // group_size):
        raise ModelDirectoryError(
            f"quantized {name!r}: g_idx does not put {group_size} inputs in each of {scales.shape[0]} groups"
        )
    weight = _unpack_nibbles(qweight, dim=0)[order]  # [in, out], inputs sorted by group
    zeros = _unpack_nibbles(qzeros, dim=1) + 1  # [groups, out]; stored minus one
    return _pack_inputs(weight.t()), scales.t().contiguous(), zeros.t().to(torch.uint8).contiguous(), order


def stores_int4(linear: torch.nn.Linear, group_size: int) -> bool:
    """The int4 kernel takes this linear as stored (whole groups, 8-input words, one K tile per group)."""
    inputs = linear.in_features
    return inputs % 8 == 0 and inputs % group_size == 0 and group_size % 16 == 0


def store_linears_as_int4(module: torch.nn.Module, config: ModelConfig, group_size: int, method: str) -> None:
    """Swaps the decoder's `nn.Linear`s for empty `Int4Linear`s the loader fills as stored (a mixture
    of experts' stacked experts, and linears the layout cannot take, stay float: dequantized at load).
    GPTQ layers get one input-order row per checkpoint tensor fused into them."""
    fused_in_checkpoint = config.architecture in _FUSED_CHECKPOINTS
    for parent in list(module.modules()):
        if isinstance(parent, SparseMoE):
            continue
        for child_name, child in list(parent.named_children()):
            if not isinstance(child, torch.nn.Linear) or not stores_int4(child, group_size):
                continue
            shards = [child.out_features]
            if child_name in ("qkv_proj", "gate_up_proj") and not fused_in_checkpoint:
                shards = fused_split_sizes(config, child_name)
            bias = None if child.bias is None else child.bias.detach()
            replacement = Int4Linear(
                child.in_features,
                child.out_features,
                group_size,
                bias,
                shards if method == "gptq" else None,
                child.weight.device,
            )
            setattr(parent, child_name, replacement)
