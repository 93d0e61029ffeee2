"""The int8/fp8 quality thresholds of tests/runtime/test_quantization_quality.py, on CUDA, where
``WeightOnlyLinear`` runs the Triton kernel instead of the float32 reference."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from berth_runtime.quantization import quantize_linear_layers

THRESHOLDS = {
    "int8": {"cosine_mean": 0.9995, "cosine_min": 0.999, "top1": 0.90},
    "fp8": {"cosine_mean": 0.995, "cosine_min": 0.99, "top1": 0.85},
}


@pytest.mark.parametrize("method", ["int8", "fp8"])
def test_quantized_logits_track_full_precision_on_cuda(method: str) -> None:
    if method == "fp8" and torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("float8 e4m3 needs compute capability >= 8.9")
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=512,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).eval().to("cuda")
    prompts = torch.randint(0, 512, (8, 24), generator=torch.Generator().manual_seed(1)).to("cuda")
    quantized = copy.deepcopy(model)
    quantize_linear_layers(quantized, method)
    with torch.no_grad():
        expected = model(prompts).logits.float()
        actual = quantized(prompts).logits.float()
    cosine = nn.functional.cosine_similarity(actual.flatten(0, 1), expected.flatten(0, 1), dim=-1)
    top1 = (actual.argmax(-1) == expected.argmax(-1)).float().mean().item()
    limits = THRESHOLDS[method]
    assert cosine.mean().item() >= limits["cosine_mean"]
    assert cosine.min().item() >= limits["cosine_min"]
    assert top1 >= limits["top1"]


def test_fp8_is_refused_below_compute_capability_8_9() -> None:
    model = nn.Sequential(nn.Linear(16, 16)).to("cuda")
    if torch.cuda.get_device_capability() >= (8, 9):
        assert quantize_linear_layers(model, "fp8") == 1
        assert model[0](torch.randn(2, 16, device="cuda")).shape == (2, 16)
    else:
        with pytest.raises(ValueError, match=r"compute capability >= 8.9 .* accepted here: none, int8"):
            quantize_linear_layers(model, "fp8")
