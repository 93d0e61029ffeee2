"""Request traces for the autoscaling simulation: arrival times and token lengths.

Three shapes, each a non-homogeneous Poisson process (thinning) with log-normal prompt and output
lengths (chat-like: a long tail of 8k-token prompts among short ones):
- steady: a constant rate, three times the base, starting on the two replicas it needs;
- burst: the base rate, then five times it for a while, then the base rate again;
- diurnal: a day's rise and fall compressed into an hour, from a quarter of the peak to the peak.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Trace:
    name: str
    duration_seconds: float
    arrivals: np.ndarray  # [requests] seconds from the start, ascending
    prompt_tokens: np.ndarray  # [requests]
    output_tokens: np.ndarray  # [requests]
    initial_replicas: int = 1


@dataclass(frozen=True)
class TokenLengths:
    prompt_mean: float = 800.0
    prompt_sigma: float = 1.0
    prompt_max: int = 8192
    output_mean: float = 200.0
    output_sigma: float = 0.8
    output_max: int = 2048


def _lognormal(rng: np.random.Generator, mean: float, sigma: float, size: int, upper: int) -> np.ndarray:
    mu = math.log(mean) - sigma * sigma / 2
    return np.clip(np.rint(rng.lognormal(mu, sigma, size)), 1, upper).astype(np.int64)


def _poisson(
    rng: np.random.Generator, rate: Callable[[float], float], peak: float, duration: float
) -> np.ndarray:
    count = rng.poisson(peak * duration)
    times = np.sort(rng.uniform(0.0, duration, count))
    keep = rng.uniform(0.0, peak, count) < np.array([rate(t) for t in times])
    return times[keep]


def make_trace(
    name: str,
    duration: float,
    rate: Callable[[float], float],
    peak: float,
    seed: int,
    lengths: TokenLengths,
    initial_replicas: int = 1,
) -> Trace:
    rng = np.random.default_rng(seed)
    arrivals = _poisson(rng, rate, peak, duration)
    size = len(arrivals)
    return Trace(
        name=name,
        duration_seconds=duration,
        arrivals=arrivals,
        prompt_tokens=_lognormal(rng, lengths.prompt_mean, lengths.prompt_sigma, size, lengths.prompt_max),
        output_tokens=_lognormal(rng, lengths.output_mean, lengths.output_sigma, size, lengths.output_max),
        initial_replicas=initial_replicas,
    )


def standard_traces(base_rate: float, seed: int = 7, lengths: TokenLengths = TokenLengths()) -> list[Trace]:
    """The three traces of the benchmark table, at `base_rate` requests per second."""

    def steady(_: float) -> float:
        return 3.0 * base_rate

    def burst(t: float) -> float:
        return base_rate * (5.0 if 600.0 <= t < 1800.0 else 1.0)

    def diurnal(t: float) -> float:
        peak = 5.0 * base_rate
        return peak * (0.25 + 0.75 * 0.5 * (1 - math.cos(2 * math.pi * t / 3600.0)))

    return [
        make_trace("steady", 1800.0, steady, 3.0 * base_rate, seed, lengths, initial_replicas=2),
        make_trace("burst 5x", 2400.0, burst, 5.0 * base_rate, seed + 1, lengths),
        make_trace("diurnal", 3600.0, diurnal, 5.0 * base_rate, seed + 2, lengths),
    ]
