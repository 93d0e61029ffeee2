"""The kernel-backed layer ops fall back to the torch reference for tensors no kernel can take. (The
engine on these ops, every one of them called, generating the reference path's tokens:
test_engine_kernel_path.py.)"""

from __future__ import annotations

import torch

from berth_runtime.kernels import layer_ops


def test_tensors_no_kernel_can_take_use_the_reference_layers() -> None:
    """Meta tensors stand for a device without kernels: the reference op runs (the kernel would refuse)."""
    hidden = torch.empty(3, 8, device="meta")
    weight = torch.empty(8, device="meta")
    normed, summed = layer_ops.add_rms_norm_op(hidden, hidden, weight, 1e-6)
    assert normed.device.type == "meta" and summed.shape == (3, 8)
    assert layer_ops.silu_and_mul_op(torch.empty(2, 8, device="meta")).shape == (2, 4)
