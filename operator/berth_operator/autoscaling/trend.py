"""The demand's trend over the last minutes, projected minutes ahead: headroom on a slow rise.

Why: on a slow rise (a diurnal morning, a ramp) every window the policy reads shows only a few
percent more than the one before -- too little to tell from the noise of one evaluation, so the
policy would add a replica only once the load it has already arrived at needs it, and the requests
of the cold start that follows run on replicas at their limit. A fixed lower target (HPA's half a
batch) buys that headroom too, but pays for it on every flat hour. The rate of rise is visible over
minutes, though: a straight line fitted (least squares) to the windowed request rates of the
recent evaluations, which status keeps with their recommendations, so the trend survives an
operator restart like the rest of the policy's memory. The windowed rate, unlike the
requests-in-flight gauge, does not jump when a replica joins, and is smooth enough that its slope
over three minutes is the demand's, not the noise's.

The same points tell, at the next evaluation already, that a rising edge has begun: the windowed
rate of now against the last evaluation's (`rate_jump`). The requests in flight show an edge too,
but one gauge sample is noisy enough to dip back under its margin in the middle of a rise; the
windowed rate moves only by the requests that entered and left the window in between, so a rise
beyond that Poisson noise is the demand's.

Pure functions; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from berth_operator.autoscaling.capacity import Tuning
from berth_operator.autoscaling.state import Recommendation


def demand_growth(
    recommendations: Iterable[Recommendation], now: float, rate_now: float, tuning: Tuning
) -> float:
    """The factor by which the request rate grows within `trend_horizon_seconds` if it keeps the
    slope of the last `trend_seconds`: 1 without a rise (a falling demand is left to the scale-down
    rules), at most `max_trend_growth`. `rate_now` is this evaluation's, which `recommendations`
    need not hold yet. Needs points over at least half of `trend_seconds`."""
    points = [
        (r.time, r.requests_per_second)
        for r in recommendations
        if r.requests_per_second is not None and now - tuning.trend_seconds <= r.time < now
    ]
    points.append((now, rate_now))
    if rate_now <= 0 or now - points[0][0] < tuning.trend_seconds / 2:
        return 1.0
    mean_time = sum(time for time, _ in points) / len(points)
    mean_rate = sum(rate for _, rate in points) / len(points)
    spread = sum((time - mean_time) ** 2 for time, _ in points)
    slope = sum((time - mean_time) * (rate - mean_rate) for time, rate in points) / spread
    growth = 1.0 + slope * tuning.trend_horizon_seconds / rate_now
    return min(max(growth, 1.0), tuning.max_trend_growth)


def trend_words(growth: float, tuning: Tuning) -> str:
    """The trend's share of a sizing, for a decision's reason; empty without a rise."""
    if growth <= 1.0:
        return ""
    return (
        f" (incl. {growth - 1:.0%} the demand grows within {tuning.trend_horizon_seconds:.0f}s "
        f"at its slope over the last {tuning.trend_seconds:.0f}s)"
    )


def rate_jump(
    recommendations: Sequence[Recommendation],
    now: float,
    rate_now: float,
    window_seconds: float,
    tuning: Tuning,
) -> float | None:
    """The windowed request rate of the last evaluation, if `rate_now` has risen above it beyond
    `trend_margin` and beyond `trend_noise_sigmas` standard deviations of the Poisson noise of the
    requests that entered and left the window in between (sqrt(2 x rate x elapsed) / window);
    None otherwise, or without a recent last evaluation (`recent_seconds`)."""
    last = recommendations[-1] if recommendations else None
    if last is None or last.requests_per_second is None:
        return None
    elapsed = now - last.time
    if not 0 < elapsed <= tuning.recent_seconds or window_seconds <= 0:
        return None
    before = last.requests_per_second
    noise = math.sqrt(2.0 * max(rate_now, before) * min(elapsed, window_seconds)) / window_seconds
    if rate_now - before > max(tuning.trend_margin * before, tuning.trend_noise_sigmas * noise):
        return before
    return None
