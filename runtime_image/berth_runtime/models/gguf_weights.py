"""Copies a GGUF file's tensors into `LlamaForCausalLM`, dequantized to the serving dtype.

Each tensor is dequantized with the `gguf` package's own helpers (`gguf.quants.dequantize`: F32,
F16, BF16, Q4_0 … Q8_0, the k-quants and i-quants its version implements) to float32, one tensor at
a time, then cast into the model's parameter. The model therefore holds plain `--dtype` weights: it
runs the same kernels as a safetensors checkpoint, and its memory is that of the dtype, not of the
quantized file (a Q4 file of 93 MB serves as 540 MB of float32).

llama.cpp's converter permutes the rows of every attn_q and attn_k weight, per head, from the
rotate-half layout of Hugging Face checkpoints into the interleaved pairs its own rope reads; this
module undoes that permutation, since the runtime's rope is rotate-half.
"""

from __future__ import annotations

import re

import gguf
import numpy as np
import torch

from berth_runtime.models.gguf_reader import GGUFModelFile
from berth_runtime.models.layers import fused_split_sizes
from berth_runtime.models.llama import LlamaForCausalLM
from berth_runtime.models.model_config import ModelDirectoryError

_LAYER = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")
# GGUF tensor -> (our parameter, shard index inside the fused parameter or None).
_LAYER_TENSORS: dict[str, tuple[str, int | None]] = {
    "attn_q": ("qkv_proj", 0),
    "attn_k": ("qkv_proj", 1),
    "attn_v": ("qkv_proj", 2),
    "attn_output": ("o_proj", None),
    "ffn_gate": ("gate_up_proj", 0),
    "ffn_up": ("gate_up_proj", 1),
    "ffn_down": ("down_proj", None),
}
_LAYER_NORMS = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}
_GLOBAL_TENSORS = {
    "token_embd.weight": "embed_tokens.weight",
    "output_norm.weight": "norm",
    "output.weight": "lm_head",
}
# Read into the config (rope frequency factors), not weights.
_CONFIG_TENSORS = frozenset({"rope_freqs.weight"})


def undo_rotary_permutation(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """weight: [heads * head_dim, ...] as llama.cpp stores attn_q / attn_k -> the same rows in
    Hugging Face's order. The converter wrote each head's rows (first half, second half) as
    interleaved pairs (0, head_dim/2, 1, head_dim/2 + 1, …); this puts each half back together."""
    head_dim = weight.shape[0] // heads
    # [heads, head_dim / 2, 2, ...] -> [heads, 2, head_dim / 2, ...]
    grouped = weight.reshape(heads, head_dim // 2, 2, *weight.shape[1:])
    return grouped.transpose(1, 2).reshape(weight.shape)


def dequantized_tensor(file: GGUFModelFile, name: str) -> torch.Tensor:
    """A tensor of the file as float32, in PyTorch's dimension order."""
    tensor = file.tensors[name]
    try:
        array = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    except NotImplementedError:
        raise ModelDirectoryError(
            f"{file.path}: tensor {name!r} is stored as {tensor.tensor_type.name}, which the installed "
            "gguf package cannot dequantize; accepted: F32, F16, BF16 and the quantization types "
            "gguf.quants implements (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K-Q6_K, …)"
        ) from None
    array = np.asarray(array, dtype=np.float32)
    if not array.flags.writeable:  # an F32 tensor comes back as a view of the read-only memory map
        array = array.copy()
    return torch.from_numpy(array)


def check_tensor_types(file: GGUFModelFile) -> None:
    """Fails before any weight is read if a tensor's type cannot be dequantized (probes one block)."""
    for tensor_type in sorted({tensor.tensor_type for tensor in file.tensors.values()}):
        _, type_size = gguf.GGML_QUANT_SIZES[tensor_type]
        try:
            gguf.quants.dequantize(np.zeros((1, type_size), dtype=np.uint8), tensor_type)
        except NotImplementedError:
            name = next(t.name for t in file.tensors.values() if t.tensor_type == tensor_type)
            dequantized_tensor(file, name)  # raises the error that names the tensor


def _destination(
    model: LlamaForCausalLM, params: dict[str, torch.nn.Parameter], name: str
) -> tuple[torch.Tensor, torch.Tensor, int | None] | None:
    """(parameter, the slice of it this tensor fills, heads to un-permute by or None); None if unknown."""
    config = model.config
    if name in _GLOBAL_TENSORS:
        ours = _GLOBAL_TENSORS[name]
        parameter = model.lm_head if ours == "lm_head" else params[ours]
        return (parameter, parameter, None) if parameter is not None else None
    match = _LAYER.match(name)
    if match is None or int(match.group(1)) >= config.num_layers:
        return None
    prefix, module, kind = f"layers.{match.group(1)}.", match.group(2), match.group(3)
    if module in _LAYER_NORMS and kind == "weight":
        parameter = params[prefix + _LAYER_NORMS[module]]
        return parameter, parameter, None
    if module not in _LAYER_TENSORS:
        return None
    ours, shard = _LAYER_TENSORS[module]
    parameter = params.get(f"{prefix}{ours}.{kind}")
    if parameter is None:
        return None
    heads = {"attn_q": config.num_heads, "attn_k": config.num_kv_heads}.get(module)
    if shard is None:
        return parameter, parameter, heads
    sizes = fused_split_sizes(config, ours)
    return parameter, parameter.narrow(0, sum(sizes[:shard]), sizes[shard]), heads


def load_gguf_weights(model: LlamaForCausalLM, file: GGUFModelFile) -> None:
    """Dequantizes every tensor of `file` into `model` (dtype converted), then checks none is missing."""
    config = model.config
    check_tensor_types(file)
    params = dict(model.named_parameters())
    filled: dict[int, int] = {}  # id(parameter) -> elements written
    with torch.no_grad():
        for name in file.tensors:
            if name in _CONFIG_TENSORS:
                continue
            target = _destination(model, params, name)
            if target is None:
                raise ModelDirectoryError(
                    f"{file.path}: unexpected tensor {name!r} for a {config.num_layers}-layer "
                    f"{file.architecture} model"
                )
            parameter, destination, heads = target
            weight = dequantized_tensor(file, name)
            if tuple(weight.shape) != tuple(destination.shape):
                raise ModelDirectoryError(
                    f"{file.path}: tensor {name!r} has shape {tuple(weight.shape)}, the GGUF metadata "
                    f"implies {tuple(destination.shape)}"
                )
            if heads is not None:
                weight = undo_rotary_permutation(weight, heads)
            destination.copy_(weight)
            filled[id(parameter)] = filled.get(id(parameter), 0) + weight.numel()
    missing = [name for name, p in params.items() if filled.get(id(p), 0) != p.numel()]
    if missing:
        raise ModelDirectoryError(
            f"{file.path} lacks weights for: {', '.join(missing[:8])}{' …' if len(missing) > 8 else ''}"
        )
