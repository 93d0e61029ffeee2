"""Which files of a model repository the runtime needs, and the snapshot type every backend returns.

Model repositories often carry far more than a serving runtime reads: PyTorch pickles beside the
safetensors, GGUF quantizations, `original/` checkpoints. Fetching only the top-level safetensors,
JSON configs and tokenizer files keeps init containers short and emptyDir volumes small.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

NEEDED_FILE_PATTERNS = ("*.json", "*.safetensors", "*.jinja", "*.model", "*.tiktoken", "*.txt")


@dataclass(frozen=True)
class RemoteFile:
    """One file of a snapshot: its path relative to the model directory, size and content identity.

    `identity` (an ETag, a blob id, a size and mtime) changes whenever the content does; a partial
    download is only resumed when its identity is unchanged.
    """

    path: str
    size: int
    identity: str


@dataclass(frozen=True)
class Snapshot:
    """The files of a source at one resolved revision (a commit, or a fingerprint of an S3 listing)."""

    resolved_revision: str
    files: tuple[RemoteFile, ...]


def is_needed(relative_path: str) -> bool:
    """Top-level files matching `NEEDED_FILE_PATTERNS`; nothing from sub-folders."""
    if "/" in relative_path or relative_path.startswith("."):
        return False
    return any(fnmatch.fnmatchcase(relative_path, pattern) for pattern in NEEDED_FILE_PATTERNS)
