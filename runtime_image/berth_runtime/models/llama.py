"""The Llama-family decoder (Llama 2/3, Mistral, Qwen2) over a paged KV cache.

One class covers the family: the differences are data in `ModelConfig` (GQA head counts, q/k/v
bias for Qwen2, tied embeddings, rope scaling). q/k/v and gate/up are stored fused (one matmul
each); the loader concatenates the checkpoint's separate tensors.

Every numeric step is one call through a `LayerOps` table: on a CUDA device the Triton kernels of
`berth_runtime.kernels.layer_ops` (RoPE fused with the KV-cache write), elsewhere the torch
reference, `berth_runtime.kernels.torch_reference`. `LlamaForCausalLM.use_kernel_ops` picks the
table; `load_model` sets it from the device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from berth_runtime.engine.attention_metadata import AttentionMetadata
from berth_runtime.kernels import layer_ops, torch_reference
from berth_runtime.models.model_config import ModelConfig
from berth_runtime.models.rope import cos_sin_table, inverse_frequencies

KVCache = tuple[torch.Tensor, torch.Tensor]
"""(key_cache, value_cache) of one layer, each [num_blocks, block_size, kv_heads, head_dim]."""


@dataclass(frozen=True)
class LayerOps:
    """The model's numeric steps, one callable each, with the torch reference's signatures."""

    rms_norm: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]
    add_rms_norm: Callable[
        [torch.Tensor, torch.Tensor, torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]
    ]
    silu_and_mul: Callable[[torch.Tensor], torch.Tensor]
    rotary_and_store_kv: Callable[..., torch.Tensor]
    """(query, key, value, positions, cos, sin, key_cache, value_cache, slot_mapping) -> rotated
    query; the rotated keys and the values are in the cache afterwards."""
    paged_attention: Callable[
        [torch.Tensor, torch.Tensor, torch.Tensor, AttentionMetadata, float], torch.Tensor
    ]


REFERENCE_OPS = LayerOps(
    rms_norm=torch_reference.rms_norm,
    add_rms_norm=torch_reference.add_rms_norm,
    silu_and_mul=torch_reference.silu_and_mul,
    rotary_and_store_kv=torch_reference.rotary_and_store_kv,
    paged_attention=torch_reference.paged_attention,
)
"""The torch reference, on any device (the CPU build's path)."""

KERNEL_OPS = LayerOps(
    rms_norm=layer_ops.rms_norm_op,
    add_rms_norm=layer_ops.add_rms_norm_op,
    silu_and_mul=layer_ops.silu_and_mul_op,
    rotary_and_store_kv=layer_ops.rotary_and_store_kv_op,
    paged_attention=layer_ops.paged_attention_op,
)
"""The Triton kernels (each falls back to its reference on tensors no kernel can take)."""


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig, dtype: torch.dtype) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.num_heads = config.num_heads
        self.num_kv_heads = config.num_kv_heads
        self.head_dim = config.head_dim
        self.eps = config.rms_norm_eps
        self.q_size = config.num_heads * config.head_dim
        self.kv_size = config.num_kv_heads * config.head_dim
        self.scale = config.head_dim**-0.5
        self.input_layernorm = nn.Parameter(torch.empty(hidden, dtype=dtype))
        self.post_attention_layernorm = nn.Parameter(torch.empty(hidden, dtype=dtype))
        self.qkv_proj = nn.Linear(hidden, self.q_size + 2 * self.kv_size, bias=config.qkv_bias, dtype=dtype)
        self.o_proj = nn.Linear(self.q_size, hidden, bias=config.o_proj_bias, dtype=dtype)
        self.gate_up_proj = nn.Linear(hidden, 2 * config.intermediate_size, bias=config.mlp_bias, dtype=dtype)
        self.down_proj = nn.Linear(config.intermediate_size, hidden, bias=config.mlp_bias, dtype=dtype)

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
        tokens = hidden.shape[0]
        qkv = self.qkv_proj(hidden)
        query, key, value = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        query = query.view(tokens, self.num_heads, self.head_dim)
        key = key.view(tokens, self.num_kv_heads, self.head_dim)
        value = value.view(tokens, self.num_kv_heads, self.head_dim)
        key_cache, value_cache = kv_cache
        query = ops.rotary_and_store_kv(
            query, key, value, positions, cos_table, sin_table, key_cache, value_cache, metadata.slot_mapping
        )
        attended = ops.paged_attention(query, key_cache, value_cache, metadata, self.scale)
        hidden = self.o_proj(attended.reshape(tokens, self.q_size))
        hidden, residual = ops.add_rms_norm(hidden, residual, self.post_attention_layernorm, self.eps)
        hidden = self.down_proj(ops.silu_and_mul(self.gate_up_proj(hidden)))
        return hidden, residual


class LlamaForCausalLM(nn.Module):
    """forward(tokens, positions, kv_caches, metadata) -> hidden; compute_logits(hidden) -> logits."""

    def __init__(self, config: ModelConfig, dtype: torch.dtype, max_positions: int) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, dtype=dtype)
        self.layers = nn.ModuleList(DecoderLayer(config, dtype) for _ in range(config.num_layers))
        self.norm = nn.Parameter(torch.empty(config.hidden_size, dtype=dtype))
        self.lm_head: nn.Parameter | None = None
        if not config.tie_word_embeddings:
            self.lm_head = nn.Parameter(torch.empty(config.vocab_size, config.hidden_size, dtype=dtype))
        self.max_positions = max_positions
        self.use_kernel_ops = False
        """Run the Triton kernel ops (on CUDA) instead of the torch reference."""
        self.cos_table = torch.empty(0)
        self.sin_table = torch.empty(0)

    def init_rotary_tables(self, device: torch.device) -> None:
        """Computes the cos/sin tables on `device` (after the weights are materialized there)."""
        inv_freq = inverse_frequencies(
            self.config.head_dim, self.config.rope, self.config.max_position_embeddings
        )
        cos, sin = cos_sin_table(inv_freq, self.max_positions)
        self.cos_table, self.sin_table = cos.to(device), sin.to(device)

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
            hidden, residual = layer(
                hidden, residual, positions, kv_cache, metadata, self.cos_table, self.sin_table, ops
            )
        assert residual is not None  # the model has at least one layer (checked by the loader)
        hidden, _ = ops.add_rms_norm(hidden, residual, self.norm, self.config.rms_norm_eps)
        return hidden

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden: [rows, hidden_size] -> fp32 logits [rows, vocab_size]."""
        weight = self.embed_tokens.weight if self.lm_head is None else self.lm_head
        return (hidden @ weight.t()).float()
