"""RuntimeConfig: derived fields and clear errors for every bad flag value."""

from __future__ import annotations

import dataclasses

import pytest

from berth_runtime import config as config_module
from berth_runtime.config import RuntimeConfig


def test_config_derives_served_name_and_device() -> None:
    config = RuntimeConfig(model="/models/model/", device=None)
    assert config.served_model_name == "model"
    assert config.device in ("cpu", "cuda")
    assert config.effective_gpu_memory_utilization == 0.9
    assert RuntimeConfig(model="/m", served_model_name="chat").model_name == "chat"


def test_config_is_frozen() -> None:
    config = RuntimeConfig(model="/m", device="cpu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"dtype": "float64"}, "dtype='float64'"),
        ({"device": "tpu"}, "device='tpu'"),
        ({"port": 0}, "port=0"),
        ({"metrics_port": 8000}, "metrics_port=8000"),
        ({"max_model_len": 0}, "max_model_len=0"),
        ({"max_num_seqs": 0}, "max_num_seqs=0"),
        ({"max_num_batched_tokens": 0}, "max_num_batched_tokens=0"),
        ({"block_size": 0}, "block_size=0"),
        ({"kv_cache_blocks": -1}, "kv_cache_blocks=-1"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization=1.5"),
        ({"gpu_memory_utilization": 0.5, "kv_cache_blocks": 10}, "mutually exclusive"),
        ({"num_speculative_tokens": 3}, "needs a speculative_method"),
        ({"max_queue": 0}, "max_queue=0"),
        ({"drain_timeout": -1.0}, "drain_timeout=-1.0"),
        ({"warmup_prompts": 0}, "warmup_prompts=0"),
        ({"log_level": "loud"}, "log_level='loud'"),
        ({"quantization": "int4"}, "quantization='int4'"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError) as error:
        RuntimeConfig(**{"model": "/m", "device": "cpu", **kwargs})  # type: ignore[arg-type]
    assert fragment in str(error.value)


def test_config_tensor_parallel_needs_a_gpu_per_rank_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_module, "_cuda_available", lambda: True)
    monkeypatch.setattr(config_module, "_cuda_device_count", lambda: 1)
    with pytest.raises(
        ValueError, match=r"tensor_parallel_size=2 needs one GPU per rank; this machine has 1"
    ):
        RuntimeConfig(model="/m", device="cuda", tensor_parallel_size=2)
    assert RuntimeConfig(model="/m", device="cpu", tensor_parallel_size=2).tensor_parallel_size == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"quantization": "int8"},
        {"quantization": "fp8"},
        {"speculative_method": "ngram", "num_speculative_tokens": 4},
    ],
)
def test_config_accepts_quantization_and_ngram_speculation(kwargs: dict[str, object]) -> None:
    config = RuntimeConfig(model="/m", device="cpu", **kwargs)  # type: ignore[arg-type]
    for name, value in kwargs.items():
        assert getattr(config, name) == value


def test_config_fp8_on_a_gpu_below_compute_capability_8_9_fails_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(config_module, "_cuda_available", lambda: True)
    monkeypatch.setattr(config_module, "_cuda_capability", lambda: (8, 0))
    with pytest.raises(ValueError, match=r"quantization='fp8' needs .* >= 8.9.*8\.0"):
        RuntimeConfig(model="/m", device="cuda", quantization="fp8")
    assert RuntimeConfig(model="/m", device="cuda", quantization="int8").quantization == "int8"
