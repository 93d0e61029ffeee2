"""The decoder pieces every family shares, so a family module writes only what differs (its norms,
its residual wiring, its embedding and logits): attention with fused q/k/v, optional per-head q/k
RMSNorm, rope fused with the paged KV-cache write and paged attention (optionally windowed and
soft-capped); the gated MLP with fused gate/up (SiLU or GeGLU), or a mixture of experts (`moe`);
and the model shell: embeddings, layers, final norm, output head, rope tables, KV layout and the
checkpoint-name mapping one loader uses for every family.

With a `TensorShard` (tensor parallelism, Llama-family layers) each layer holds its rank's slices,
Megatron-style: q/k/v and gate/up column-parallel (this rank's heads and intermediate columns),
o_proj and down_proj row-parallel with one all-reduce each (their biases added once, after it), the
embedding and output head vocabulary-parallel (`berth_runtime.parallel.vocab`). Each checkpoint
destination then names the slice of the tensor to read (`SourceSlice`), so no rank reads a whole
weight. Without one (a single GPU) nothing here changes.

Sliding windows and soft-capped scores are arguments of the attention op, and experts go through
the ops table's grouped path, so those layers run the kernels too. Steps the kernels do not cover
(partial rotary; GeGLU, an elementwise reference that takes padding rows) run the torch reference
even on the kernel path; a layer with partial rotary makes `supports_decode_graphs` False, since its
reference cache write takes no CUDA-graph padding rows.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
from torch import nn

from berth_runtime.engine.attention_metadata import AttentionMetadata
from berth_runtime.kernels import torch_reference
from berth_runtime.models.interface import KVCache, KVLayout, WeightDestination
from berth_runtime.models.model_config import ModelConfig
from berth_runtime.models.moe import SparseMoE
from berth_runtime.models.ops import LayerOps
from berth_runtime.models.rope import rope_tables
from berth_runtime.parallel.group import TensorShard
from berth_runtime.parallel.sharding import ShardLayout, SourceSlice
from berth_runtime.parallel.vocab import VocabParallelEmbedding, vocab_parallel_logits
from berth_runtime.quantization.linear import WeightOnlyLinear

_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)\.(weight|bias|weight_scale|weight_zero|input_permutation)$")
# A linear's tensor -> its attribute: nn.Linear's, or a WeightOnlyLinear's (FP8 stored as such).
_LINEAR_ATTRIBUTES = {
    "weight": ("weight", "qweight"),
    "bias": ("bias", "bias"),
    "weight_scale": (None, "scale"),
    "weight_zero": (None, "zero"),  # an Int4Linear's (AWQ, GPTQ stored as such)
    "input_permutation": (None, "input_permutation"),  # one row per checkpoint tensor
}
# Checkpoint module -> (our parameter, shard index inside the fused parameter or None).
_LAYER_TENSORS: dict[str, tuple[str, int | None]] = {
    "self_attn.q_proj": ("qkv_proj", 0),
    "self_attn.k_proj": ("qkv_proj", 1),
    "self_attn.v_proj": ("qkv_proj", 2),
    "self_attn.qkv_proj": ("qkv_proj", None),  # Phi-3 stores them fused, as we do
    "self_attn.o_proj": ("o_proj", None),
    "mlp.gate_proj": ("gate_up_proj", 0),
    "mlp.up_proj": ("gate_up_proj", 1),
    "mlp.gate_up_proj": ("gate_up_proj", None),
    "mlp.down_proj": ("down_proj", None),
}
# Row-parallel biases, kept outside their linear when sharded (added once, after the all-reduce).
_REDUCED_BIASES = {"self_attn.o_proj": "o_proj_bias", "mlp.down_proj": "down_proj_bias"}
_LAYER_NORMS = {
    "input_layernorm": "input_layernorm",
    "post_attention_layernorm": "post_attention_layernorm",
    "pre_feedforward_layernorm": "pre_feedforward_layernorm",
    "post_feedforward_layernorm": "post_feedforward_layernorm",
    "self_attn.q_norm": "q_norm",
    "self_attn.k_norm": "k_norm",
}
_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor] | None] = {
    "silu": None,  # the ops table's (a kernel on the kernel path)
    "gelu_pytorch_tanh": torch_reference.gelu_tanh_and_mul,
}


def fused_split_sizes(config: ModelConfig, fused: str, layout: ShardLayout | None = None) -> list[int]:
    """Rows of each checkpoint tensor inside a fused parameter (q, k, v of qkv_proj; gate, up of
    gate_up_proj): this rank's part of each with a `layout`."""
    if fused == "qkv_proj":
        heads = config.num_heads if layout is None else layout.local_heads
        kv_heads = config.num_kv_heads if layout is None else layout.local_kv_heads
        return [heads * config.head_dim, kv_heads * config.head_dim, kv_heads * config.head_dim]
    size = config.intermediate_size if layout is None else layout.local_intermediate
    return [size, size]


