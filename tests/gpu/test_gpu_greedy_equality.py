"""End to end on CUDA: berth's engine generates exactly the greedy tokens transformers' generate()
produces for the same checkpoint, with several prompts of different lengths batched together."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from berth_runtime.models.loader import load_model
from berth_runtime.quantization import quantize_linear_layers
from berth_runtime.sampling_params import SamplingParams

NEW_TOKENS = 32


def _prompts() -> list[list[int]]:
    generator = torch.Generator().manual_seed(7)
    return [
        [1, *torch.randint(3, 1024, (length,), generator=generator).tolist()] for length in (5, 17, 64, 200)
    ]


def _transformers_greedy(
    checkpoint: Path, dtype: torch.dtype, prompts: list[list[int]], quantization: str = "none"
) -> list[list[int]]:
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(checkpoint, dtype=dtype).to("cuda").eval()
    # the decoder's linears only: berth keeps the output head in full precision
    quantize_linear_layers(model.model, quantization)
    outputs = []
    for prompt in prompts:  # one at a time: no padding, so nothing but the model decides
        ids = torch.tensor([prompt], device="cuda")
        generated = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            do_sample=False,
        )
        outputs.append(generated[0, len(prompt) :].tolist())
    return outputs


def _berth_greedy(engine: object, prompts: list[list[int]]) -> list[list[int]]:
    params = SamplingParams(max_tokens=NEW_TOKENS, temperature=0.0, ignore_eos=True)
    for index, prompt in enumerate(prompts):
        engine.add_request(str(index), prompt, params)  # type: ignore[attr-defined]
    tokens: dict[str, list[int]] = {str(index): [] for index in range(len(prompts))}
    while engine.has_unfinished_requests():  # type: ignore[attr-defined]
        for output in engine.step():  # type: ignore[attr-defined]
            tokens[output.request_id] += output.new_token_ids
    return [tokens[str(index)] for index in range(len(prompts))]


def test_engine_matches_transformers_greedy_in_float32(
    tiny_llama_checkpoint: Path, engine_factory: Callable[..., object]
) -> None:
    prompts = _prompts()
    expected = _transformers_greedy(tiny_llama_checkpoint, torch.float32, prompts)
    model = load_model(tiny_llama_checkpoint, torch.float32, torch.device("cuda"), max_positions=1024)
    actual = _berth_greedy(engine_factory(model, torch.float32), prompts)
    assert all(len(tokens) == NEW_TOKENS for tokens in actual)
    assert actual == expected


def test_engine_follows_transformers_greedy_in_bfloat16(
    tiny_llama_checkpoint: Path, engine_factory: Callable[..., object]
) -> None:
    """bf16 sums in another order in fused q/k/v and gate/up GEMMs than in separate ones, so a near-tie
    can legitimately flip after many tokens; every sequence must agree for its first 16 tokens."""
    prompts = _prompts()
    expected = _transformers_greedy(tiny_llama_checkpoint, torch.bfloat16, prompts)
    model = load_model(tiny_llama_checkpoint, torch.bfloat16, torch.device("cuda"), max_positions=1024)
    actual = _berth_greedy(engine_factory(model, torch.bfloat16), prompts)
    for ours, theirs in zip(actual, expected, strict=True):
        assert ours[:16] == theirs[:16]


def test_int8_engine_matches_transformers_with_the_same_int8_layers(
    tiny_llama_checkpoint: Path, engine_factory: Callable[..., object]
) -> None:
    """Weight-only int8 end to end: berth's engine and transformers, both with their decoder linears
    swapped for ``WeightOnlyLinear`` (the Triton kernel on CUDA), generate the same greedy tokens."""
    prompts = _prompts()
    expected = _transformers_greedy(tiny_llama_checkpoint, torch.float32, prompts, quantization="int8")
    model = load_model(tiny_llama_checkpoint, torch.float32, torch.device("cuda"), max_positions=1024)
    assert quantize_linear_layers(model, "int8") == 3 * 4  # fused qkv, o, fused gate_up, down per layer
    actual = _berth_greedy(engine_factory(model, torch.float32), prompts)
    assert actual == expected
