"""The loadable-model check that ends every fetch, on a real (tiny, sharded) model and broken copies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from berth_runtime.fetch import FetchError
from berth_runtime.fetch.verify import verify_model_dir


@pytest.fixture
def model_copy(tiny_qwen2_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_qwen2_dir, tmp_path / "model"))


def _shards(directory: Path) -> list[Path]:
    index = json.loads((directory / "model.safetensors.index.json").read_text())
    return [directory / name for name in sorted(set(index["weight_map"].values()))]


def test_a_complete_sharded_model_passes_and_lists_its_shards(model_copy: Path) -> None:
    weights = verify_model_dir(model_copy)
    assert weights == _shards(model_copy)
    assert len(weights) >= 2


def test_missing_config(model_copy: Path) -> None:
    (model_copy / "config.json").unlink()
    with pytest.raises(FetchError, match=r"has no config\.json"):
        verify_model_dir(model_copy)


def test_config_that_is_not_json(model_copy: Path) -> None:
    (model_copy / "config.json").write_text("{not json")
    with pytest.raises(FetchError, match=r"config.json is not valid JSON"):
        verify_model_dir(model_copy)


def test_missing_shard_is_named(model_copy: Path) -> None:
    missing = _shards(model_copy)[-1]
    missing.unlink()
    with pytest.raises(FetchError, match=f"lacks shard.*{missing.name}"):
        verify_model_dir(model_copy)


def test_truncated_shard_is_detected(model_copy: Path) -> None:
    shard = _shards(model_copy)[0]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 100])
    with pytest.raises(FetchError, match="is truncated"):
        verify_model_dir(model_copy)


def test_missing_tokenizer(model_copy: Path) -> None:
    (model_copy / "tokenizer.json").unlink()
    with pytest.raises(FetchError, match=r"no tokenizer\.json"):
        verify_model_dir(model_copy)


def test_no_weights_at_all(model_copy: Path) -> None:
    for shard in _shards(model_copy):
        shard.unlink()
    (model_copy / "model.safetensors.index.json").unlink()
    with pytest.raises(FetchError, match=r"no \*.safetensors weights"):
        verify_model_dir(model_copy)