def _source_slices(layout: ShardLayout, head_dim: int, module: str) -> tuple[SourceSlice, ...] | None:
    """The slices of layer tensor `module` a rank reads, concatenated: output rows of the
    column-parallel linears (q, k and v rows apart in a fused qkv_proj, gate and up in a fused
    gate_up_proj, as Phi-3 stores them), input columns of the row-parallel ones; a column-parallel
    bias's the same rows."""
    heads = SourceSlice(0, layout.head_start * head_dim, layout.local_heads * head_dim)
    kv_heads = SourceSlice(0, layout.kv_head_start * head_dim, layout.local_kv_heads * head_dim)
    intermediate = SourceSlice(0, layout.rank * layout.local_intermediate, layout.local_intermediate)
    q_rows, kv_rows = layout.num_heads * head_dim, layout.num_kv_heads * head_dim
    slices = {
        "self_attn.q_proj": (heads,),
        "self_attn.k_proj": (kv_heads,),
        "self_attn.v_proj": (kv_heads,),
        "self_attn.qkv_proj": (heads, kv_heads.shifted(q_rows), kv_heads.shifted(q_rows + kv_rows)),
        "self_attn.o_proj": (SourceSlice(1, heads.start, heads.length),),
        "mlp.gate_proj": (intermediate,),
        "mlp.up_proj": (intermediate,),
        "mlp.gate_up_proj": (intermediate, intermediate.shifted(layout.intermediate_size)),
        "mlp.down_proj": (SourceSlice(1, intermediate.start, intermediate.length),),
    }
    return slices.get(module)


class DecoderLayerBase(nn.Module):
    """Attention and MLP of one layer; the family's subclass adds its norms and `forward`."""

    def __init__(
        self, config: ModelConfig, dtype: torch.dtype, layer_index: int, shard: TensorShard | None = None
    ) -> None:
        super().__init__()
        hidden = config.hidden_size
        layout = shard.layout if shard is not None else None
        self.shard = shard
        self.num_heads = config.num_heads if layout is None else layout.local_heads
        self.num_kv_heads = config.num_kv_heads if layout is None else layout.local_kv_heads
        self.head_dim = config.head_dim
        self.eps = config.rms_norm_eps
        self.q_size = self.num_heads * config.head_dim
        self.kv_size = self.num_kv_heads * config.head_dim
        self.scale = (config.query_pre_attn_scalar or config.head_dim) ** -0.5
        windows = config.layer_sliding_windows
        self.sliding_window = windows[layer_index] if windows is not None else None
        self.logit_softcap = config.attention_logit_softcap
        self.partial_rotary = config.rotary_dim is not None
        self.activation = _ACTIVATIONS[config.hidden_act]
        self.qkv_proj = nn.Linear(hidden, self.q_size + 2 * self.kv_size, bias=config.qkv_bias, dtype=dtype)
        # A row-parallel bias is added once, after the all-reduce: outside the linear when sharded.
        self.o_proj = nn.Linear(self.q_size, hidden, bias=config.o_proj_bias and shard is None, dtype=dtype)
        self.o_proj_bias = _reduced_bias(config.o_proj_bias, shard, hidden, dtype)
        self.down_proj_bias: nn.Parameter | None = None
        self.moe: SparseMoE | None = None
        self.gate_up_proj: nn.Linear | None = None
        self.down_proj: nn.Linear | None = None
        if config.moe is not None and config.moe.sparse_layers[layer_index]:
            self.moe = SparseMoE(hidden, config.moe, dtype)
        else:
            size = config.intermediate_size if layout is None else layout.local_intermediate
            self.gate_up_proj = nn.Linear(hidden, 2 * size, bias=config.mlp_bias, dtype=dtype)
            self.down_proj = nn.Linear(size, hidden, bias=config.mlp_bias and shard is None, dtype=dtype)
            self.down_proj_bias = _reduced_bias(config.mlp_bias, shard, hidden, dtype)
        self.q_norm: nn.Parameter | None = None
        self.k_norm: nn.Parameter | None = None
        if config.qk_norm:
            self.q_norm = nn.Parameter(torch.empty(config.head_dim, dtype=dtype))
            self.k_norm = nn.Parameter(torch.empty(config.head_dim, dtype=dtype))

    @property
    def runs_on_kernels_only(self) -> bool:
        """No step of this layer falls back to the torch reference on the kernel path."""
        return not self.partial_rotary

    def attention(
        self,
        hidden: torch.Tensor,
        positions: torch.Tensor,
        kv_cache: KVCache,
        metadata: AttentionMetadata,
        cos_table: torch.Tensor,
        sin_table: torch.Tensor,
        ops: LayerOps,
    ) -> torch.Tensor:
        """hidden: [tokens, hidden_size] (normed) -> the attention block's output, o_proj applied."""
        tokens = hidden.shape[0]
        query, key, value = self.qkv_proj(hidden).split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        query = query.view(tokens, self.num_heads, self.head_dim)
        key = key.view(tokens, self.num_kv_heads, self.head_dim)
        value = value.view(tokens, self.num_kv_heads, self.head_dim)
        if self.q_norm is not None and self.k_norm is not None:  # per head: [tokens * heads, head_dim]
            query = ops.rms_norm(query.reshape(-1, self.head_dim), self.q_norm, self.eps).view(query.shape)
            key = ops.rms_norm(key.reshape(-1, self.head_dim), self.k_norm, self.eps).view(key.shape)
        key_cache, value_cache = kv_cache
        rotary_and_store_kv = (
            torch_reference.rotary_and_store_kv if self.partial_rotary else ops.rotary_and_store_kv
        )
        query = rotary_and_store_kv(
            query, key, value, positions, cos_table, sin_table, key_cache, value_cache, metadata.slot_mapping
        )
        attended = ops.paged_attention(
            query, key_cache, value_cache, metadata, self.scale, self.sliding_window, self.logit_softcap
        )
        return self._reduce(self.o_proj(attended.reshape(tokens, self.q_size)), self.o_proj_bias)

    def mlp(self, hidden: torch.Tensor, ops: LayerOps) -> torch.Tensor:
        """hidden: [tokens, hidden_size] (normed) -> the MLP's output."""
        if self.moe is not None:
            return self.moe(hidden, ops)
        assert self.gate_up_proj is not None and self.down_proj is not None  # a dense layer
        gate_up = self.gate_up_proj(hidden)
        activated = ops.silu_and_mul(gate_up) if self.activation is None else self.activation(gate_up)
        return self._reduce(self.down_proj(activated), self.down_proj_bias)

    def _reduce(self, partial: torch.Tensor, bias: nn.Parameter | None) -> torch.Tensor:
        """A row-parallel linear's output: the ranks' partial sums added, then its bias; as is
        without a shard."""
        if self.shard is None:
            return partial
        reduced = self.shard.group.all_reduce(partial)
        return reduced if bias is None else reduced + bias


