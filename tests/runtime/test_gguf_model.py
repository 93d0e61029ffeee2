"""A GGUF file served by the engine generates what `transformers` generates from the same file: the
SmolLM2-135M-Instruct Q4_1 GGUF, dequantized to float32 on the CPU, greedy on chat prompts. The
weights themselves are compared too, so a wrong un-permutation of q/k or a wrong tensor mapping is
named directly rather than only through diverging tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_reference import make_engine, run_to_completion

from berth_runtime.engine.llm_engine import LLMEngine
from berth_runtime.models.checkpoint import Checkpoint
from berth_runtime.sampling_params import SamplingParams
from tests.smollm2_reference import CHAT_PROMPTS, Reference

pytest_plugins = ["gguf_fixtures"]

NEW_TOKENS = 16


@pytest.fixture(scope="module")
def engine(smollm2_gguf: Path) -> LLMEngine:
    # The directory form of --model: the package directory holds one .gguf and no safetensors.
    return make_engine(smollm2_gguf.parent, max_model_len=512, block_size=16)


@pytest.mark.slow
def test_gguf_engine_greedy_matches_transformers(engine: LLMEngine, smollm2_reference: Reference) -> None:
    prompts = [smollm2_reference.chat_ids(content) for content in CHAT_PROMPTS]
    for index, prompt in enumerate(prompts):  # all at once, so the engine batches them
        engine.add_request(
            f"r{index}", prompt, SamplingParams(max_tokens=NEW_TOKENS, temperature=0.0, ignore_eos=True)
        )
    outputs = run_to_completion(engine)
    for index, prompt in enumerate(prompts):
        ours = [token for output in outputs[f"r{index}"] for token in output.new_token_ids]
        expected = smollm2_reference.greedy(prompt, NEW_TOKENS, stop_at_eos=False)
        assert ours == expected, (
            CHAT_PROMPTS[index],
            smollm2_reference.tokenizer.decode(ours),
            smollm2_reference.tokenizer.decode(expected),
        )


def test_gguf_weights_equal_transformers_dequantized_weights(
    engine: LLMEngine, smollm2_reference: Reference
) -> None:
    model = engine.runner.model
    reference = smollm2_reference.model.state_dict()
    config = model.config
    q_rows, kv_rows = config.num_heads * config.head_dim, config.num_kv_heads * config.head_dim
    for layer in (0, config.num_layers - 1):
        ours = model.layers[layer]
        prefix = f"model.layers.{layer}."
        query, key, value = ours.qkv_proj.weight.split([q_rows, kv_rows, kv_rows])
        torch.testing.assert_close(query, reference[prefix + "self_attn.q_proj.weight"], atol=0, rtol=0)
        torch.testing.assert_close(key, reference[prefix + "self_attn.k_proj.weight"], atol=0, rtol=0)
        torch.testing.assert_close(value, reference[prefix + "self_attn.v_proj.weight"], atol=0, rtol=0)
        gate, up = ours.gate_up_proj.weight.split(config.intermediate_size)
        torch.testing.assert_close(gate, reference[prefix + "mlp.gate_proj.weight"], atol=0, rtol=0)
        torch.testing.assert_close(up, reference[prefix + "mlp.up_proj.weight"], atol=0, rtol=0)
        torch.testing.assert_close(
            ours.down_proj.weight, reference[prefix + "mlp.down_proj.weight"], atol=0, rtol=0
        )
        torch.testing.assert_close(
            ours.post_attention_layernorm,
            reference[prefix + "post_attention_layernorm.weight"],
            atol=0,
            rtol=0,
        )
    torch.testing.assert_close(
        model.embed_tokens.weight, reference["model.embed_tokens.weight"], atol=0, rtol=0
    )
    torch.testing.assert_close(model.norm, reference["model.norm.weight"], atol=0, rtol=0)
    assert model.lm_head is None  # the file has no output.weight: tied embeddings


def test_gguf_config_from_metadata(smollm2_checkpoint: Checkpoint, smollm2_gguf: Path) -> None:
    config = smollm2_checkpoint.config
    assert (smollm2_checkpoint.format, smollm2_checkpoint.path) == ("gguf", smollm2_gguf)
    assert (config.architecture, config.vocab_size, config.hidden_size, config.intermediate_size) == (
        "LlamaForCausalLM",
        49152,
        576,
        1536,
    )
    assert (config.num_layers, config.num_heads, config.num_kv_heads, config.head_dim) == (30, 9, 3, 64)
    assert config.max_position_embeddings == 8192
    assert config.rope.theta == 100000.0 and config.rope.rope_type == "default"
    assert config.rms_norm_eps == pytest.approx(1e-5)
    assert config.tie_word_embeddings and not config.qkv_bias
    assert config.eos_token_ids == (2,)
