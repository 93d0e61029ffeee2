"""The share of a histogram's observations at or under a target, from its cumulative buckets.

Prometheus histograms store, per upper bound `le`, how many observations were at most that bound.
Where the target is a bucket boundary the share is exact: count(le = target) / count(le = +Inf).
Where it falls inside a bucket (lower, upper], the observations in that bucket are taken as spread
evenly across it -- the assumption `histogram_quantile` makes -- so the count at the target is
interpolated linearly: count(lower) + (count(upper) - count(lower)) x (target - lower) / (upper -
lower). The first bucket's lower bound is 0 (latencies are never negative). A target above the
highest finite bound cannot be placed: the share then counts only the observations under that bound,
a lower bound of the truth, and says so (`Share.lower_bound`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from berth_operator.autoscaling.samples import Sample

Bucket = tuple[float, float]
"""(upper bound `le` in the histogram's unit, cumulative count of observations at most that bound)."""


@dataclass(frozen=True)
class Share:
    """The fraction of observations at or under a target."""

    fraction: float
    """In [0, 1]."""
    observations: float
    """All observations of the window (the +Inf bucket's count)."""
    lower_bound: bool = False
    """True when the target lies above the highest finite bucket bound (see the module docstring)."""


def buckets_from_samples(samples: Iterable[Sample]) -> tuple[Bucket, ...]:
    """Buckets from a `sum by (le) (...)` instant vector, sorted by bound; samples without a numeric
    `le` label or with a NaN value are left out."""
    buckets = []
    for sample in samples:
        try:
            bound = float(sample.labels["le"])
        except (KeyError, ValueError):
            continue
        if math.isnan(bound) or math.isnan(sample.value):
            continue
        buckets.append((bound, sample.value))
    return tuple(sorted(buckets))


def total_observations(buckets: Iterable[Bucket]) -> float | None:
    """The +Inf bucket's count (every observation); None when there is no +Inf bucket."""
    return next((count for bound, count in buckets if math.isinf(bound) and bound > 0), None)


def share_within(buckets: Iterable[Bucket], target: float) -> Share | None:
    """The share of observations at most `target` (same unit as the bounds); None when there are no
    observations (no +Inf bucket, or its count is not positive)."""
    ordered = sorted(buckets)
    total = total_observations(ordered)
    if total is None or total <= 0:
        return None
    # Counts from rate() or increase() extrapolation can dip by a hair from one bound to the next;
    # make them monotonic, as histogram_quantile does.
    cumulative: list[Bucket] = []
    highest = 0.0
    for bound, count in ordered:
        highest = max(highest, count)
        cumulative.append((bound, min(highest, total)))
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in cumulative:
        if math.isinf(bound):
            return Share(fraction=lower_count / total, observations=total, lower_bound=True)
        if math.isclose(bound, target, rel_tol=1e-9) or bound > target:
            if math.isclose(bound, target, rel_tol=1e-9):
                at_target = count
            elif bound <= lower_bound:
                at_target = count  # a bucket at or below 0 holds nothing interpolation could split
            else:
                width = bound - lower_bound
                at_target = lower_count + (count - lower_count) * (target - lower_bound) / width
            return Share(fraction=min(max(at_target / total, 0.0), 1.0), observations=total)
        lower_bound, lower_count = bound, count
    return None  # unreachable: the +Inf bucket ends the loop
