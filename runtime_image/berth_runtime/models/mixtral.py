"""Mixtral: the Mistral decoder with a sparse mixture-of-experts MLP in every layer (top-k of
`num_local_experts`, probabilities renormalized over the k; `moe.SparseMoE`). A `sliding_window`
caps the context as Mistral's does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from berth_runtime.models.interface import ModelFamily
from berth_runtime.models.llama import LlamaForCausalLM
from berth_runtime.models.model_config import MixtureOfExperts, activation, positive_int


def _config_fields(architecture: str, config: dict[str, Any], path: Path) -> dict[str, Any]:
    num_layers = positive_int(config, "num_hidden_layers", path)
    experts = MixtureOfExperts(
        num_experts=positive_int(config, "num_local_experts", path),
        experts_per_token=positive_int(config, "num_experts_per_tok", path),
        intermediate_size=positive_int(config, "intermediate_size", path),
        normalize_top_k=True,
        sparse_layers=(True,) * num_layers,
    )
    return {"hidden_act": activation(config, path, ("silu",)), "moe": experts}


FAMILY = ModelFamily(
    name="mixtral",
    architectures=("MixtralForCausalLM",),
    model_class=LlamaForCausalLM,
    config_fields=_config_fields,
)
