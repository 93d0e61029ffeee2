"""Gemma 2 and Gemma 3 (text): a decoder whose layers norm both sides of attention and of the MLP
(pre/post feed-forward norms), with GeGLU (gelu_pytorch_tanh), embeddings scaled by sqrt(hidden),
RMSNorm weights stored as offsets from 1 (applied in fp32, as transformers does: the norm steps of
the ops table are swapped for `torch_reference.offset_rms_norm`, on every device), attention scaled by
query_pre_attn_scalar, and local sliding-window layers alternating with global ones (Gemma 2: every
other layer; Gemma 3: five local to one global, with their own rope base). Gemma 2 soft-caps the
attention scores and the final logits; Gemma 3 norms queries and keys per head instead.

Each layer passes its window and the soft-cap to the attention op: on the kernel path the decode
kernel skips keys before the window and caps the scores in registers, so Gemma captures decode CUDA
graphs like Llama (prefill: flash with a window; a capped layer's prefill uses the torch reference,
as `kernels.prefill_attention` says). The KV cache keeps every token of the local layers too (no
ring buffer), so it is sized as for global attention.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from berth_runtime.engine.attention_metadata import AttentionMetadata
from berth_runtime.kernels import torch_reference
from berth_runtime.models.interface import KVCache, ModelFamily
from berth_runtime.models.layers import DecoderForCausalLM, DecoderLayerBase
from berth_runtime.models.model_config import (
    ModelConfig,
    ModelDirectoryError,
    activation,
    optional_number,
    parse_rope,
    rope_parameters,
)
from berth_runtime.models.ops import KERNEL_OPS, REFERENCE_OPS, LayerOps
from berth_runtime.models.rope import RopeScaling

SLIDING, GLOBAL = "sliding_attention", "full_attention"


class GemmaDecoderLayer(DecoderLayerBase):
    """Sandwich norms: norm, attention, norm, add; norm, MLP, norm, add."""

    def __init__(self, config: ModelConfig, dtype: torch.dtype, layer_index: int) -> None:
        super().__init__(config, dtype, layer_index)
        hidden = config.hidden_size
        self.input_layernorm = nn.Parameter(torch.empty(hidden, dtype=dtype))
        self.post_attention_layernorm = nn.Parameter(torch.empty(hidden, dtype=dtype))
        self.pre_feedforward_layernorm = nn.Parameter(torch.empty(hidden, dtype=dtype))
        self.post_feedforward_layernorm = nn.Parameter(torch.empty(hidden, dtype=dtype))

    def forward(
        self,
        hidden: torch.Tensor,
        residual: torch.Tensor | None,
        positions: torch.Tensor,
        kv_cache: KVCache,
        metadata: AttentionMetadata,
        cos_table: torch.Tensor,
        sin_table: torch.Tensor,
        ops: LayerOps,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden, residual: [tokens, hidden_size]; returns the layer's (hidden, residual), the MLP's
        normed output not yet added to the residual (the next norm adds it)."""
        if residual is None:
            residual = hidden
            hidden = ops.rms_norm(hidden, self.input_layernorm, self.eps)
        else:
            hidden, residual = ops.add_rms_norm(hidden, residual, self.input_layernorm, self.eps)
        hidden = self.attention(hidden, positions, kv_cache, metadata, cos_table, sin_table, ops)
        hidden = ops.rms_norm(hidden, self.post_attention_layernorm, self.eps)
        hidden, residual = ops.add_rms_norm(hidden, residual, self.pre_feedforward_layernorm, self.eps)
        hidden = ops.rms_norm(self.mlp(hidden, ops), self.post_feedforward_layernorm, self.eps)
        return hidden, residual


