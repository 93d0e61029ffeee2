"""The 4-bit checkpoint formats berth reads (AWQ GEMM, GPTQ, compressed-tensors "pack-quantized"),
each as its library writes it, converted either to berth's int4 layout (`kernels.int4_linear`:
qweight int32 [out, in / 8] with input 8w + j in nibble j of word w, scale and uint8 zero
[out, groups], `w = (q - zero) * scale`) or dequantized to a float32 weight [out, in].

- AWQ: `qweight` int32 [in, out / 8] (eight nibbles per int in AWQ's interleaved order), `qzeros`
  int32 [in / group, out / 8], `scales` [in / group, out].
- GPTQ ("gptq" checkpoint format): `qweight` int32 [in / 8, out] (nibbles along the input), `qzeros`
  int32 [in / group, out / 8] stored minus one, `scales` [in / group, out], `g_idx` [in] (each
  input's group; act-order checkpoints permute it).
- compressed-tensors pack-quantized (4-bit int, group or channel strategy): `weight_packed` int32
  [out, in / 8], element i at bits 4i of the row (berth's own order) stored plus 8 (signed values
  made unsigned); `weight_scale` [out, groups]; `weight_zero_point` only when asymmetric, packed the
  same way along the output dimension ([out / 8, groups]); `weight_g_idx` [in] with group act-order.

Act-order (a `g_idx`) is served by sorting each weight's inputs by group, so each group is
contiguous; the order comes back beside the weight and the layer gathers its activations by it.
"""

from __future__ import annotations

import torch

from berth_runtime.models.model_config import ModelDirectoryError

_AWQ_REVERSE_ORDER = (0, 4, 1, 5, 2, 6, 3, 7)
PACKED_OFFSET = 8
"""compressed-tensors stores signed 4-bit values plus 8."""

Int4Parts = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]
"""(qweight [out, in / 8], scale [out, groups], zero uint8 [out, groups], input order [in] or None)."""


def unpack_nibbles(packed: torch.Tensor, dim: int) -> torch.Tensor:
    """int32 -> eight 4-bit values each, lowest nibble first, expanded along `dim` (0 or 1)."""
    shifts = torch.arange(0, 32, 4, dtype=torch.int32)
    if dim == 1:  # [rows, cols] -> [rows, cols * 8]
        return ((packed.unsqueeze(-1) >> shifts) & 0xF).reshape(packed.shape[0], -1)
    return ((packed.unsqueeze(1) >> shifts.view(1, 8, 1)) & 0xF).reshape(-1, packed.shape[1])


def _awq_order(values: torch.Tensor) -> torch.Tensor:
    """Undo AWQ's interleaving of the eight nibbles of each int32 (columns grouped by eight)."""
    rows, columns = values.shape
    return values.view(rows, columns // 8, 8)[:, :, list(_AWQ_REVERSE_ORDER)].reshape(rows, columns)


def _pack_inputs(values: torch.Tensor) -> torch.Tensor:
    """[out, in] 4-bit values -> int32 [out, in / 8], input 8w + j in nibble j of word w."""
    grouped = values.to(torch.int64).view(values.shape[0], -1, 8)
    packed = sum(grouped[:, :, j] << (4 * j) for j in range(8))
    return torch.as_tensor(packed).to(torch.int32).contiguous()  # wraps to signed int32


def _group_order(group_index: torch.Tensor, groups: int, name: str) -> torch.Tensor:
    """The input order that sorts inputs by group; every group must hold the same count."""
    indices = group_index.long()
    order = torch.argsort(indices, stable=True)
    group_size = indices.numel() // groups
    if not torch.equal(indices[order], torch.arange(indices.numel()) // group_size):
        raise ModelDirectoryError(
            f"quantized {name!r}: g_idx does not put {group_size} inputs in each of {groups} groups"
        )
    return order


def dequantize_awq(
    qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor, group_size: int
) -> torch.Tensor:
    """-> float32 weight [out, in]."""
    weight = _awq_order(unpack_nibbles(qweight, dim=1))  # [in, out]
    zeros = _awq_order(unpack_nibbles(qzeros, dim=1)).repeat_interleave(group_size, dim=0)
    return ((weight - zeros).float() * scales.float().repeat_interleave(group_size, dim=0)).t().contiguous()


def dequantize_gptq(
    qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor, group_index: torch.Tensor
) -> torch.Tensor:
    """-> float32 weight [out, in]."""
    weight = unpack_nibbles(qweight, dim=0)  # [in, out]
    zeros = unpack_nibbles(qzeros, dim=1) + 1  # [groups, out]; stored minus one
    groups = group_index.long()
    return ((weight - zeros[groups]).float() * scales.float()[groups]).t().contiguous()


def awq_to_int4(qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor) -> Int4Parts:
    weight = _awq_order(unpack_nibbles(qweight, dim=1))  # [in, out]
    zeros = _awq_order(unpack_nibbles(qzeros, dim=1))  # [groups, out]
    return _pack_inputs(weight.t()), scales.t().contiguous(), zeros.t().to(torch.uint8).contiguous(), None


def gptq_to_int4(
    qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor, group_index: torch.Tensor, name: str
) -> Int4Parts:
    order = _group_order(group_index, scales.shape[0], name)
    weight = unpack_nibbles(qweight, dim=0)[order]  # [in, out], inputs sorted by group
    zeros = unpack_nibbles(qzeros, dim=1) + 1  # [groups, out]; stored minus one
    return _pack_inputs(weight.t()), scales.t().contiguous(), zeros.t().to(torch.uint8).contiguous(), order


def _packed_zeros(zero_point: torch.Tensor | None, scale: torch.Tensor) -> torch.Tensor:
    """[out, groups] uint8: the packed zero points (already offset by 8), or 8 when symmetric."""
    if zero_point is None:
        return torch.full(scale.shape, PACKED_OFFSET, dtype=torch.uint8)
    return unpack_nibbles(zero_point, dim=0)[: scale.shape[0]].to(torch.uint8).contiguous()


def pack_quantized_to_int4(
    packed: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor | None,
    group_index: torch.Tensor | None,
    name: str,
) -> Int4Parts:
    """compressed-tensors' tensors -> berth's int4 layout: the words are already in berth's order
    (`(stored - 8 - (zp_stored - 8)) * s = (stored - zp_stored) * s`), inputs re-sorted only for
    group act-order."""
    zeros = _packed_zeros(zero_point, scale)
    if group_index is None:
        return packed.contiguous(), scale.contiguous(), zeros, None
    order = _group_order(group_index, scale.shape[1], name)
    values = unpack_nibbles(packed, dim=1)[:, order]
    return _pack_inputs(values), scale.contiguous(), zeros, order


def dequantize_pack_quantized(
    packed: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor | None,
    group_index: torch.Tensor | None,
) -> torch.Tensor:
    """-> float32 weight [out, in]."""
    values = unpack_nibbles(packed, dim=1)  # [out, in]
    inputs = values.shape[1]
    groups = (
        group_index.long() if group_index is not None else torch.arange(inputs) // (inputs // scale.shape[1])
    )
    zeros = _packed_zeros(zero_point, scale).long()
    return (values - zeros[:, groups]).float() * scale.float()[:, groups]
