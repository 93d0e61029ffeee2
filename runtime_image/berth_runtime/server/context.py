"""What every route needs, bundled once per app instead of kept in module globals."""

from __future__ import annotations

from dataclasses import dataclass

from berth_runtime.config import RuntimeConfig
from berth_runtime.server.lifecycle import ServerState
from berth_runtime.server.metrics import ServerMetrics
from berth_runtime.server.statistics import ModelStatistics


@dataclass(frozen=True)
class ServingContext:
    config: RuntimeConfig
    state: ServerState
    metrics: ServerMetrics
    statistics: ModelStatistics

    @property
    def model_name(self) -> str:
        return self.config.model_name
