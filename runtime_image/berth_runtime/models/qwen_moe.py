"""Qwen2-MoE and Qwen3-MoE: the Qwen2 / Qwen3 decoders with a sparse mixture-of-experts MLP
(`moe.SparseMoE`) in every `decoder_sparse_step`-th layer not listed in `mlp_only_layers` (the others
keep a dense MLP of `intermediate_size`). Qwen2-MoE adds a shared expert behind a sigmoid gate and
biases q/k/v (`qkv_bias`); Qwen3-MoE norms queries and keys per head. `norm_topk_prob` says whether
the chosen experts' probabilities are renormalized.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from berth_runtime.models.interface import ModelFamily
from berth_runtime.models.llama import LlamaForCausalLM, qwen_sliding_window
from berth_runtime.models.model_config import MixtureOfExperts, ModelDirectoryError, activation, positive_int


def _sparse_layers(config: dict[str, Any], path: Path, num_layers: int) -> tuple[bool, ...]:
    step = positive_int(config, "decoder_sparse_step", path, default=1)
    dense = config.get("mlp_only_layers") or []
    if not isinstance(dense, list):
        raise ModelDirectoryError(f"{path}: mlp_only_layers is {dense!r}; accepted: a list of layer indices")
    return tuple(index not in dense and (index + 1) % step == 0 for index in range(num_layers))


def _config_fields(architecture: str, config: dict[str, Any], path: Path) -> dict[str, Any]:
    is_qwen2 = architecture == "Qwen2MoeForCausalLM"
    shared = config.get("shared_expert_intermediate_size", 0) if is_qwen2 else 0
    experts = MixtureOfExperts(
        # transformers >= 5 writes Qwen3-MoE's as num_local_experts
        num_experts=positive_int(
            config, "num_experts" if "num_experts" in config else "num_local_experts", path
        ),
        experts_per_token=positive_int(config, "num_experts_per_tok", path),
        intermediate_size=positive_int(config, "moe_intermediate_size", path),
        normalize_top_k=bool(config.get("norm_topk_prob", False)),
        sparse_layers=_sparse_layers(config, path, positive_int(config, "num_hidden_layers", path)),
        shared_expert_intermediate_size=int(shared or 0),
    )
    fields: dict[str, Any] = {
        "hidden_act": activation(config, path, ("silu",)),
        "moe": experts,
        "sliding_window": qwen_sliding_window(config),
    }
    if is_qwen2:  # q/k/v biased unless the config says not (transformers >= 5 writes qkv_bias)
        fields.update(qkv_bias=bool(config.get("qkv_bias", True)), o_proj_bias=False)
    else:
        fields.update(qk_norm=True)
    return fields


FAMILY = ModelFamily(
    name="qwen_moe",
    architectures=("Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM"),
    model_class=LlamaForCausalLM,
    config_fields=_config_fields,
)
