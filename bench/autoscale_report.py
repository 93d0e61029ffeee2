"""What one simulated run comes to, and how the table prints it: the row, the goal verdict, and
where in time the requests over the TTFT target arrived.

Split from `autoscale_sim` so the loop stays one concern. The misses by arrival time are the
diagnostic that tells a policy's losses apart: requests that arrived before the first added replica
was Ready (the signal's latency decides those), a backlog stuck on a replica (the router's), or
tail misses on replicas running close to their limit (the target utilization's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MISS_BIN_SECONDS = 30
"""Width of the arrival-time bins `--misses` counts requests over the TTFT target in."""


@dataclass
class Outcome:
    scenario: str
    scaler: str
    ttft_met: float
    itl_met: float
    ttft_p95: float
    gpu_hours: float
    scale_events: int
    direction_changes: int
    rising_scale_ins: int
    peak_replicas: int
    reasons: list[str]
    steps: list[Any]
    """berth's evaluations (`autoscale_berth.Step`), for `--record`; empty for the others."""
    misses: dict[int, int] = field(default_factory=dict)
    """Requests over the TTFT target (or never served) by the start of their arrival's bin."""


def misses_by_bin(late_arrivals: np.ndarray) -> dict[int, int]:
    """Requests over the TTFT target, counted by `MISS_BIN_SECONDS` bins of their arrival time
    (`late_arrivals`: [requests] seconds)."""
    starts = (late_arrivals // MISS_BIN_SECONDS).astype(np.int64) * MISS_BIN_SECONDS
    bins, counts = np.unique(starts, return_counts=True)
    return {int(start): int(count) for start, count in zip(bins, counts, strict=True)}


def row_line(row: Outcome) -> str:
    return (
        f"{row.scenario:<16} {row.scaler:<30} {row.ttft_met:>8.2%} {row.itl_met:>8.2%} "
        f"{_seconds(row.ttft_p95):>9} {row.gpu_hours:>6.2f} {row.scale_events:>6} "
        f"{row.direction_changes:>7} {row.rising_scale_ins:>7} {row.peak_replicas:>4}"
    )


def misses_line(row: Outcome) -> str:
    """The misses of one run by arrival bin, e.g. `1200s: 1115, 1230s: 1176`."""
    if not row.misses:
        return "    misses: none"
    return "    misses by arrival: " + ", ".join(f"{start}s: {count}" for start, count in row.misses.items())


def goal_line(rows: list[Outcome]) -> str:
    """berth against the goal on one scenario: at least the best baseline's TTFT share, at no more
    GPU-hours than that baseline; no scale-in into a rising edge; the fewest direction changes."""
    berth = rows[0]
    baselines = [r for r in rows[1:] if not r.scaler.startswith(("oracle", "clairvoyant"))]
    best = max(baselines, key=lambda r: (r.ttft_met, -r.gpu_hours))
    fewest = min(r.direction_changes for r in baselines)
    oracle = next(r for r in rows if r.scaler.startswith("oracle"))
    checks = [
        ("TTFT", berth.ttft_met >= best.ttft_met),
        ("GPU-h", berth.gpu_hours <= best.gpu_hours + 1e-9),
        ("rising-edge scale-ins 0", berth.rising_scale_ins == 0),
        ("fewest direction changes", berth.direction_changes <= fewest),
    ]
    verdict = ", ".join(f"{name} {'met' if ok else 'NOT met'}" for name, ok in checks)
    return (
        f"  goal: {verdict} -- berth {berth.ttft_met:.3%} at {berth.gpu_hours:.2f} GPU-h, best baseline "
        f"{best.scaler} {best.ttft_met:.3%} at {best.gpu_hours:.2f}; reactive bound {oracle.ttft_met:.2%}; "
        f"direction changes {berth.direction_changes} (baselines' fewest {fewest})"
    )


def _seconds(value: float) -> str:
    if math.isinf(value):
        return "inf"
    return f"{value * 1000:.0f}ms" if value < 10 else f"{value:.1f}s"
