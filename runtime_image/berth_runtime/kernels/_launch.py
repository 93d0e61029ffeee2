"""Checks every kernel wrapper runs before a launch, and the one place that knows about the interpreter.

Triton compiles for CUDA devices only; with ``TRITON_INTERPRET=1`` (set by ``scripts/test.sh``) the same
kernels run on CPU tensors through Triton's interpreter, which is how CI verifies them without a GPU. A
bad argument must fail here with a message that names it, never deep inside Triton with a pointer error.

Two interpreter facts shape the kernels (triton 3.x): bfloat16 values are held as raw uint16, so the
kernels convert every load to float32 before any arithmetic; and ``tl.dot`` on bfloat16 operands is
wrong there, so the dot operand dtype is chosen here: the activation dtype on a GPU, float32 under the
interpreter (see :func:`dot_operand_dtype`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

FLOAT_ACTIVATION_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
INDEX_DTYPES = (torch.int32, torch.int64)

_TRITON_DTYPES = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32}


def runs_interpreted(kernel: object) -> bool:
    """True when ``kernel`` was decorated while ``TRITON_INTERPRET=1`` (it then runs on the host)."""
    return isinstance(kernel, InterpretedFunction)


def check_launchable(kernel: object, op: str, tensors: dict[str, torch.Tensor]) -> torch.device:
    """All tensors on one device that ``kernel`` can run on: CUDA, or the CPU under the interpreter."""
    devices = {name: tensor.device for name, tensor in tensors.items()}
    distinct = set(devices.values())
    if len(distinct) != 1:
        listing = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise ValueError(f"{op}: all tensors must be on one device, got {listing}")
    device = distinct.pop()
    if device.type == "cuda":
        return device
    if device.type == "cpu" and runs_interpreted(kernel):
        return device
    raise ValueError(
        f"{op}: tensors are on {device}; the Triton kernel runs on a CUDA device, or on the CPU only "
        "when TRITON_INTERPRET=1 was set before berth_runtime.kernels was imported; "
        "use berth_runtime.kernels.torch_reference on other devices"
    )


def check_dtype(op: str, name: str, tensor: torch.Tensor, accepted: Iterable[torch.dtype]) -> None:
    accepted = tuple(accepted)
    if tensor.dtype not in accepted:
        names = ", ".join(str(dtype).removeprefix("torch.") for dtype in accepted)
        actual = str(tensor.dtype).removeprefix("torch.")
        raise ValueError(f"{op}: {name} has dtype {actual}; accepted: {names}")


def check_same_dtype(op: str, tensors: dict[str, torch.Tensor]) -> None:
    dtypes = {name: tensor.dtype for name, tensor in tensors.items()}
    if len(set(dtypes.values())) != 1:
        listing = ", ".join(f"{name}={str(dtype).removeprefix('torch.')}" for name, dtype in dtypes.items())
        raise ValueError(f"{op}: these tensors must share one dtype, got {listing}")


def check_shape(op: str, name: str, tensor: torch.Tensor, expected: Sequence[int | None]) -> None:
    """``expected`` lists each dimension's size, ``None`` for "any size"; the rank must match too."""
    actual = tuple(tensor.shape)
    rendered = "[" + ", ".join("*" if size is None else str(size) for size in expected) + "]"
    if len(actual) != len(expected) or any(
        size is not None and size != got for size, got in zip(expected, actual, strict=True)
    ):
        raise ValueError(f"{op}: {name} has shape {list(actual)}; expected {rendered}")


def check_inner_contiguous(op: str, name: str, tensor: torch.Tensor, dims: int = 1) -> None:
    """The last ``dims`` dimensions are packed (row strides may be anything): what the kernels index."""
    expected_stride = 1
    for dim in range(tensor.dim() - 1, tensor.dim() - 1 - dims, -1):
        if tensor.shape[dim] != 1 and tensor.stride(dim) != expected_stride:
            raise ValueError(
                f"{op}: {name} must be contiguous in its last {dims} dimension(s); got shape "
                f"{list(tensor.shape)} with strides {list(tensor.stride())} (call .contiguous())"
            )
        expected_stride *= tensor.shape[dim]


def check_contiguous(op: str, name: str, tensor: torch.Tensor) -> None:
    if not tensor.is_contiguous():
        raise ValueError(
            f"{op}: {name} must be contiguous; got shape {list(tensor.shape)} with strides "
            f"{list(tensor.stride())} (call .contiguous())"
        )


def dot_operand_dtype(kernel: object, activation_dtype: torch.dtype) -> tl.dtype:
    """Operand dtype for ``tl.dot``: the activation dtype on a GPU, float32 under the interpreter."""
    if runs_interpreted(kernel):
        return tl.float32
    return _TRITON_DTYPES[activation_dtype]


def dot_input_precision(operand_dtype: tl.dtype) -> str:
    """``ieee`` for float32 operands (a GPU would otherwise round them to tf32's 10-bit mantissa and
    float32 models would drift from their reference); the default ``tf32`` otherwise (unused)."""
    return "ieee" if operand_dtype == tl.float32 else "tf32"
