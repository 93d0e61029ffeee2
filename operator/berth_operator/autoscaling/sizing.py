"""Replica counts for a load, and the words that explain them.

Split from `policy` so the decision module holds the rules (bounds, missing metrics, stabilization,
dry run) while this one holds the arithmetic they rest on: how many replicas a token rate needs at
a utilization of the learned capacity, how many the requests in flight need at a utilization of
the batch slots (`maxBatchSize` per replica: a bound known before any saturation was seen, so a
burst is met at the first evaluation that shows it), the fewest survivors a scale-down may leave,
and the reason text that shows those numbers. Pure functions, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import replace

from berth_operator.autoscaling.capacity import Load, Tuning
from berth_operator.autoscaling.signals import Signals


def replicas_for(work: float, capacity: float | None, utilization: float) -> int | None:
    """Replicas needed for `work` tok/s at `utilization` of `capacity` each; None if capacity is unknown."""
    if work <= 0:
        return 0
    if capacity is None:
        return None
    return math.ceil(work / (capacity * utilization) - 1e-9)


def in_flight(signals: Signals, batch_slots: int | None, ceiling: float | None) -> float:
    """Requests in flight for the slot rule: running, and -- until a capacity is learned -- waiting
    up to one batch per reporting replica. Once the ceiling is known the token rule sizes the queue
    by its growth; counted here too, a backlog stuck on one replica would keep adding replicas that
    cannot take it over."""
    if ceiling is not None:
        return signals.running_requests
    cap = float(batch_slots or 0) * max(signals.reporting_replicas, 1)
    return signals.running_requests + min(signals.waiting_requests, cap)


def slots_for(requests: float, batch_slots: int | None, utilization: float) -> int:
    """Replicas `requests` in flight need at `utilization` of each replica's batch slots; 0 when the
    slots are unknown."""
    if batch_slots is None or requests <= 0:
        return 0
    return replicas_for(requests, float(batch_slots), utilization) or 0


def survivor_load(load: Load, waiting: float, growth: float) -> Load:
    """What the survivors of a scale-down must carry: the work the window served -- not the rate the
    gauges correct it to, unless requests wait -- grown by the demand's trend. The gauge correction
    makes scale-ups quick; for a scale-down it only adds noise: one evaluation's burst of requests in
    flight (bursty arrivals bring several a minute) sized the recommendation up and held the count for
    a whole stabilization window. A rise is the rising-demand rule's to catch, and the trend keeps
    survivors from being sized for a demand that is still growing."""
    carried = load.arriving if waiting > 0 else load.served
    return replace(load, arriving=carried * growth)


def fewest_survivors(
    load: Load,
    ceiling: float | None,
    floor: float | None,
    tuning: Tuning,
    replicas: int,
    running: float = 0.0,
    batch_slots: int | None = None,
    floor_trust: float = 1.0,
) -> int:
    """The fewest replicas whose per-replica load stays safe: within `scale_down_utilization` of
    the ceiling, or within `floor_trust` times the proven floor while no ceiling is known (unknown
    capacity: no fewer), and the requests running within `slot_scale_down_utilization` of their
    batch slots."""
    slots = slots_for(running, batch_slots, tuning.slot_scale_down_utilization)
    if load.arriving <= 0:
        return slots
    if ceiling is not None:
        return max(replicas_for(load.arriving, ceiling, tuning.scale_down_utilization) or 0, slots)
    if floor is not None:
        return max(replicas_for(load.arriving, floor, floor_trust) or 0, slots)
    return replicas


def slot_words(requests: float, batch_slots: int, tuning: Tuning) -> str:
    """The requests in flight and the replicas they need, for a reason the batch slots decided."""
    needed = slots_for(requests, batch_slots, tuning.slot_scale_up_utilization)
    return (
        f"{requests:.0f} requests in flight need {needed} replica(s) at "
        f"{tuning.slot_scale_up_utilization:.0%} of {batch_slots} batch slots each"
    )


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
    load: Load,
    survivors: int,
    ceiling: float | None,
    floor: float | None,
    tuning: Tuning,
    floor_trust: float = 1.0,
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
    trusted = (
        f"{floor_trust:.0%} of proven {floor or 0:.0f}, the p95s within "
        f"{tuning.scale_down_utilization:.0%} of their targets"
        if floor_trust > 1
        else f"proven {floor or 0:.0f}"
    )
    return f"{load.arriving:.0f} tok/s over {survivors} survivor(s) = {each:.0f} tok/s each <= {trusted}"
