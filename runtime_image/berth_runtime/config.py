"""The runtime's configuration: one frozen, validated value holding every `serve` flag.

The operator renders the runtime's command line, so these fields are an API (the flag table in
runtime_image/README.md). The CLI builds a `RuntimeConfig`; everything downstream (engine, server)
reads only this object. Bad input raises `ValueError` naming the field, the value and what is
accepted, before any weights are loaded.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

DTYPES = ("bfloat16", "float16", "float32")
DEVICES = ("cpu", "cuda")
QUANTIZATIONS = ("none", "int8", "fp8")
SPECULATIVE_METHODS = ("none", "ngram")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")

#: Share of device memory for weights + KV cache when neither --kv-cache-blocks nor
#: --gpu-memory-utilization is given.
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9


def _require(condition: bool, field_name: str, value: object, accepted: str) -> None:
    if not condition:
        raise ValueError(f"invalid {field_name}={value!r}: accepted values are {accepted}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class RuntimeConfig:
    """Every `python -m berth_runtime serve` flag, validated; see the README's flag table."""

    model: str
    """Path of a Hugging Face layout model directory (config.json, safetensors, tokenizer.json), a GGUF
    file, or a directory holding one .gguf file and no safetensors."""
    served_model_name: str | None = None
    """Name clients ask for; derived from the basename of `model` when None."""
    host: str = "0.0.0.0"
    port: int = 8000
    """HTTP port for KServe v2, OpenAI, /metrics and health."""
    metrics_port: int = 0
    """If non-zero, /metrics is also served on this port."""
    dtype: str = "bfloat16"
    device: str | None = None
    """cpu or cuda; derived (cuda if available, else cpu) when None."""
    quantization: str = "none"
    max_model_len: int | None = None
    """Context limit in tokens (prompt + output); None means the model's max_position_embeddings."""
    max_num_seqs: int = 64
    """Most sequences running in one engine step (`--max-num-seqs`, or its former name
    `--max-batch-size`)."""
    max_num_batched_tokens: int = 2048
    """Per-step token budget; longer prompts are prefilled in chunks of at most this many tokens."""
    block_size: int = 16
    """KV cache block size in tokens."""
    kv_cache_blocks: int = 0
    """Explicit KV cache block count; 0 derives it from memory."""
    gpu_memory_utilization: float | None = None
    """Share (0, 1] of device memory for weights + KV cache; None means the default (0.9) unless
    kv_cache_blocks is given. Use `effective_gpu_memory_utilization` to read it."""
    enable_prefix_caching: bool = False
    speculative_method: str = "none"
    num_speculative_tokens: int = 0
    tensor_parallel_size: int = 1
    """GPUs one model is split over (`--tensor-parallel-size`): rank 0 serves, the others are worker
    processes it starts (`berth_runtime.parallel`); on the CPU, that many gloo processes."""
    max_queue: int = 256
    """Most requests waiting for a batch slot; beyond it requests are refused (503)."""
    drain_timeout: float = 30.0
    """Seconds to let in-flight requests finish after SIGTERM."""
    warmup_prompts: int = 1
    api_key_file: str | None = None
    seed: int = 0
    """Base of the default sampling seed (requests without their own seed)."""
    log_level: str = "info"

    def __post_init__(self) -> None:
        self._validate_fields()
        if self.served_model_name is None:
            name = os.path.basename(os.path.normpath(self.model))
            object.__setattr__(self, "served_model_name", name)
        if self.device is None:
            object.__setattr__(self, "device", _default_device())
        object.__setattr__(self, "log_level", self.log_level.lower())
        self._check_supported_by_this_build()

    @property
    def model_name(self) -> str:
        """The served model name, always set after construction."""
        return str(self.served_model_name)

    @property
    def effective_gpu_memory_utilization(self) -> float:
        if self.gpu_memory_utilization is None:
            return DEFAULT_GPU_MEMORY_UTILIZATION
        return self.gpu_memory_utilization

    def _validate_fields(self) -> None:
        _require(
            isinstance(self.model, str) and self.model != "",
            "model",
            self.model,
            "a model directory or GGUF file",
        )
        if self.served_model_name is not None:
            _require(
                isinstance(self.served_model_name, str) and self.served_model_name.strip() != "",
                "served_model_name",
                self.served_model_name,
                "a non-empty name",
            )
        _require(isinstance(self.host, str) and self.host != "", "host", self.host, "a bind address")
        _require(_is_int(self.port) and 1 <= self.port <= 65535, "port", self.port, "an integer 1..65535")
        _require(
            _is_int(self.metrics_port) and 0 <= self.metrics_port <= 65535,
            "metrics_port",
            self.metrics_port,
            "0 (off) or an integer 1..65535",
        )
        if self.metrics_port != 0:
            _require(
                self.metrics_port != self.port, "metrics_port", self.metrics_port, "a port other than port"
            )
        _require(self.dtype in DTYPES, "dtype", self.dtype, " | ".join(DTYPES))
        if self.device is not None:
            _require(self.device in DEVICES, "device", self.device, " | ".join(DEVICES))
        _require(
            self.quantization in QUANTIZATIONS, "quantization", self.quantization, " | ".join(QUANTIZATIONS)
        )
        if self.max_model_len is not None:
            _require(
                _is_int(self.max_model_len) and self.max_model_len >= 1,
                "max_model_len",
                self.max_model_len,
                "an integer >= 1 (or unset for the model's max_position_embeddings)",
            )
        _require(
            _is_int(self.max_num_seqs) and self.max_num_seqs >= 1,
            "max_num_seqs",
            self.max_num_seqs,
            "an integer >= 1",
        )
        _require(
            _is_int(self.max_num_batched_tokens) and self.max_num_batched_tokens >= 1,
            "max_num_batched_tokens",
            self.max_num_batched_tokens,
            "an integer >= 1",
        )
        _require(
            _is_int(self.block_size) and 1 <= self.block_size <= 1024,
            "block_size",
            self.block_size,
            "an integer 1..1024 (16 is usual)",
        )
        _require(
            _is_int(self.kv_cache_blocks) and self.kv_cache_blocks >= 0,
            "kv_cache_blocks",
            self.kv_cache_blocks,
            "0 (derive from memory) or an integer >= 1",
        )
        if self.gpu_memory_utilization is not None:
            _require(
                _is_number(self.gpu_memory_utilization) and 0 < self.gpu_memory_utilization <= 1,
                "gpu_memory_utilization",
                self.gpu_memory_utilization,
                "a number in (0, 1]",
            )
            if self.kv_cache_blocks != 0:
                raise ValueError(
                    f"kv_cache_blocks={self.kv_cache_blocks} and gpu_memory_utilization="
                    f"{self.gpu_memory_utilization} are mutually exclusive: give one of them"
                )
        _require(
            self.speculative_method in SPECULATIVE_METHODS,
            "speculative_method",
            self.speculative_method,
            " | ".join(SPECULATIVE_METHODS),
        )
        _require(
            _is_int(self.num_speculative_tokens) and 0 <= self.num_speculative_tokens <= 16,
            "num_speculative_tokens",
            self.num_speculative_tokens,
            "an integer 0..16",
        )
        if self.speculative_method == "none" and self.num_speculative_tokens != 0:
            raise ValueError(
                f"num_speculative_tokens={self.num_speculative_tokens} needs a speculative_method; "
                "accepted: speculative_method=ngram, or num_speculative_tokens=0"
            )
        if self.speculative_method != "none" and self.num_speculative_tokens == 0:
            raise ValueError(
                f"speculative_method={self.speculative_method!r} needs num_speculative_tokens >= 1"
            )
        _require(
            _is_int(self.tensor_parallel_size) and self.tensor_parallel_size >= 1,
            "tensor_parallel_size",
            self.tensor_parallel_size,
            "an integer >= 1",
        )
        _require(
            _is_int(self.max_queue) and self.max_queue >= 1, "max_queue", self.max_queue, "an integer >= 1"
        )
        _require(
            _is_number(self.drain_timeout) and self.drain_timeout >= 0,
            "drain_timeout",
            self.drain_timeout,
            "a number of seconds >= 0",
        )
        _require(
            _is_int(self.warmup_prompts) and self.warmup_prompts >= 1,
            "warmup_prompts",
            self.warmup_prompts,
            "an integer >= 1",
        )
        if self.api_key_file is not None:
            _require(
                isinstance(self.api_key_file, str) and self.api_key_file != "",
                "api_key_file",
                self.api_key_file,
                "a file path",
            )
        _require(_is_int(self.seed), "seed", self.seed, "an integer")
        _require(
            isinstance(self.log_level, str) and self.log_level.lower() in LOG_LEVELS,
            "log_level",
            self.log_level,
            " | ".join(LOG_LEVELS),
        )

    def _check_supported_by_this_build(self) -> None:
        """Flags the contract names but this build cannot honour fail here, before loading weights."""
        if self.quantization == "fp8" and self.device == "cuda" and _cuda_available():
            capability = _cuda_capability()
            if capability < (8, 9):
                raise ValueError(
                    f"quantization='fp8' needs a GPU of compute capability >= 8.9 (Ada, Hopper); this "
                    f"one is {capability[0]}.{capability[1]}; accepted here: none, int8"
                )
        if self.device == "cuda" and not _cuda_available():
            raise ValueError("device='cuda' but no CUDA device is available; accepted here: cpu")
        if (
            self.device == "cuda"
            and self.tensor_parallel_size > 1
            and self.tensor_parallel_size > _cuda_device_count()
        ):
            raise ValueError(
                f"tensor_parallel_size={self.tensor_parallel_size} needs one GPU per rank; this "
                f"machine has {_cuda_device_count()}; accepted here: 1..{_cuda_device_count()}"
            )