class GemmaForCausalLM(DecoderForCausalLM):
    """Gemma 2 and Gemma 3 text models (`Gemma2ForCausalLM`, `Gemma3ForCausalLM`)."""

    def __init__(self, config: ModelConfig, dtype: torch.dtype, max_positions: int) -> None:
        super().__init__(config, dtype, max_positions, GemmaDecoderLayer)

    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        kv_caches: list[KVCache],
        metadata: AttentionMetadata,
    ) -> torch.Tensor:
        """tokens, positions: [tokens] -> hidden: [tokens, hidden_size] (final norm applied)."""
        ops = dataclasses.replace(
            KERNEL_OPS if self.use_kernel_ops else REFERENCE_OPS,
            rms_norm=torch_reference.offset_rms_norm,
            add_rms_norm=torch_reference.offset_add_rms_norm,
        )
        weight = self.embed_tokens.weight
        # sqrt(hidden) rounded to the weights' dtype, as transformers scales the embeddings
        hidden = self.embed_tokens(tokens) * torch.tensor(
            math.sqrt(self.config.hidden_size), dtype=weight.dtype
        )
        residual: torch.Tensor | None = None
        for layer, kv_cache in zip(self.layers, kv_caches, strict=True):
            cos_table, sin_table = self.rotary_tables(layer)
            hidden, residual = layer(
                hidden, residual, positions, kv_cache, metadata, cos_table, sin_table, ops
            )
        assert residual is not None  # the model has at least one layer (checked by the loader)
        hidden, _ = ops.add_rms_norm(hidden, residual, self.norm, self.config.rms_norm_eps)
        return hidden


def _layer_types(architecture: str, config: dict[str, Any], path: Path) -> list[str]:
    """Each layer's attention; older configs give a pattern instead (Gemma 2: local first, then every
    other; Gemma 3: every sliding_window_pattern-th layer global)."""
    num_layers = int(config["num_hidden_layers"])
    layer_types = config.get("layer_types")
    if layer_types is None:
        pattern = 2 if architecture == "Gemma2ForCausalLM" else int(config.get("sliding_window_pattern", 6))
        return [GLOBAL if (index + 1) % pattern == 0 else SLIDING for index in range(num_layers)]
    if (
        not isinstance(layer_types, list)
        or len(layer_types) != num_layers
        or set(layer_types) - {SLIDING, GLOBAL}
    ):
        raise ModelDirectoryError(
            f"{path}: layer_types is {layer_types!r}; accepted: a list of {num_layers} entries, each "
            f"{SLIDING!r} or {GLOBAL!r}"
        )
    return layer_types


def _ropes(architecture: str, config: dict[str, Any], path: Path) -> tuple[RopeScaling, RopeScaling | None]:
    """(global rope, local rope or None when the same): transformers >= 5 writes one parameters object
    per layer type; older Gemma 3 configs rope_theta + rope_scaling (global) and rope_local_base_freq."""
    params = rope_parameters(config)
    if isinstance(params, dict) and GLOBAL in params:
        local_theta = float(config.get("rope_local_base_freq", 10000.0))
        return parse_rope(params[GLOBAL], config, path), parse_rope(
            params.get(SLIDING) or {}, config, path, local_theta
        )
    global_rope = parse_rope(params, config, path)
    if architecture == "Gemma2ForCausalLM":
        return global_rope, None
    return global_rope, RopeScaling(theta=float(config.get("rope_local_base_freq", 10000.0)))


def _config_fields(architecture: str, config: dict[str, Any], path: Path) -> dict[str, Any]:
    window = config.get("sliding_window")
    layer_types = _layer_types(architecture, config, path)
    rope, local_rope = _ropes(architecture, config, path)
    return {
        "hidden_act": activation(config, path, ("gelu_pytorch_tanh",)),
        "tie_word_embeddings": bool(config.get("tie_word_embeddings", True)),
        "sliding_window": None,  # per layer, masked; it caps no context
        "layer_sliding_windows": tuple(window if kind == SLIDING else None for kind in layer_types),
        "query_pre_attn_scalar": optional_number(config, "query_pre_attn_scalar", path),
        "attention_logit_softcap": optional_number(config, "attn_logit_softcapping", path),
        "final_logit_softcap": optional_number(config, "final_logit_softcapping", path),
        "qk_norm": architecture == "Gemma3ForCausalLM",
        "rope": rope,
        "local_rope": local_rope,
    }


FAMILY = ModelFamily(
    name="gemma",
    architectures=("Gemma2ForCausalLM", "Gemma3ForCausalLM"),
    model_class=GemmaForCausalLM,
    config_fields=_config_fields,
)
