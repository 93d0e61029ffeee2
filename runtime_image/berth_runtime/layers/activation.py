"""The gated MLP activation: SiLU(gate) * up over the fused gate_up projection."""

from __future__ import annotations

import torch
import torch.nn.functional as functional


def silu_and_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """gate_up: [tokens, 2 * intermediate] (gate first, then up) -> [tokens, intermediate]."""
    gate, up = gate_up.chunk(2, dim=-1)
    return functional.silu(gate) * up
