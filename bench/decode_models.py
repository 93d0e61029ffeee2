"""Shared by the decode benchmarks: the model shapes, berth's model built on them with random
weights (optionally int8), the bytes a decode step must read, the device's copy bandwidth and matmul
rate, the switch between the model's reference layers and the kernel layer ops, and the loop that
drives an engine through a timed batch of requests."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from berth_runtime.engine.llm_engine import LLMEngine
from berth_runtime.models.llama import LlamaForCausalLM
from berth_runtime.models.model_config import load_model_config
from berth_runtime.quantization import quantize_linear_layers
from berth_runtime.sampling_params import SamplingParams

SHAPES: dict[str, dict[str, Any]] = {
    "1b": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16},
    "8b": {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32},
    # small enough for the CPU (the tensor-parallel comparison's smoke test under gloo): 4 / 2 heads
    "tiny": {
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 512,
    },
}
COMMON_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "bos_token_id": 128000,
    "eos_token_id": 128001,
}


def synchronize() -> None:
    """Waits for the GPU's queued work; nothing to wait for on the CPU."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def device_copy_bandwidth(device: torch.device) -> float:
    """Bytes/s of a large device-to-device copy (read + write counted), best of 10; on the CPU a
    128 MiB host copy (the CPU runs are smoke tests: the figure only makes the share computable)."""
    source = torch.empty(1 << (30 if device.type == "cuda" else 27), dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    best = float("inf")
    for _ in range(10):
        synchronize()
        start = time.perf_counter()
        target.copy_(source)
        synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * source.numel() / best


def matmul_flops(device: torch.device) -> float:
    """FLOP/s of a dense 8192^3 bf16 matmul, best of 10."""
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device=device)
    b = torch.randn(8192, 8192, dtype=torch.bfloat16, device=device)
    best = float("inf")
    for _ in range(10):
        torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * 8192**3 / best


def model_config_dict(shape: str) -> dict[str, Any]:
    return {**COMMON_CONFIG, **SHAPES[shape]}


def build_berth_model(shape: str, weights: str, device: torch.device, workdir: Path) -> LlamaForCausalLM:
    """berth's model for the shape with random N(0, 0.02) weights (norms 1), quantized if asked."""
    model_dir = workdir / shape
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.json").write_text(json.dumps(model_config_dict(shape)))
    config = load_model_config(model_dir)
    with torch.device("meta"):
        model = LlamaForCausalLM(
            config, torch.bfloat16, max_positions=COMMON_CONFIG["max_position_embeddings"]
        )
    model = model.to_empty(device=device)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() == 1:
                parameter.fill_(1.0 if "norm" in name or "layernorm" in name else 0.0)
            else:
                parameter.normal_(0.0, 0.02)
    model.init_rotary_tables(device)
    if weights == "int8":
        quantize_linear_layers(model, "int8")
    return model.eval()


def streamed_weight_bytes(model: torch.nn.Module) -> int:
    """Bytes a decode step reads from weights: everything but the embedding table (only gathered)."""
    embedding = {id(tensor) for tensor in model.embed_tokens.parameters()}
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors if id(t) not in embedding and t.dim() > 0)


def kv_bytes_per_token(config: dict[str, Any]) -> int:
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    return 2 * config["num_hidden_layers"] * config["num_key_value_heads"] * head_dim * 2


@contextlib.contextmanager
def model_layers(model: LlamaForCausalLM, kind: str) -> Iterator[None]:
    """``reference``: ``model`` on the torch reference layers; ``kernels`` and ``graphs``: on the
    Triton kernel layer ops (what the engine runs on CUDA; ``graphs`` also replays decode from CUDA
    graphs, which the caller captures); the model's own choice is restored afterwards."""
    saved = model.use_kernel_ops
    model.use_kernel_ops = kind in ("kernels", "graphs")
    try:
        yield
    finally:
        model.use_kernel_ops = saved


def random_prompts(batch: int, length: int, vocab_size: int, seed: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (batch, length), generator=generator).tolist()


def run_engine(engine: LLMEngine, prompts: list[list[int]], new_tokens: int) -> tuple[float, float, float]:
    """(total seconds, seconds until every sequence had its first token, decode seconds per step)."""
    params = SamplingParams(max_tokens=new_tokens, temperature=0.0, ignore_eos=True)
    for index, prompt in enumerate(prompts):
        engine.add_request(f"bench-{index}", prompt, params)
    synchronize()
    start = time.perf_counter()
    first_token_done = None
    produced: dict[str, int] = {}
    decode_steps = 0
    while engine.has_unfinished_requests():
        outputs = engine.step()
        for output in outputs:
            produced[output.request_id] = output.completion_tokens
        if first_token_done is None and len(produced) == len(prompts):
            synchronize()
            first_token_done = time.perf_counter()
        elif first_token_done is not None:
            decode_steps += 1
    synchronize()
    end = time.perf_counter()
    if sum(produced.values()) != new_tokens * len(prompts):
        raise RuntimeError(
            f"the engine produced {sum(produced.values())} tokens, expected {new_tokens * len(prompts)}"
        )
    first = first_token_done if first_token_done is not None else end
    return end - start, first - start, (end - first) / max(1, decode_steps)
