"""GGUF files converted here from the tiny random Llama (as llama.cpp's converter writes them) load
into the same model: greedy tokens equal `transformers` on the original checkpoint with untied
embeddings (output.weight), GQA q/k un-permuted and Llama 3 rope scaling given as `rope_freqs`;
quantized tensors dequantize to the serving dtype; the tokenizer from metadata equals tokenizer.json;
and `--model` resolves a .gguf file or a directory holding one."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest
import torch
from engine_reference import generate_greedy, make_engine, make_prompts, reference_greedy
from gguf_writer import gguf_from_hf_llama, llama_cpp_permute
from safetensors.torch import load_file

from berth_runtime.models.checkpoint import gguf_file_for, open_checkpoint
from berth_runtime.models.gguf_weights import undo_rotary_permutation
from berth_runtime.models.model_config import load_model_config
from berth_runtime.models.rope import RopeScaling, inverse_frequencies
from berth_runtime.tokenizer import Tokenizer

Q = gguf.GGMLQuantizationType


@pytest.fixture(scope="module")
def tiny_gguf(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gguf_from_hf_llama(tiny_llama_dir, tmp_path_factory.mktemp("tiny-gguf") / "tiny-llama.F32.gguf")


def test_undo_rotary_permutation_inverts_llama_cpp_permutation() -> None:
    weight = torch.randn(4 * 8, 5)  # 4 heads of head_dim 8
    permuted = torch.from_numpy(llama_cpp_permute(weight.numpy(), 4))
    assert not torch.equal(permuted, weight)
    torch.testing.assert_close(undo_rotary_permutation(permuted, 4), weight, atol=0, rtol=0)
    bias = torch.randn(2 * 8)
    torch.testing.assert_close(
        undo_rotary_permutation(torch.from_numpy(llama_cpp_permute(bias.numpy(), 2)), 2), bias, atol=0, rtol=0
    )


def test_gguf_config_equals_the_checkpoint_config(tiny_gguf: Path, tiny_llama_dir: Path) -> None:
    ours, original = open_checkpoint(tiny_gguf).config, load_model_config(tiny_llama_dir)
    for field in (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_layers",
        "num_heads",
        "num_kv_heads",
    ):
        assert getattr(ours, field) == getattr(original, field), field
    assert (ours.head_dim, ours.max_position_embeddings) == (
        original.head_dim,
        original.max_position_embeddings,
    )
    assert ours.rms_norm_eps == pytest.approx(original.rms_norm_eps)
    assert not ours.tie_word_embeddings  # output.weight is in the file
    # Llama 3 scaling arrives as rope_freqs divisors: the same frequencies as the parameters give.
    assert ours.rope.frequency_factors is not None
    torch.testing.assert_close(
        inverse_frequencies(ours.head_dim, ours.rope, ours.max_position_embeddings),
        inverse_frequencies(original.head_dim, original.rope, original.max_position_embeddings),
        atol=1e-7,
        rtol=1e-6,
    )
    assert inverse_frequencies(8, RopeScaling(frequency_factors=(1.0, 2.0, 4.0, 8.0)), 64)[
        3
    ] == pytest.approx(1.0 / (10000.0 ** (6 / 8)) / 8.0)


def test_gguf_engine_greedy_equals_transformers_on_the_original(
    tiny_gguf: Path, tiny_llama_dir: Path
) -> None:
    prompts = make_prompts(4, vocab_size=open_checkpoint(tiny_gguf).config.vocab_size)
    expected = reference_greedy(tiny_llama_dir, prompts, max_new_tokens=8)
    assert generate_greedy(make_engine(tiny_gguf), prompts, max_tokens=8) == expected


def test_gguf_tokenizer_equals_tokenizer_json(tiny_gguf: Path, tiny_llama_dir: Path) -> None:
    ours, original = open_checkpoint(tiny_gguf).tokenizer, Tokenizer(tiny_llama_dir)
    for text in ["The quick brown fox", "Héllo wörld — 東京 🚀 12345", "<|im_start|>user\nhi<|im_end|>"]:
        assert ours.encode(text) == original.encode(text)  # BOS from tokenizer.ggml.add_bos_token
        assert ours.encode(text, add_special_tokens=False) == original.encode(text, add_special_tokens=False)
    messages = [{"role": "user", "content": "hi"}]
    assert ours.apply_chat_template(messages) == original.apply_chat_template(messages)
    assert set(ours.eos_token_ids) == set(original.eos_token_ids)  # </s> and <|im_end|> (eot)


@pytest.mark.parametrize(
    ("pre", "pieces"),
    [
        ("gpt-2", [" 12345", " apples"]),  # GPT-2's split: a space joins the number
        ("smollm", [" ", "1", "2", "3", "4", "5", " apples"]),  # digits split one by one first
        ("llama-bpe", [" ", "123", "45", " apples"]),  # numbers in groups of up to three
        ("qwen2", [" ", "1", "2", "3", "4", "5", " apples"]),
    ],
)
def test_gguf_pre_tokenizer_splits_as_llama_cpp_does(
    tiny_llama_dir: Path, tmp_path: Path, pre: str, pieces: list[str]
) -> None:
    """The tiny vocabulary merges digits ("12", "34"), so each split shows in the ids: the text
    encodes as its pieces encoded one by one with the original tokenizer.json."""
    ours = open_checkpoint(gguf_from_hf_llama(tiny_llama_dir, tmp_path / f"{pre}.gguf", pre=pre)).tokenizer
    original = Tokenizer(tiny_llama_dir)
    expected = [token for piece in pieces for token in original.encode(piece, add_special_tokens=False)]
    assert ours.encode("".join(pieces), add_special_tokens=False) == expected


@pytest.mark.parametrize(
    ("tensor_type", "tolerance"),
    [
        pytest.param(kind, tolerance, id=kind.name)
        for kind, tolerance in [(Q.F16, 1e-3), (Q.BF16, 1e-2), (Q.Q8_0, 2e-2), (Q.Q4_0, 0.25)]
    ],
)
def test_gguf_quantized_tensors_dequantize_to_the_serving_dtype(
    tiny_llama_dir: Path, tmp_path: Path, tensor_type: Q, tolerance: float
) -> None:
    path = gguf_from_hf_llama(tiny_llama_dir, tmp_path / f"tiny.{tensor_type.name}.gguf", tensor_type)
    checkpoint = open_checkpoint(path)
    model = checkpoint.load_model(torch.float32, torch.device("cpu"), max_positions=64)
    original = load_file(str(tiny_llama_dir / "model.safetensors"))
    kv_rows = model.config.num_kv_heads * model.config.head_dim
    pairs = [  # the key rows check the un-permutation: each row back where the original has it
        (model.layers[1].qkv_proj.weight[-2 * kv_rows : -kv_rows], "model.layers.1.self_attn.k_proj.weight"),
        (model.layers[0].down_proj.weight, "model.layers.0.mlp.down_proj.weight"),
        (model.lm_head, "lm_head.weight"),
    ]
    for ours, name in pairs:
        reference = original[name]
        torch.testing.assert_close(ours, reference, atol=tolerance * reference.abs().max().item(), rtol=0)
    # In another serving dtype the same values, cast once: memory is that of the dtype.
    half = checkpoint.load_model(torch.bfloat16, torch.device("cpu"), max_positions=64)
    assert all(p.dtype == torch.bfloat16 for p in half.parameters())
    torch.testing.assert_close(half.layers[0].down_proj.weight, model.layers[0].down_proj.weight.bfloat16())


def test_model_path_resolution(tiny_gguf: Path, tiny_llama_dir: Path, tmp_path: Path) -> None:
    assert gguf_file_for(tiny_gguf) == tiny_gguf
    assert gguf_file_for(tiny_gguf.parent) == tiny_gguf  # a directory with one .gguf, no safetensors
    assert gguf_file_for(tiny_llama_dir) is None  # a Hugging Face layout directory
    assert open_checkpoint(tiny_llama_dir).format == "huggingface"
    assert gguf_file_for(tmp_path) is None  # empty: the Hugging Face loader names what is missing
