"""How long this replica took to start, by stage: what `berth:cold_start_seconds` exports.

A scale-up waits out a replica's whole start, so each stage is measured where it happens: the
download by the `fetch` init step, which leaves a small record beside the model it filled (the
destination the server later reads as `--model`, in the pod's writable model volume); loading the
weights (which on CUDA includes capturing the decode graphs) and the warm-up generations by the
server. The operator measures the same stages from the kubelet's timestamps for `status.coldStart`;
these figures split the server's part finer, for dashboards. No torch here: `fetch` imports it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

FETCH_RECORD_SUFFIX = ".fetch-seconds.json"

STAGE_DOWNLOAD = "download"
STAGE_LOAD = "load"
STAGE_WARMUP = "warmup"

logger = logging.getLogger(__name__)


def fetch_record_path(model: Path) -> Path:
    """The record beside `model` (a directory, a link to a shared cache entry, or a file)."""
    return model.with_name(model.name + FETCH_RECORD_SUFFIX)


def record_fetch_seconds(destination: Path, seconds: float) -> None:
    """Leave the fetch's duration beside `destination`, whole or not at all; a volume that refuses
    the write costs the metric, never the fetch."""
    path = fetch_record_path(destination)
    temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        temporary.write_text(json.dumps({"seconds": round(seconds, 3)}), encoding="utf-8")
        os.replace(temporary, path)
    except OSError as error:
        logger.warning("cannot record the fetch's duration in %s: %s", path, error)


def recorded_fetch_seconds(model: Path) -> float | None:
    """The duration the fetch recorded beside `model`; None without a fetch (a local or volume
    source) or a readable record."""
    try:
        seconds = json.loads(fetch_record_path(model).read_text(encoding="utf-8"))["seconds"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return float(seconds) if isinstance(seconds, int | float) and seconds >= 0 else None
