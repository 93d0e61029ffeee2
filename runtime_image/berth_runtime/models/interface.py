"""What the engine needs from a model, whatever its family: the `CausalLM` protocol the model runner,
the engine builder and the CUDA-graph decode step run against, and the `ModelFamily` record each
family module registers (`berth_runtime.models.registry`).

The engine never names a model class: it asks the model for the KV cache layout to allocate, runs
`forward` over a step's packed rows with the paged KV cache, and turns hidden states into logits.
Loading asks the model where each checkpoint tensor goes (`checkpoint_destination`), so one loader
serves every family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from berth_runtime.engine.attention_metadata import AttentionMetadata
from berth_runtime.models.model_config import ModelConfig
from berth_runtime.parallel.sharding import SourceSlice

KVCache = tuple[torch.Tensor, torch.Tensor]
"""(key_cache, value_cache) of one layer, each [num_blocks, block_size, kv_heads, head_dim]."""


@dataclass(frozen=True)
class KVLayout:
    """The paged KV cache a model needs: one (key, value) pair of caches per layer, each
    [num_blocks, block_size, num_kv_heads, head_dim]."""

    num_layers: int
    num_kv_heads: int
    head_dim: int


@dataclass(frozen=True)
class WeightDestination:
    """Where one checkpoint tensor goes: `parameter` (its `expert`-th slice when the model stacks
    experts), or rows [row_offset, row_offset + rows) of it when the model fuses several checkpoint
    tensors into one (q/k/v, gate/up)."""

    parameter: torch.Tensor
    """A parameter, or a buffer of a quantized linear."""
    row_offset: int = 0
    rows: int | None = None
    expert: int | None = None
    source: tuple[SourceSlice, ...] | None = None
    """With tensor parallelism, the slices of the checkpoint tensor this rank reads, concatenated
    along their dimension (None: all of it)."""

    def view(self) -> torch.Tensor:
        """The part of the parameter the tensor fills."""
        target: torch.Tensor = self.parameter if self.expert is None else self.parameter[self.expert]
        if self.rows is None:
            return target
        return target.narrow(0, self.row_offset, self.rows)


class CausalLM(Protocol):
    """A decoder-only language model over a paged KV cache (an `nn.Module` in practice)."""

    config: ModelConfig
    max_positions: int
    """Positions the rotary tables cover (the engine's max_model_len)."""
    use_kernel_ops: bool
    """Run the Triton kernel ops (CUDA) instead of the torch reference."""

    @property
    def kv_layout(self) -> KVLayout: ...

    @property
    def supports_decode_graphs(self) -> bool:
        """Every op of a decode step takes CUDA-graph padding rows (negative slots, empty contexts)."""
        ...

    def __call__(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        kv_caches: list[KVCache],
        metadata: AttentionMetadata,
    ) -> torch.Tensor:
        """tokens, positions: [tokens] -> hidden: [tokens, hidden_size] (final norm applied); each token's
        key and value are written to its slot of `kv_caches` on the way."""
        ...

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden: [rows, hidden_size] -> fp32 logits [rows, vocab_size]."""
        ...

    def checkpoint_destination(self, name: str) -> WeightDestination | None:
        """Where the Hugging Face checkpoint tensor `name` goes; None if the model has no place for it."""
        ...

    def init_rotary_tables(self, device: torch.device) -> None:
        """Computes the rope cos/sin tables on `device` once the weights are there."""
        ...


@dataclass(frozen=True)
class ModelFamily:
    """One module's models: the config.json `architectures` it serves, how to build the model, and the
    config fields that differ from the shared reading (`model_config.load_model_config`)."""

    name: str
    architectures: tuple[str, ...]
    model_class: Callable[[ModelConfig, torch.dtype, int], CausalLM]
    """(config, dtype, max_positions) -> the model, weights unset."""
    config_fields: Callable[[str, dict[str, Any], Path], dict[str, Any]]
    """(architecture, config.json, its path) -> ModelConfig fields to set or override."""
