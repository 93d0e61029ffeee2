"""Small per-step host lists (one value per row: temperatures, token ids) sent to the device.

The sampler and the logit processors build a few such tensors every step; on CUDA they go through
pinned memory asynchronously, so building them never waits for the device.
"""

from __future__ import annotations

import torch


def to_device(
    values: list[float] | list[int] | list[bool], dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """A small host list on `device` without a sync: through pinned memory, asynchronously, on CUDA."""
    tensor = torch.tensor(values, dtype=dtype)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor
