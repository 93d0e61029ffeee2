"""The tokenizer: chat templates rendered like Hugging Face, incremental detokenization that never
splits a character, and clear errors for templates that are missing or refuse the messages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from transformers import PreTrainedTokenizerFast

from berth_runtime.tokenizer import ChatTemplateError, IncrementalDetokenizer, Tokenizer

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Héllo 🚀"},
]


def test_tokenizer_chat_template_renders_like_transformers(tiny_llama_dir: Path) -> None:
    ours = Tokenizer(tiny_llama_dir)
    reference = PreTrainedTokenizerFast.from_pretrained(tiny_llama_dir)
    for add_generation_prompt in (True, False):
        expected = reference.apply_chat_template(
            MESSAGES, tokenize=False, add_generation_prompt=add_generation_prompt
        )
        assert ours.apply_chat_template(MESSAGES, add_generation_prompt=add_generation_prompt) == expected
    rendered = ours.apply_chat_template(MESSAGES)
    assert rendered.startswith("<s><|im_start|>system\nYou are terse.<|im_end|>\n")
    assert rendered.endswith("<|im_start|>assistant\n")


def test_tokenizer_encode_matches_transformers(tiny_llama_dir: Path) -> None:
    ours = Tokenizer(tiny_llama_dir)
    reference = PreTrainedTokenizerFast.from_pretrained(tiny_llama_dir)
    text = "Continuous batching, naïve café 東京 🚀"
    assert ours.encode(text) == reference.encode(text)
    assert ours.encode(text)[0] == ours.encode("<s>", add_special_tokens=False)[0]  # BOS added
    assert ours.encode(text, add_special_tokens=False) == reference.encode(text, add_special_tokens=False)
    assert ours.decode(ours.encode(text)) == text


def test_tokenizer_incremental_detokenization_never_splits_characters(tiny_llama_dir: Path) -> None:
    tokenizer = Tokenizer(tiny_llama_dir)
    prompt = tokenizer.encode("Say:")
    text = " 東京 🚀 naïve café, the fox"
    generated = tokenizer.encode(text, add_special_tokens=False)
    assert len(generated) > len(text.split())  # multi-byte characters span several tokens
    detokenizer = IncrementalDetokenizer(tokenizer, prompt)
    pieces = [detokenizer.step(prompt + generated[: index + 1]) for index in range(len(generated))]
    assert "".join(pieces) == text
    assert all("\ufffd" not in piece for piece in pieces)


def test_tokenizer_template_from_chat_template_jinja(tmp_path: Path, tiny_llama_dir: Path) -> None:
    model_dir = Path(shutil.copytree(tiny_llama_dir, tmp_path / "model"))
    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    del config["chat_template"]
    (model_dir / "tokenizer_config.json").write_text(json.dumps(config))
    (model_dir / "chat_template.jinja").write_text("{% for m in messages %}[{{ m['content'] }}]{% endfor %}")
    assert Tokenizer(model_dir).apply_chat_template(MESSAGES) == "[You are terse.][Héllo 🚀]"
    (model_dir / "chat_template.jinja").unlink()
    with pytest.raises(ChatTemplateError, match="no chat template"):
        Tokenizer(model_dir).apply_chat_template(MESSAGES)


def test_tokenizer_template_raise_exception_is_a_clear_error(tmp_path: Path, tiny_llama_dir: Path) -> None:
    model_dir = Path(shutil.copytree(tiny_llama_dir, tmp_path / "model"))
    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    config["chat_template"] = (
        "{% if messages[0]['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
    )
    (model_dir / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ChatTemplateError, match="System role not supported"):
        Tokenizer(model_dir).apply_chat_template(MESSAGES)
    assert isinstance(ChatTemplateError("x"), ValueError)


def test_tokenizer_special_tokens_in_object_form(tmp_path: Path, tiny_llama_dir: Path) -> None:
    """Older tokenizer_config.json files spell special tokens as {"content": ...} objects."""
    model_dir = Path(shutil.copytree(tiny_llama_dir, tmp_path / "model"))
    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    config["bos_token"] = {"__type": "AddedToken", "content": "<|im_start|>"}
    config["eos_token"] = {"__type": "AddedToken", "content": "<|im_end|>"}
    (model_dir / "tokenizer_config.json").write_text(json.dumps(config))
    (model_dir / "generation_config.json").unlink()
    (model_dir / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    tokenizer = Tokenizer(model_dir)
    assert tokenizer.eos_token_ids == tuple(tokenizer.encode("<|im_end|>", add_special_tokens=False))
    assert tokenizer.apply_chat_template([]).startswith("<|im_start|>")


def test_tokenizer_template_tojson_keeps_unicode_like_transformers(
    tmp_path: Path, tiny_llama_dir: Path
) -> None:
    model_dir = Path(shutil.copytree(tiny_llama_dir, tmp_path / "model"))
    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    config["chat_template"] = "{{ messages | tojson }}|{{ messages[1] | tojson(indent=2, sort_keys=true) }}"
    (model_dir / "tokenizer_config.json").write_text(json.dumps(config))
    expected = PreTrainedTokenizerFast.from_pretrained(model_dir).apply_chat_template(
        MESSAGES, tokenize=False
    )
    assert Tokenizer(model_dir).apply_chat_template(MESSAGES) == expected
    assert "Héllo 🚀" in expected
