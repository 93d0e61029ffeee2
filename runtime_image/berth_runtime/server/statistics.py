"""Per-model inference statistics in the shape of Triton's statistics extension (`/v2/models/{m}/stats`).

`tritonclient`'s `get_inference_statistics()` and Triton dashboards read these cumulative counts and
durations. For an LLM the "queue" phase is arrival to first token and "compute_infer" is first to
last token; every generation request counts, whichever API it came through.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

MODEL_VERSION = "1"


@dataclass
class _Duration:
    count: int = 0
    ns: int = 0

    def add(self, nanoseconds: int) -> None:
        self.count += 1
        self.ns += max(0, nanoseconds)

    def to_json(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


class ModelStatistics:
    """Cumulative counts since the server started; safe to update from any thread."""

    def __init__(self, model_name: str) -> None:
        self._model_name = model_name
        self._lock = threading.Lock()
        self._inference_count = 0
        self._last_inference_ms = 0
        self._success = _Duration()
        self._fail = _Duration()
        self._queue = _Duration()
        self._compute_infer = _Duration()

    def record_success(self, arrival: float, first_token_at: float | None, finished_at: float) -> None:
        """Times are `time.monotonic()` seconds."""
        first = first_token_at if first_token_at is not None else finished_at
        with self._lock:
            self._inference_count += 1
            self._last_inference_ms = int(time.time() * 1000)
            self._success.add(_nanoseconds(finished_at - arrival))
            self._queue.add(_nanoseconds(first - arrival))
            self._compute_infer.add(_nanoseconds(finished_at - first))

    def record_failure(self, arrival: float, failed_at: float) -> None:
        with self._lock:
            self._last_inference_ms = int(time.time() * 1000)
            self._fail.add(_nanoseconds(failed_at - arrival))

    @property
    def inference_count(self) -> int:
        with self._lock:
            return self._inference_count

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            empty = _Duration().to_json()
            return {
                "model_stats": [
                    {
                        "name": self._model_name,
                        "version": MODEL_VERSION,
                        "last_inference": self._last_inference_ms,
                        "inference_count": self._inference_count,
                        "execution_count": self._inference_count,
                        "inference_stats": {
                            "success": self._success.to_json(),
                            "fail": self._fail.to_json(),
                            "queue": self._queue.to_json(),
                            "compute_input": empty,
                            "compute_infer": self._compute_infer.to_json(),
                            "compute_output": empty,
                            "cache_hit": empty,
                            "cache_miss": empty,
                        },
                        "batch_stats": [],
                    }
                ]
            }


def _nanoseconds(seconds: float) -> int:
    return int(seconds * 1_000_000_000)
