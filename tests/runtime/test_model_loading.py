"""Loading model directories: every supported variant matches `transformers`, and every malformed
or unsupported directory fails at start with a message naming the file and the problem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import write_tiny_model
from engine_reference import engine_config, make_engine
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
)

from berth_runtime.engine.builder import build_engine
from berth_runtime.engine.scheduler import ScheduledRow
from berth_runtime.engine.sequence import Sequence
from berth_runtime.models.model_config import ModelDirectoryError, load_model_config
from berth_runtime.sampling_params import SamplingParams
from berth_runtime.tokenizer import Tokenizer

PROMPT = [0, 40, 41, 200, 7, 99, 150, 3, 4, 5, 250, 251, 60, 61, 62, 63, 64, 100, 101, 102]


def last_logits_match(model_dir: Path) -> None:
    engine = make_engine(model_dir)
    seq = Sequence("s", list(PROMPT), SamplingParams(), arrival=0)
    assert engine.block_manager.allocate(seq, len(PROMPT))
    ours = engine.runner.run([ScheduledRow(seq, len(PROMPT))]).logits[0]
    reference = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        expected = reference(torch.tensor([PROMPT])).logits[0, -1]
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("config_class", "model_class", "overrides"),
    [
        (MistralConfig, MistralForCausalLM, {"sliding_window": 256}),
        (LlamaConfig, LlamaForCausalLM, {"rope_scaling": {"rope_type": "linear", "factor": 2.0}}),
        (LlamaConfig, LlamaForCausalLM, {"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}),
        (LlamaConfig, LlamaForCausalLM, {"tie_word_embeddings": True, "num_key_value_heads": 4}),
        (LlamaConfig, LlamaForCausalLM, {"attention_bias": True, "mlp_bias": True, "rope_theta": 500000.0}),
    ],
    ids=[
        "mistral-sliding-window",
        "llama-linear-rope",
        "llama-dynamic-rope",
        "llama-tied-mha",
        "llama-biases",
    ],
)
def test_model_variants_match_transformers(
    tmp_path: Path, config_class: Any, model_class: Any, overrides: dict[str, Any]
) -> None:
    last_logits_match(write_tiny_model(tmp_path / "model", config_class, model_class, **overrides))


def test_model_sliding_window_caps_the_context(tmp_path: Path) -> None:
    model_dir = write_tiny_model(tmp_path / "m", MistralConfig, MistralForCausalLM, sliding_window=256)
    assert load_model_config(model_dir).max_context_len == 256


def test_model_legacy_config_keys_are_read(tmp_path: Path, tiny_llama_dir: Path) -> None:
    """Configs written before transformers 5 use rope_theta + rope_scaling with "type"."""
    config = json.loads((tiny_llama_dir / "config.json").read_text())
    del config["rope_parameters"]
    config["rope_theta"] = 20000.0
    config["rope_scaling"] = {"type": "linear", "factor": 3.0}
    (tmp_path / "config.json").write_text(json.dumps(config))
    rope = load_model_config(tmp_path).rope
    assert (rope.rope_type, rope.theta, rope.factor) == ("linear", 20000.0, 3.0)


def copy_model(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination)
    return destination


def edit_config(model_dir: Path, **changes: Any) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    config.update(changes)
    (model_dir / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: edit_config(d, architectures=["GPT2LMHeadModel"]), "'GPT2LMHeadModel' is not supported"),
        (lambda d: edit_config(d, hidden_act="gelu"), "hidden_act 'gelu'"),
        (lambda d: edit_config(d, rope_parameters={"rope_type": "proportional"}), "rope type 'proportional'"),
        (lambda d: edit_config(d, num_key_value_heads=3), "not a multiple"),
        (lambda d: edit_config(d, hidden_size=-1), "'hidden_size'"),
        (lambda d: (d / "config.json").unlink(), "config.json is missing"),
        (lambda d: (d / "config.json").write_text("{not json"), "not valid JSON"),
        (lambda d: (d / "model.safetensors").unlink(), "holds no safetensors weights"),
        (lambda d: edit_config(d, intermediate_size=96), "has shape"),
        (lambda d: edit_config(d, num_hidden_layers=3), "lacks weights for: layers.2"),
        (lambda d: edit_config(d, num_hidden_layers=1), "unexpected tensor 'model.layers.1"),
        (lambda d: (d / "tokenizer.json").unlink(), "tokenizer.json is missing"),
    ],
)
def test_model_bad_directories_fail_clearly(
    tmp_path: Path, tiny_llama_dir: Path, change: Any, message: str
) -> None:
    model_dir = copy_model(tiny_llama_dir, tmp_path / "model")
    change(model_dir)
    with pytest.raises(ModelDirectoryError, match=message):
        make_engine(model_dir)


def test_model_missing_shard_named_by_the_index(tmp_path: Path, tiny_qwen2_dir: Path) -> None:
    model_dir = copy_model(tiny_qwen2_dir, tmp_path / "model")
    shard = sorted(model_dir.glob("model-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(ModelDirectoryError, match=shard.name):
        make_engine(model_dir)


def test_model_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelDirectoryError, match="does not exist"):
        make_engine(tmp_path / "absent")


def test_model_max_model_len_beyond_the_model_is_refused(tiny_llama_dir: Path) -> None:
    with pytest.raises(ValueError, match="max_model_len=100000 exceeds"):
        make_engine(tiny_llama_dir, max_model_len=100000)


def test_model_kv_cache_too_small_for_one_sequence_is_refused(tiny_llama_dir: Path) -> None:
    with pytest.raises(ValueError, match="needs 16"):
        make_engine(tiny_llama_dir, max_model_len=64, kv_cache_blocks=10)


def test_model_tokenizer_eos_ids_come_from_every_source(tiny_llama_dir: Path) -> None:
    tokenizer = Tokenizer(tiny_llama_dir)
    end, chat_end = tokenizer.encode("</s><|im_end|>", add_special_tokens=False)
    assert set(tokenizer.eos_token_ids) == {end, chat_end}


def test_model_cpu_kv_cache_defaults_to_a_full_batch_of_full_contexts(tiny_llama_dir: Path) -> None:
    built = build_engine(engine_config(tiny_llama_dir, max_num_seqs=3, max_model_len=64))
    assert built.num_kv_blocks == 3 * 64 // 4
    assert built.max_model_len == 64
    assert (
        build_engine(engine_config(tiny_llama_dir, kv_cache_blocks=40, max_model_len=64)).num_kv_blocks == 40
    )
