"""Qwen3: the Llama decoder with a per-head RMSNorm of queries and keys before rope, q/k/v and o_proj
biased together (`attention_bias`), and Qwen2's rule for the sliding window (only with
use_sliding_window). The layers are `llama.LlamaForCausalLM`'s; only the config reading differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from berth_runtime.models.interface import ModelFamily
from berth_runtime.models.llama import LlamaForCausalLM, qwen_sliding_window
from berth_runtime.models.model_config import activation


def _config_fields(architecture: str, config: dict[str, Any], path: Path) -> dict[str, Any]:
    return {
        "hidden_act": activation(config, path, ("silu",)),
        "qk_norm": True,
        "sliding_window": qwen_sliding_window(config),
    }


FAMILY = ModelFamily(
    name="qwen3",
    architectures=("Qwen3ForCausalLM",),
    model_class=LlamaForCausalLM,
    config_fields=_config_fields,
)
