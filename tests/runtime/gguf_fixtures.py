"""The GGUF model and its `transformers` reference, session-scoped: loaded by the test modules as a
pytest plugin (`pytest_plugins = ["gguf_fixtures"]`), so one test run reads the reference model and
opens the file once for every GGUF test module."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from gguf_reference import Reference, smollm2_gguf_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from berth_runtime.models.checkpoint import Checkpoint, open_checkpoint


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    return smollm2_gguf_file()


@pytest.fixture(scope="session")
def smollm2_reference(smollm2_gguf: Path) -> Reference:
    directory, name = str(smollm2_gguf.parent), smollm2_gguf.name
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32).eval()
    return Reference(tokenizer, model)


@pytest.fixture(scope="session")
def smollm2_checkpoint(smollm2_gguf: Path) -> Checkpoint:
    """berth's reading of the file: config and tokenizer (the weights load on demand)."""
    return open_checkpoint(smollm2_gguf)