def check_against_model(config: RuntimeConfig, model_context_len: int) -> None:
    """The checks that need the model's config but not its weights (config.json or GGUF metadata
    gives `model_context_len`, its max_position_embeddings or sliding window): ValueError naming
    the flag, the value and the accepted range, before any weights are loaded."""
    if config.max_model_len is not None and config.max_model_len > model_context_len:
        raise ValueError(
            f"invalid max_model_len={config.max_model_len} (--max-model-len): this model's context "
            f"is {model_context_len} tokens (max_position_embeddings, or its sliding window); "
            f"accepted values are 1..{model_context_len}, or unset for {model_context_len}"
        )
    max_model_len = config.max_model_len or model_context_len
    needed = -(-max_model_len // config.block_size)
    if config.kv_cache_blocks and config.kv_cache_blocks < needed:
        raise ValueError(
            f"invalid kv_cache_blocks={config.kv_cache_blocks} (--kv-cache-blocks): one sequence of "
            f"max_model_len={max_model_len} tokens needs {needed} blocks of {config.block_size} tokens; "
            f"accepted values are >= {needed}, or 0 to derive it (or lower --max-model-len)"
        )


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _cuda_device_count() -> int:
    import torch

    return int(torch.cuda.device_count())


def _cuda_capability() -> tuple[int, int]:
    import torch

    major, minor = torch.cuda.get_device_capability()
    return int(major), int(minor)


def _default_device() -> str:
    return "cuda" if _cuda_available() else "cpu"
