"""Resolves `--model` to a checkpoint format and gives the engine builder one interface to both.

`--model` names a Hugging Face layout directory (config.json, safetensors, tokenizer.json), a GGUF
file, or a directory holding exactly one GGUF file and no safetensors. The format decides where the
config, the tokenizer and the weights come from; everything after this point (engine, KV cache,
server) is the same for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from berth_runtime.models.gguf_reader import GGUF_SUFFIX, GGUFModelFile, is_gguf_file
from berth_runtime.models.gguf_tokenizer import load_gguf_tokenizer
from berth_runtime.models.gguf_weights import load_gguf_weights
from berth_runtime.models.interface import CausalLM
from berth_runtime.models.loader import build_model, load_model
from berth_runtime.models.model_config import ModelConfig, ModelDirectoryError, load_model_config
from berth_runtime.parallel.group import TensorShard
from berth_runtime.tokenizer import Tokenizer


def gguf_file_for(model: Path) -> Path | None:
    """The GGUF file `--model` names (a .gguf file, or a directory's only .gguf when it has no
    safetensors); None for anything else, which loads as a Hugging Face layout directory."""
    if model.is_file():
        if not is_gguf_file(model):
            raise ModelDirectoryError(
                f"--model {model} is a file but not a GGUF file (no GGUF magic bytes); accepted: a GGUF "
                "file, or a Hugging Face layout directory (config.json, safetensors, tokenizer.json)"
            )
        return model
    if not model.exists() and model.suffix == GGUF_SUFFIX:
        raise ModelDirectoryError(f"--model {model}: the GGUF file does not exist")
    if not model.is_dir() or any(model.glob("*.safetensors")):
        return None
    candidates = sorted(path for path in model.glob(f"*{GGUF_SUFFIX}") if path.is_file())
    if len(candidates) > 1:
        raise ModelDirectoryError(
            f"{model} holds {len(candidates)} GGUF files ({', '.join(p.name for p in candidates)}); "
            "accepted: exactly one, or pass the file itself as --model"
        )
    return candidates[0] if candidates else None


@dataclass(frozen=True)
class Checkpoint:
    """One model's config and tokenizer, read at open; its weights, loaded by `load_model`."""

    path: Path
    format: str
    """"gguf" or "huggingface"."""
    config: ModelConfig
    tokenizer: Tokenizer
    gguf_file: GGUFModelFile | None

    def load_model(
        self,
        dtype: torch.dtype,
        device: torch.device,
        max_positions: int,
        shard: TensorShard | None = None,
    ) -> CausalLM:
        """The model on `device` in `dtype` with every weight loaded (GGUF tensors dequantized); with
        a `shard` (Hugging Face layout only: `registry.check_tensor_parallel_support`), this rank's
        slices."""
        gguf_file = self.gguf_file
        if gguf_file is None:
            return load_model(self.path, dtype, device, max_positions, shard)
        return build_model(
            self.config, dtype, device, max_positions, lambda model: load_gguf_weights(model, gguf_file)
        )


def open_checkpoint(model: Path) -> Checkpoint:
    """Reads the config and tokenizer of `--model`; a format or setting the runtime cannot serve
    raises `ModelDirectoryError` (a ValueError) naming the file, the key and what is accepted."""
    gguf_path = gguf_file_for(model)
    if gguf_path is None:
        return Checkpoint(model, "huggingface", load_model_config(model), Tokenizer(model), None)
    gguf_file = GGUFModelFile(gguf_path)
    return Checkpoint(gguf_path, "gguf", gguf_file.config, load_gguf_tokenizer(gguf_file), gguf_file)
