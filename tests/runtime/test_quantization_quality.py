"""Quality of weight-only quantization against full precision on a tiny Llama (transformers' own
implementation, random weights at its default init), on a fixed prompt set.

Thresholds (every position of 8 prompts x 24 tokens):
- int8: logit cosine similarity mean >= 0.9995 and min >= 0.999; top-1 agreement >= 90%.
- fp8 (e4m3): cosine mean >= 0.995 and min >= 0.99; top-1 agreement >= 85%.
A random model's logits are far flatter than a trained model's, so top-1 flips more easily here
than on real checkpoints; the thresholds sit a little under the measured values (int8: 0.99985 /
0.99964 / 94.8%; fp8: 0.9982 / 0.9973 / 92.7%) so a real regression, not noise, fails them.
"""

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


@pytest.fixture(scope="module")
def reference() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
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
    model = LlamaForCausalLM(config).eval()
    prompts = torch.randint(0, 512, (8, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(prompts).logits.float()
    return model, prompts, logits


@pytest.mark.parametrize("method", ["int8", "fp8"])
def test_quantized_logits_track_full_precision(
    reference: tuple[nn.Module, torch.Tensor, torch.Tensor], method: str
) -> None:
    model, prompts, expected = reference
    quantized = copy.deepcopy(model)
    assert quantize_linear_layers(quantized, method) == 4 * 7 + 1  # q,k,v,o,gate,up,down per layer + head
    with torch.no_grad():
        actual = quantized(prompts).logits.float()
    cosine = nn.functional.cosine_similarity(actual.flatten(0, 1), expected.flatten(0, 1), dim=-1)
    top1 = (actual.argmax(-1) == expected.argmax(-1)).float().mean().item()
    limits = THRESHOLDS[method]
    assert cosine.mean().item() >= limits["cosine_mean"], f"{method}: mean cosine {cosine.mean():.5f}"
    assert cosine.min().item() >= limits["cosine_min"], f"{method}: min cosine {cosine.min():.5f}"
    assert top1 >= limits["top1"], f"{method}: top-1 agreement {top1:.3f}"


def test_int8_is_closer_to_full_precision_than_fp8(
    reference: tuple[nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    model, prompts, expected = reference
    errors = {}
    for method in ("int8", "fp8"):
        quantized = copy.deepcopy(model)
        quantize_linear_layers(quantized, method)
        with torch.no_grad():
            errors[method] = (quantized(prompts).logits.float() - expected).pow(2).mean().item()
    assert 0 < errors["int8"] < errors["fp8"]
