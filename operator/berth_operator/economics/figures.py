"""One window's figures from what Prometheus answered: pure arithmetic, no I/O.

replica-hours = mean replicas present x window hours; GPU-hours = replica-hours x GPUs per replica;
cost = GPU-hours x price; cost per million output tokens = cost / (output tokens / 10^6); attainment =
the share of observations within the target (`histograms.share_within`), in percent. A figure the
readings cannot support is None, with a note saying why; nothing missing is ever reported as 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from berth_operator.economics.histograms import Bucket, share_within, total_observations
from berth_operator.economics.pricing import NoPrice, Price
from berth_operator.economics.queries import (
    ITL_HISTOGRAM,
    OUTPUT_TOKENS_COUNTER,
    PRESENCE_GAUGE,
    TTFT_HISTOGRAM,
    Window,
)

TOKENS_PER_MILLION = 1_000_000


@dataclass(frozen=True)
class WindowReadings:
    """What Prometheus answered for one window (None / empty: the query found no series)."""

    replicas_mean: float | None
    output_tokens: float | None
    ttft_buckets: tuple[Bucket, ...] = ()
    itl_buckets: tuple[Bucket, ...] = ()


@dataclass(frozen=True)
class LatencyTargets:
    """The SLO targets attainment is measured against, seconds (None: no target, no attainment)."""

    ttft_seconds: float | None = None
    itl_seconds: float | None = None


@dataclass(frozen=True)
class WindowFigures:
    """The figures of one window; None where the readings cannot support a figure (see `notes`)."""

    window: Window
    replica_hours: float | None = None
    gpu_hours: float | None = None
    output_tokens: float | None = None
    requests: float | None = None
    cost: float | None = None
    cost_per_million_output_tokens: float | None = None
    ttft_attainment: float | None = None
    """Fraction in [0, 1]."""
    itl_attainment: float | None = None
    """Fraction in [0, 1]."""
    notes: tuple[str, ...] = field(default=())


def _attainment(
    buckets: tuple[Bucket, ...], target_seconds: float | None, histogram: str, observed: str
) -> tuple[float | None, str | None]:
    """(fraction, note): the share within the target, or None and why (no note when there is no
    target: that is said once for all windows)."""
    if target_seconds is None:
        return None, None
    if not buckets:
        return None, f"no {histogram}_bucket series, so no attainment"
    share = share_within(buckets, target_seconds)
    if share is None:
        return None, f"no {observed} observed, so no attainment"
    if share.lower_bound:
        highest = max(bound for bound, _ in buckets if bound != float("inf"))
        return share.fraction, (
            f"the {target_seconds * 1000:g}ms target lies above {histogram}'s highest finite bucket "
            f"({highest:g}s): attainment counts only observations under {highest:g}s (a lower bound)"
        )
    return share.fraction, None


def window_figures(
    window: Window,
    readings: WindowReadings,
    gpus_per_replica: int,
    price: Price | NoPrice,
    targets: LatencyTargets,
) -> WindowFigures:
    if not readings.replicas_mean:  # None or 0: no step of the window saw a replica's series
        return WindowFigures(window, notes=(f"no {PRESENCE_GAUGE} series, so no figures",))
    notes: list[str] = []
    replica_hours = readings.replicas_mean * window.hours
    gpu_hours = replica_hours * gpus_per_replica

    tokens = None if readings.output_tokens is None else max(readings.output_tokens, 0.0)
    if tokens is None:
        notes.append(f"no {OUTPUT_TOKENS_COUNTER} series, so no output tokens")

    cost = cost_per_million = None
    if isinstance(price, Price):
        cost = gpu_hours * price.per_gpu_hour
        if tokens is not None and round(tokens) > 0:
            cost_per_million = cost / (tokens / TOKENS_PER_MILLION)
        elif tokens is not None:
            notes.append("no output tokens, so no cost per million output tokens")

    requests = total_observations(readings.ttft_buckets)
    ttft, ttft_note = _attainment(
        readings.ttft_buckets, targets.ttft_seconds, TTFT_HISTOGRAM, "requests with a first token"
    )
    itl, itl_note = _attainment(
        readings.itl_buckets, targets.itl_seconds, ITL_HISTOGRAM, "inter-token intervals"
    )
    notes += [note for note in (ttft_note, itl_note) if note is not None]
    return WindowFigures(
        window=window,
        replica_hours=replica_hours,
        gpu_hours=gpu_hours,
        output_tokens=tokens,
        requests=None if requests is None else max(requests, 0.0),
        cost=cost,
        cost_per_million_output_tokens=cost_per_million,
        ttft_attainment=ttft,
        itl_attainment=itl,
        notes=tuple(notes),
    )


@dataclass(frozen=True)
class EconomicsUnavailable:
    """No readings this time, and why (Prometheus unreachable, a query refused, ...)."""

    reason: str
