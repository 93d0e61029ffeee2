"""Loads a Hugging Face layout directory (config.json + single or sharded safetensors) into a model.

Checkpoint tensors keep Hugging Face's names; this module maps them onto the fused layout of
`LlamaForCausalLM` (q/k/v -> qkv_proj, gate/up -> gate_up_proj), checks every shape, and fails with
the file and tensor name when something is missing, unexpected or the wrong shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open

from berth_runtime.models.llama import LlamaForCausalLM
from berth_runtime.models.model_config import ModelConfig, ModelDirectoryError, load_model_config, read_json

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
# Checkpoint entries that are derived state, not weights.
_IGNORED = re.compile(r".*rotary_emb\.inv_freq$")
_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
# Checkpoint suffix -> (our parameter suffix, shard index inside the fused parameter or None).
_LAYER_TENSORS: dict[str, tuple[str, int | None]] = {
    "self_attn.q_proj": ("qkv_proj", 0),
    "self_attn.k_proj": ("qkv_proj", 1),
    "self_attn.v_proj": ("qkv_proj", 2),
    "self_attn.o_proj": ("o_proj", None),
    "mlp.gate_proj": ("gate_up_proj", 0),
    "mlp.up_proj": ("gate_up_proj", 1),
    "mlp.down_proj": ("down_proj", None),
}


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


def fused_split_sizes(config: ModelConfig, fused: str) -> list[int]:
    """Rows of each checkpoint tensor inside a fused parameter (q, k, v of qkv_proj; gate, up of
    gate_up_proj)."""
    if fused == "qkv_proj":
        kv = config.num_kv_heads * config.head_dim
        return [config.num_heads * config.head_dim, kv, kv]
    return [config.intermediate_size, config.intermediate_size]


def _target(
    model: LlamaForCausalLM, params: dict[str, torch.nn.Parameter], name: str
) -> tuple[torch.Tensor, int | None, str] | None:
    """(destination parameter, shard index, fused name) for a checkpoint tensor name, None if unknown."""
    if name == "model.embed_tokens.weight":
        return params["embed_tokens.weight"], None, ""
    if name == "model.norm.weight":
        return params["norm"], None, ""
    if name == "lm_head.weight":
        return (model.lm_head, None, "") if model.lm_head is not None else None
    match = _LAYER.match(name)
    if match is None:
        return None
    layer, suffix = int(match.group(1)), match.group(2)
    if layer >= model.config.num_layers:
        return None
    prefix = f"layers.{layer}."
    if suffix in ("input_layernorm.weight", "post_attention_layernorm.weight"):
        return params[prefix + suffix.removesuffix(".weight")], None, ""
    module, _, kind = suffix.rpartition(".")
    if module not in _LAYER_TENSORS or kind not in ("weight", "bias"):
        return None
    ours, shard = _LAYER_TENSORS[module]
    destination = params.get(f"{prefix}{ours}.{kind}")
    if destination is None:
        return None
    return destination, shard, ours


def load_weights(model: LlamaForCausalLM, files: list[Path]) -> None:
    """Copies every checkpoint tensor into `model` (dtype converted), then checks nothing is missing."""
    config = model.config
    params = dict(model.named_parameters())
    filled: dict[int, int] = {}  # id(parameter) -> elements written
    with torch.no_grad():
        for path in files:
            with safe_open(str(path), framework="pt", device="cpu") as checkpoint:
                for name in checkpoint.keys():  # noqa: SIM118 (safe_open is not a dict)
                    if _IGNORED.match(name):
                        continue
                    target = _target(model, params, name)
                    if target is None:
                        if name == "lm_head.weight" and config.tie_word_embeddings:
                            continue
                        raise ModelDirectoryError(
                            f"{path.name}: unexpected tensor {name!r} for {config.architecture}; "
                            "is config.json from the same checkpoint?"
                        )
                    destination, shard, fused = target
                    tensor = checkpoint.get_tensor(name)
                    if shard is not None:
                        sizes = fused_split_sizes(config, fused)
                        destination = destination.narrow(0, sum(sizes[:shard]), sizes[shard])
                    if tuple(tensor.shape) != tuple(destination.shape):
                        raise ModelDirectoryError(
                            f"{path.name}: tensor {name!r} has shape {tuple(tensor.shape)}, "
                            f"config.json implies {tuple(destination.shape)}"
                        )
                    destination.copy_(tensor)
                    key = id(target[0])
                    filled[key] = filled.get(key, 0) + tensor.numel()
    missing = [name for name, p in params.items() if filled.get(id(p), 0) != p.numel()]
    if missing:
        raise ModelDirectoryError(
            f"the checkpoint lacks weights for: {', '.join(missing[:8])}{' …' if len(missing) > 8 else ''}"
        )


def build_model(
    config: ModelConfig,
    dtype: torch.dtype,
    device: torch.device,
    max_positions: int,
    load_weights_into: Callable[[LlamaForCausalLM], None],
) -> LlamaForCausalLM:
    """Allocates the model for `config` on `device` in `dtype` (no init pass) and fills it with
    `load_weights_into`, the one step that differs between checkpoint formats."""
    with torch.device("meta"):
        model = LlamaForCausalLM(config, dtype, max_positions)
    model = model.to_empty(device=device)
    load_weights_into(model)
    model.init_rotary_tables(device)
    model.use_kernel_ops = device.type == "cuda"
    return model.eval()


def load_model(
    model_dir: Path, dtype: torch.dtype, device: torch.device, max_positions: int
) -> LlamaForCausalLM:
    """Builds the model for `model_dir` on `device` in `dtype` with its weights loaded."""
    config = load_model_config(model_dir)
    files = weight_files(model_dir)
    return build_model(config, dtype, device, max_positions, lambda model: load_weights(model, files))
