"""Swaps every ``nn.Linear`` of a loaded model for a ``WeightOnlyLinear`` (``--quantization``).

Runs once at load time, one linear at a time, dropping each full-precision weight as soon as its
quantized form exists: peak memory is the loaded model plus one quantized weight. Embeddings, norms
and the output head (a bare parameter in ``berth_runtime.models``, not an ``nn.Linear``) keep the
model dtype: the head's rounding would reach the logits directly, and the embedding is only gathered.
"""

from __future__ import annotations

import torch
from torch import nn

from berth_runtime.quantization.linear import WeightOnlyLinear

QUANTIZATION_METHODS = ("none", "int8", "fp8")


def quantize_linear_layers(model: nn.Module, method: str) -> int:
    """Replaces ``model``'s ``nn.Linear`` modules in place; returns how many were quantized.

    ``method``: "none" (no change), "int8" or "fp8". fp8 runs on GPUs whose Triton supports e4m3
    (Hopper, Ada); the reference path runs anywhere.
    """
    if method not in QUANTIZATION_METHODS:
        accepted = ", ".join(QUANTIZATION_METHODS)
        raise ValueError(f"quantization {method!r} is not supported; accepted: {accepted}")
    if method == "none":
        return 0
    _check_device_supports(model, method)
    targets = [
        (parent, child_name)
        for parent in model.modules()
        for child_name, child in parent.named_children()
        if isinstance(child, nn.Linear)
    ]
    for parent, child_name in targets:
        linear = getattr(parent, child_name)
        setattr(parent, child_name, WeightOnlyLinear.from_linear(linear, method))
        del linear
    return len(targets)


def _check_device_supports(model: nn.Module, method: str) -> None:
    """fp8 (e4m3) weights need a GPU of compute capability 8.9 or newer for the Triton kernel."""
    device = next((tensor.device for tensor in model.parameters()), torch.device("cpu"))
    if method != "fp8" or device.type != "cuda":
        return
    capability = torch.cuda.get_device_capability(device)
    if capability < (8, 9):
        name = torch.cuda.get_device_name(device)
        raise ValueError(
            f"quantization 'fp8' needs a GPU of compute capability >= 8.9 (Ada, Hopper); {name} is "
            f"{capability[0]}.{capability[1]}; accepted here: none, int8"
        )