def _reduced_bias(
    biased: bool, shard: TensorShard | None, hidden: int, dtype: torch.dtype
) -> nn.Parameter | None:
    if not biased or shard is None:
        return None
    return nn.Parameter(torch.empty(hidden, dtype=dtype))


class DecoderForCausalLM(nn.Module):
    """The model shell (a `CausalLM`): the family's subclass passes its layer class and writes
    `forward`."""

    def __init__(
        self,
        config: ModelConfig,
        dtype: torch.dtype,
        max_positions: int,
        layer_class: Callable[..., DecoderLayerBase],
        shard: TensorShard | None = None,
    ) -> None:
        """`layer_class(config, dtype, layer_index)` builds a layer, or with a `shard`
        `layer_class(config, dtype, layer_index, shard)`: only families that shard receive one."""
        super().__init__()
        self.config = config
        self.shard = shard
        hidden, vocab = config.hidden_size, config.vocab_size
        extra = () if shard is None else (shard,)
        self.embed_tokens: nn.Embedding | VocabParallelEmbedding = (
            nn.Embedding(vocab, hidden, dtype=dtype)
            if shard is None
            else VocabParallelEmbedding(shard.layout, shard.group, hidden, dtype)
        )
        self.layers = nn.ModuleList(
            layer_class(config, dtype, index, *extra) for index in range(config.num_layers)
        )
        self.norm = nn.Parameter(torch.empty(hidden, dtype=dtype))
        self.lm_head: nn.Parameter | None = None
        if not config.tie_word_embeddings:
            rows = vocab if shard is None else shard.layout.local_vocab
            self.lm_head = nn.Parameter(torch.empty(rows, hidden, dtype=dtype))
        self.max_positions = max_positions
        self.use_kernel_ops = False
        """Run the Triton kernel ops (on CUDA) instead of the torch reference."""
        self.cos_table = torch.empty(0)
        self.sin_table = torch.empty(0)
        self.local_cos_table: torch.Tensor | None = None
        """The sliding-window layers' tables when their rope differs (`config.local_rope`)."""
        self.local_sin_table: torch.Tensor | None = None

    def init_rotary_tables(self, device: torch.device) -> None:
        """Computes the cos/sin tables on `device` (after the weights are materialized there)."""
        config = self.config
        rotary_dim = config.rotary_dim or config.head_dim
        cos, sin = rope_tables(rotary_dim, config.rope, config.max_position_embeddings, self.max_positions)
        self.cos_table, self.sin_table = cos.to(device), sin.to(device)
        if config.local_rope is not None:
            cos, sin = rope_tables(
                rotary_dim, config.local_rope, config.max_position_embeddings, self.max_positions
            )
            self.local_cos_table, self.local_sin_table = cos.to(device), sin.to(device)

    def rotary_tables(self, layer: DecoderLayerBase) -> tuple[torch.Tensor, torch.Tensor]:
        if layer.sliding_window is not None and self.local_cos_table is not None:
            assert self.local_sin_table is not None  # set together
            return self.local_cos_table, self.local_sin_table
        return self.cos_table, self.sin_table

    @property
    def kv_layout(self) -> KVLayout:
        """This rank's KV heads (all of them without a shard)."""
        kv_heads = self.config.num_kv_heads if self.shard is None else self.shard.layout.local_kv_heads
        return KVLayout(self.config.num_layers, kv_heads, self.config.head_dim)

    @property
    def supports_decode_graphs(self) -> bool:
        return self.use_kernel_ops and all(layer.runs_on_kernels_only for layer in self.layers)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden: [rows, hidden_size] -> fp32 logits [rows, vocab_size], soft-capped if the model says."""
        weight = self.embed_tokens.weight if self.lm_head is None else self.lm_head
        if self.shard is None:
            logits = (hidden @ weight.t()).float()
        else:
            logits = vocab_parallel_logits(hidden, weight, self.shard.layout, self.shard.group).float()
        cap = self.config.final_logit_softcap
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
        return logits

    def checkpoint_destination(self, name: str) -> WeightDestination | None:
        """Where the Hugging Face tensor `name` goes (q/k/v and gate/up into their fused parameters),
        and with a shard which slice of it this rank reads."""
        layout = self.shard.layout if self.shard is not None else None
        vocab = None if layout is None else (SourceSlice(0, layout.vocab_start, layout.local_vocab),)
        if name == "model.embed_tokens.weight":
            return WeightDestination(self.embed_tokens.weight, source=vocab)
        if name == "model.norm.weight":
            return WeightDestination(self.norm)
        if name == "lm_head.weight":
            return WeightDestination(self.lm_head, source=vocab) if self.lm_head is not None else None
        match = _LAYER.match(name)
        if match is None or int(match.group(1)) >= self.config.num_layers:
            return None
        layer, module, kind = self.layers[int(match.group(1))], match.group(2), match.group(3)
        if module in _LAYER_NORMS and kind == "weight":
            norm = getattr(layer, _LAYER_NORMS[module], None)
            return WeightDestination(norm) if norm is not None else None
        if layer.moe is not None:  # its weights, and its stored experts' scales, zeros and orders
            destination = layer.moe.checkpoint_destination(module, kind)
            if destination is not None:
                return destination
        if layout is not None and kind == "bias" and module in _REDUCED_BIASES:
            return WeightDestination(getattr(layer, _REDUCED_BIASES[module]))
        linear = getattr(layer, _LAYER_TENSORS[module][0]) if module in _LAYER_TENSORS else None
        if linear is None:  # an unknown tensor, or a dense MLP's in a layer of experts
            return None
        ours, shard = _LAYER_TENSORS[module]
        plain, stored = _LINEAR_ATTRIBUTES[kind]
        attribute = plain if isinstance(linear, nn.Linear) else stored
        parameter = getattr(linear, attribute) if attribute is not None else None
        if parameter is None:  # a bias the config says the model has not
            return None
        if kind == "input_permutation":  # one row per checkpoint tensor fused here
            return WeightDestination(parameter, shard or 0, 1)
        source = None if layout is None else _source_slices(layout, self.config.head_dim, module)
        if shard is None:
            return WeightDestination(parameter, source=source)
        sizes = fused_split_sizes(self.config, ours, layout)
        if kind == "weight_scale" and isinstance(linear, WeightOnlyLinear):  # block-wise FP8: per row block
            sizes = [linear.scale_rows(size) for size in sizes]
        return WeightDestination(parameter, sum(sizes[:shard]), sizes[shard], source=source)
