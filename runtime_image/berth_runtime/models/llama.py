"""The Llama-family decoder (Llama 2/3, Mistral, Qwen2, Qwen3, Phi-3) over a paged KV cache.

One class covers the family: the differences are data in `ModelConfig` (GQA head counts, q/k/v
bias for Qwen2, per-head q/k norms for Qwen3, partial rotary for Phi-3, tied embeddings, rope
scaling), read by each architecture's family module (this one for Llama, Mistral and Qwen2;
`qwen3`, `phi3`). q/k/v and gate/up are stored fused (one matmul each); the loader concatenates the
checkpoint's separate tensors.

Every numeric step is one call through a `LayerOps` table: on a CUDA device the Triton kernels of
`berth_runtime.kernels.layer_ops` (RoPE fused with the KV-cache write), elsewhere the torch
reference, `berth_runtime.kernels.torch_reference`. `LlamaForCausalLM.use_kernel_ops` picks the
table; `load_model` sets it from the device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from berth_runtime.engine.attention_metadata import AttentionMetadata
from berth_runtime.models.interface import KVCache, ModelFamily
from berth_runtime.models.layers import DecoderForCausalLM, DecoderLayerBase
from berth_runtime.models.model_config import ModelConfig, activation
from berth_runtime.models.ops import KERNEL_OPS, REFERENCE_OPS, LayerOps
from berth_runtime.parallel.group import TensorShard


class DecoderLayer(DecoderLayerBase):
    """Pre-norm attention and MLP, each added to the residual stream."""

    def __init__(
        self, config: ModelConfig, dtype: torch.dtype, layer_index: int, shard: TensorShard | None = None
    ) -> None:
        super().__init__(config, dtype, layer_index, shard)
        self.input_layernorm = nn.Parameter(torch.empty(config.hidden_size, dtype=dtype))
        self.post_attention_layernorm = nn.Parameter(torch.empty(config.hidden_size, dtype=dtype))

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
        """hidden, residual: [tokens, hidden_size]; returns the layer's (hidden, residual)."""
        if residual is None:
            residual = hidden
            hidden = ops.rms_norm(hidden, self.input_layernorm, self.eps)
        else:
            hidden, residual = ops.add_rms_norm(hidden, residual, self.input_layernorm, self.eps)
        hidden = self.attention(hidden, positions, kv_cache, metadata, cos_table, sin_table, ops)
        hidden, residual = ops.add_rms_norm(hidden, residual, self.post_attention_layernorm, self.eps)
        return self.mlp(hidden, ops), residual


class LlamaForCausalLM(DecoderForCausalLM):
    """forward(tokens, positions, kv_caches, metadata) -> hidden; compute_logits(hidden) -> logits."""

    def __init__(
        self, config: ModelConfig, dtype: torch.dtype, max_positions: int, shard: TensorShard | None = None
    ) -> None:
        """With a `shard`, this rank's slices of every layer (tensor parallelism, see `layers`)."""
        super().__init__(config, dtype, max_positions, DecoderLayer, shard)

    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        kv_caches: list[KVCache],
        metadata: AttentionMetadata,
    ) -> torch.Tensor:
        """tokens, positions: [tokens] -> hidden: [tokens, hidden_size] (final norm applied)."""
        ops = KERNEL_OPS if self.use_kernel_ops else REFERENCE_OPS
        hidden = self.embed_tokens(tokens)
        residual: torch.Tensor | None = None
        for layer, kv_cache in zip(self.layers, kv_caches, strict=True):
            cos_table, sin_table = self.rotary_tables(layer)
            hidden, residual = layer(
                hidden, residual, positions, kv_cache, metadata, cos_table, sin_table, ops
            )
        assert residual is not None  # the model has at least one layer (checked by the loader)
        hidden, _ = ops.add_rms_norm(hidden, residual, self.norm, self.config.rms_norm_eps)
        return hidden


def qwen_sliding_window(config: dict[str, Any]) -> int | None:
    """Qwen2/Qwen3 configs carry a sliding_window that applies only with use_sliding_window."""
    return config.get("sliding_window") if config.get("use_sliding_window", False) else None


def _config_fields(architecture: str, config: dict[str, Any], path: Path) -> dict[str, Any]:
    fields: dict[str, Any] = {"hidden_act": activation(config, path, ("silu",))}
    if architecture == "Qwen2ForCausalLM":  # q/k/v always biased, o_proj never
        fields.update(qkv_bias=True, o_proj_bias=False, sliding_window=qwen_sliding_window(config))
    return fields


FAMILY = ModelFamily(
    name="llama",
    architectures=("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"),
    model_class=LlamaForCausalLM,
    config_fields=_config_fields,
)
