"""End to end on CUDA: berth's engine generates exactly the greedy tokens transformers' generate()
produces for the same checkpoint, with several prompts of different lengths batched together."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
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


@pytest.mark.parametrize("layers", ["reference", "kernels"])
def test_engine_matches_transformers_greedy_in_float32(
    tiny_llama_checkpoint: Path,
    engine_factory: Callable[..., object],
    greedy_tokens: Callable[..., list[list[int]]],
    layers: str,
) -> None:
    """With the torch reference layers, and on the Triton kernel ops (what `load_model` picks on CUDA)."""
    prompts = _prompts()
    expected = _transformers_greedy(tiny_llama_checkpoint, torch.float32, prompts)
    model = load_model(tiny_llama_checkpoint, torch.float32, torch.device("cuda"), max_positions=1024)
    assert model.use_kernel_ops  # the kernels are what the engine runs on CUDA
    model.use_kernel_ops = layers == "kernels"
    actual = greedy_tokens(engine_factory(model, torch.float32), prompts, NEW_TOKENS)
    assert all(len(tokens) == NEW_TOKENS for tokens in actual)
    assert actual == expected


@pytest.mark.parametrize("layers", ["reference", "kernels"])
def test_engine_follows_transformers_greedy_in_bfloat16(
    tiny_llama_checkpoint: Path,
    engine_factory: Callable[..., object],
    layers: str,
) -> None:
    """In bf16 a near-tie may legitimately flip once sums run in another order (fused GEMMs, another
    attention kernel), after which the sequences part. So, as vLLM's logprob check does: the tokens
    agree up to the first difference, and there each side's token is in the other's top 5."""
    prompts = _prompts()
    expected, expected_top = _transformers_greedy_with_top(tiny_llama_checkpoint, prompts)
    model = load_model(tiny_llama_checkpoint, torch.bfloat16, torch.device("cuda"), max_positions=1024)
    assert model.use_kernel_ops  # the kernels are what the engine runs on CUDA
    model.use_kernel_ops = layers == "kernels"
    actual, actual_top = _berth_greedy_with_top(engine_factory(model, torch.bfloat16), prompts)
    for ours, ours_top, theirs, theirs_top in zip(actual, actual_top, expected, expected_top, strict=True):
        first_difference = next(
            (i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b), None
        )
        if first_difference is not None:
            assert ours[first_difference] in theirs_top[first_difference]
            assert theirs[first_difference] in ours_top[first_difference]
    assert any(ours == theirs for ours, theirs in zip(actual, expected, strict=True))


def _transformers_greedy_with_top(
    checkpoint: Path, prompts: list[list[int]]
) -> tuple[list[list[int]], list[list[set[int]]]]:
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(checkpoint, dtype=torch.bfloat16).to("cuda").eval()
    tokens, tops = [], []
    for prompt in prompts:
        ids = torch.tensor([prompt], device="cuda")
        generated = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
        )
        tokens.append(generated.sequences[0, len(prompt) :].tolist())
        tops.append([set(step[0].topk(5).indices.tolist()) for step in generated.logits])
    return tokens, tops


def _berth_greedy_with_top(
    engine: object, prompts: list[list[int]]
) -> tuple[list[list[int]], list[list[set[int]]]]:
    params = SamplingParams(max_tokens=NEW_TOKENS, temperature=0.0, ignore_eos=True, logprobs=5)
    for index, prompt in enumerate(prompts):
        engine.add_request(str(index), prompt, params)  # type: ignore[attr-defined]
    tokens: dict[str, list[int]] = {str(index): [] for index in range(len(prompts))}
    tops: dict[str, list[set[int]]] = {str(index): [] for index in range(len(prompts))}
    while engine.has_unfinished_requests():  # type: ignore[attr-defined]
        for output in engine.step():  # type: ignore[attr-defined]
            tokens[output.request_id] += output.new_token_ids
            tops[output.request_id] += [set(entry.top) for entry in output.logprobs or []]
    keys = [str(index) for index in range(len(prompts))]
    return [tokens[key] for key in keys], [tops[key] for key in keys]


def test_int8_engine_matches_transformers_with_the_same_int8_layers(
    tiny_llama_checkpoint: Path,
    engine_factory: Callable[..., object],
    greedy_tokens: Callable[..., list[list[int]]],
) -> None:
    """Weight-only int8 end to end: berth's engine and transformers, both with their decoder linears
    swapped for ``WeightOnlyLinear`` (the Triton kernel on CUDA), generate the same greedy tokens."""
    prompts = _prompts()
    expected = _transformers_greedy(tiny_llama_checkpoint, torch.float32, prompts, quantization="int8")
    model = load_model(tiny_llama_checkpoint, torch.float32, torch.device("cuda"), max_positions=1024)
    assert quantize_linear_layers(model, "int8") == 3 * 4  # fused qkv, o, fused gate_up, down per layer
    actual = greedy_tokens(engine_factory(model, torch.float32), prompts, NEW_TOKENS)
    assert actual == expected
