"""Phi-3 (and Phi-3.5 / Phi-4-mini, which share its architecture): the Llama decoder with q/k/v and
gate/up stored fused in the checkpoint (`qkv_proj`, `gate_up_proj`: our own layout, loaded as they
are) and, in some checkpoints, partial rotary (`partial_rotary_factor`, read with the shared fields).
A `sliding_window` caps the context as Mistral's does. The long-context "longrope" scaling is not
supported (rope.py names what is).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from berth_runtime.models.interface import ModelFamily
from berth_runtime.models.llama import LlamaForCausalLM
from berth_runtime.models.model_config import activation


def _config_fields(architecture: str, config: dict[str, Any], path: Path) -> dict[str, Any]:
    return {"hidden_act": activation(config, path, ("silu",))}


FAMILY = ModelFamily(
    name="phi3",
    architectures=("Phi3ForCausalLM",),
    model_class=LlamaForCausalLM,
    config_fields=_config_fields,
)
