"""Load-time weight-only quantization (``--quantization int8|fp8``) of a model's linear layers.

``quantize`` holds the numeric schemes (per-output-channel symmetric int8 and fp8 e4m3),
``linear`` the module that replaces ``nn.Linear`` and runs the Triton kernel on CUDA (a float32
reference elsewhere), and ``apply`` the walk that swaps a loaded model's linears in place.
"""

from berth_runtime.quantization.apply import QUANTIZATION_METHODS, quantize_linear_layers
from berth_runtime.quantization.linear import WeightOnlyLinear

__all__ = ["QUANTIZATION_METHODS", "WeightOnlyLinear", "quantize_linear_layers"]
