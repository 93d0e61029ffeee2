"""The check that a fetched directory is a model the runtime can load.

A fetch that "succeeds" with a directory the server then cannot load turns an init container's
clear failure into a crash loop of the main container. This check reads only file headers: it
proves config.json parses, every safetensors file (every shard the index names) is present and as
long as its header says, and tokenizer.json is there.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from berth_runtime.fetch.errors import FetchError

SAFETENSORS_INDEX = "model.safetensors.index.json"
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024


def verify_model_dir(directory: Path) -> list[Path]:
    """Raise FetchError naming what is missing or broken; return the weight files on success."""
    if not directory.is_dir():
        raise FetchError(f"{directory} is not a directory")
    _verify_config(directory / "config.json")
    weights = _weight_files(directory)
    for weight_file in weights:
        _verify_safetensors(weight_file)
    if not (directory / "tokenizer.json").is_file():
        raise FetchError(
            f"{directory} has no tokenizer.json; the runtime loads tokenizers from tokenizer.json"
        )
    return weights


def _verify_config(path: Path) -> None:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FetchError(
            f"{path.parent} has no config.json; is this a Hugging Face model directory?"
        ) from None
    except (OSError, ValueError) as error:
        raise FetchError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(config, dict) or not (config.get("architectures") or config.get("model_type")):
        raise FetchError(f"{path} names neither 'architectures' nor 'model_type'")


def _weight_files(directory: Path) -> list[Path]:
    index_path = directory / SAFETENSORS_INDEX
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
            shard_names = sorted(set(weight_map.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise FetchError(
                f"{index_path} is not a safetensors index (no usable 'weight_map'): {error}"
            ) from None
        missing = [name for name in shard_names if not (directory / name).is_file()]
        if missing:
            raise FetchError(f"{directory} lacks shard(s) named by {SAFETENSORS_INDEX}: {', '.join(missing)}")
        return [directory / name for name in shard_names]
    weights = sorted(directory.glob("*.safetensors"))
    if not weights:
        raise FetchError(
            f"{directory} has no *.safetensors weights (pickled .bin checkpoints are not loaded)"
        )
    return weights


def _verify_safetensors(path: Path) -> None:
    """The header parses and the file holds every byte the header's offsets point at."""
    file_size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise FetchError(f"{path} is truncated ({file_size} bytes): not a safetensors file")
        (header_length,) = struct.unpack("<Q", prefix)
        if header_length > min(_MAX_SAFETENSORS_HEADER, file_size - 8):
            raise FetchError(
                f"{path} has a header length of {header_length} bytes in a {file_size}-byte file"
            )
        try:
            header = json.loads(handle.read(header_length))
        except ValueError as error:
            raise FetchError(f"{path} has an unreadable safetensors header: {error}") from None
    if not isinstance(header, dict):
        raise FetchError(f"{path} has a safetensors header that is not a JSON object")
    data_end = 0
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        try:
            data_end = max(data_end, int(tensor["data_offsets"][1]))
        except (KeyError, IndexError, TypeError, ValueError):
            raise FetchError(f"{path}: tensor {name!r} has no valid data_offsets") from None
    expected_size = 8 + header_length + data_end
    if file_size < expected_size:
        raise FetchError(f"{path} is truncated: {file_size} bytes, its header needs {expected_size}")
