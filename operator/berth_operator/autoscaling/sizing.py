"""Replica counts for a load, and the words that explain them.

Split from `policy` so the decision module holds the rules (bounds, missing metrics, stabilization,
dry run) while this one holds the arithmetic they rest on: how many replicas a token rate needs at
a utilization of the learned capacity, the fewest survivors a scale-down may leave, and the reason
text that shows those numbers. Pure functions, no I/O.
"""

from __future__ import annotations

import math

from berth_operator.autoscaling.capacity import Load, Tuning


def replicas_for(work: float, capacity: float | None, utilization: float) -> int | None:
    """Replicas needed for `work` tok/s at `utilization` of `capacity` each; None if capacity is unknown."""
    if work <= 0:
        return 0
    if capacity is None:
        return None
    return math.ceil(work / (capacity * utilization) - 1e-9)


def fewest_survivors(
    load: Load, ceiling: float | None, floor: float | None, tuning: Tuning, replicas: int
) -> int:
    """The fewest replicas whose per-replica load stays safe: within `scale_down_utilization` of
    the ceiling, or at most the proven floor while no ceiling is known. Unknown capacity: no fewer."""
    if load.arriving <= 0:
        return 0
    if ceiling is not None:
        return replicas_for(load.arriving, ceiling, tuning.scale_down_utilization) or 0
    if floor is not None:
        return replicas_for(load.arriving, floor, 1.0) or 0
    return replicas


def sizing_words(load: Load, demand: float, ceiling: float | None, tuning: Tuning, starting: int) -> str:
    """The demand and the replicas it needs at `scale_up_utilization`, for a decision's reason."""
    if demand <= 0:
        return "no load"
    queued = (
        f" incl. {load.queued:.0f} queued over {tuning.backlog_drain_seconds:.0f}s" if starting == 0 else ""
    )
    if ceiling is None:
        return f"demand {demand:.0f} tok/s{queued}; per-replica capacity not learned yet"
    needed = replicas_for(demand, ceiling, tuning.scale_up_utilization)
    return (
        f"demand {demand:.0f} tok/s{queued} needs {needed} replica(s) at "
        f"{tuning.scale_up_utilization:.0%} of {ceiling:.0f} tok/s each"
    )


def survivor_words(
    load: Load, survivors: int, ceiling: float | None, floor: float | None, tuning: Tuning
) -> str:
    """The per-survivor load after a scale-down against the capacity it must stay within."""
    if survivors <= 0 or load.arriving <= 0:
        return "no load"
    each = load.arriving / survivors
    if ceiling is not None:
        return (
            f"{load.arriving:.0f} tok/s over {survivors} survivor(s) = {each:.0f} tok/s each <= "
            f"{tuning.scale_down_utilization:.0%} of {ceiling:.0f} tok/s"
        )
    return (
        f"{load.arriving:.0f} tok/s over {survivors} survivor(s) = {each:.0f} tok/s each "
        f"<= proven {floor or 0:.0f}"
    )
