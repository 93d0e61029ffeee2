"""The GGUF model and its `transformers` reference, session-scoped: loaded by the test modules as a
pytest plugin (`pytest_plugins = ["gguf_fixtures"]`), so one test run reads the reference model and
opens the file once for every GGUF test module."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth_runtime.models.checkpoint import Checkpoint, open_checkpoint
from tests.smollm2_reference import Reference, load_reference, smollm2_gguf_file


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    return smollm2_gguf_file()


@pytest.fixture(scope="session")
def smollm2_reference(smollm2_gguf: Path) -> Reference:
    return load_reference(smollm2_gguf)


@pytest.fixture(scope="session")
def smollm2_checkpoint(smollm2_gguf: Path) -> Checkpoint:
    """berth's reading of the file: config and tokenizer (the weights load on demand)."""
    return open_checkpoint(smollm2_gguf)
