"""Request traces for the autoscaling simulation: arrival times, token lengths, and the demand
behind them.

Arrivals are a non-homogeneous renewal process: Poisson (exponential gaps) unless a trace says
otherwise, time-rescaled so the mean rate follows the trace's `rate(t)`. Token lengths are
log-normal, by their mean and spread, clipped to the model's context. Chat: prompts of 800 tokens
on average with a long tail to 8k, 200 output tokens. RAG: retrieved context makes prompts of
~4,000 tokens (to 16k) for ~150 output tokens.

- steady: three times the base rate, from two Ready replicas;
- burst 5x: the base rate, then five times it for 20 minutes, then the base again;
- diurnal: a day's rise and fall compressed into an hour, from a quarter of the peak to the peak;
- square 300s / square 1200s: 1x and 4x the base in alternating halves of 300 s / 1,200 s;
- ramp 1x-6x: the base rising linearly to six times it over 40 minutes, then holding;
- chat->RAG: a steady request rate whose prompts turn from chat to RAG over five minutes;
- azure-conv: shaped like the Azure LLM inference trace 2023 (conversation), described in
  Patel et al., "Splitwise: efficient generative LLM inference using phase splitting", ISCA 2024:
  median prompt 1,020 tokens, median output 129 (as quoted; not re-checked against the paper's
  text, see docs/autoscaling.md); arrivals as bursty as BurstGPT found Azure
  OpenAI's to be (Wang et al., "BurstGPT", arXiv:2401.17644): Gamma-distributed gaps of shape 0.5
  (coefficient of variation 1.4; BurstGPT-Perf's generator default), the mean rate rising and
  falling between 1x and 4x the base over 40 minutes. Only the parameters are used; no trace data.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Rate = Callable[[float], float]

TRACE_SEED = 7
"""Seed of the documented table's traces; other seeds draw other arrivals and lengths of the same
shapes, to tell a policy's effect from one draw's luck."""


@dataclass(frozen=True)
class Lengths:
    """Log-normal token lengths: means, spreads (sigma of the log) and the clip."""

    prompt_mean: float
    prompt_sigma: float
    output_mean: float
    output_sigma: float
    prompt_max: int = 8192
    output_max: int = 2048

    def sample(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        return (
            _lognormal(rng, self.prompt_mean, self.prompt_sigma, size, self.prompt_max),
            _lognormal(rng, self.output_mean, self.output_sigma, size, self.output_max),
        )


CHAT = Lengths(prompt_mean=800.0, prompt_sigma=1.0, output_mean=200.0, output_sigma=0.8)
RAG = Lengths(prompt_mean=4000.0, prompt_sigma=0.5, output_mean=150.0, output_sigma=0.6, prompt_max=16384)
AZURE_CONVERSATION = Lengths(
    # Medians 1,020 and 129 (Splitwise); mean = median x exp(sigma^2 / 2).
    prompt_mean=1020.0 * math.exp(0.9**2 / 2),
    prompt_sigma=0.9,
    output_mean=129.0 * math.exp(0.8**2 / 2),
    output_sigma=0.8,
)


@dataclass(frozen=True)
class Trace:
    name: str
    duration_seconds: float
    arrivals: np.ndarray  # [requests] seconds from the start, ascending
    prompt_tokens: np.ndarray  # [requests]
    output_tokens: np.ndarray  # [requests]
    rate: Rate
    """Mean arrival rate (requests/s) at a time: the demand the arrivals are drawn from."""
    initial_replicas: int = 1


def _lognormal(rng: np.random.Generator, mean: float, sigma: float, size: int, upper: int) -> np.ndarray:
    mu = math.log(mean) - sigma * sigma / 2
    return np.clip(np.rint(rng.lognormal(mu, sigma, size)), 1, upper).astype(np.int64)


def _arrivals(rng: np.random.Generator, rate: Rate, duration: float, gamma_shape: float) -> np.ndarray:
    """A renewal process of unit mean gaps (Gamma of `gamma_shape`; 1 is Poisson) in the time
    that the cumulative rate measures, mapped back to seconds."""
    grid = np.arange(0.0, duration + 1.0, 1.0)
    cumulative = np.concatenate([[0.0], np.cumsum([rate(t + 0.5) for t in grid[:-1]])])
    gaps = rng.gamma(gamma_shape, 1.0 / gamma_shape, int(cumulative[-1] * 1.2) + 100)
    operational = np.cumsum(gaps)
    operational = operational[operational < cumulative[-1]]
    return np.interp(operational, cumulative, grid)


def make_trace(
    name: str,
    duration: float,
    rate: Rate,
    seed: int,
    lengths: Lengths = CHAT,
    initial_replicas: int = 1,
    gamma_shape: float = 1.0,
    shift: tuple[Lengths, Rate] | None = None,
) -> Trace:
    """A trace; with `shift` = (lengths, share), a request arriving at t has the shifted lengths
    with probability share(t)."""
    rng = np.random.default_rng(seed)
    arrivals = _arrivals(rng, rate, duration, gamma_shape)
    prompt, output = lengths.sample(rng, len(arrivals))
    if shift is not None:
        shifted, share = shift
        shifted_prompt, shifted_output = shifted.sample(rng, len(arrivals))
        chosen = rng.uniform(size=len(arrivals)) < np.array([share(float(t)) for t in arrivals])
        prompt, output = np.where(chosen, shifted_prompt, prompt), np.where(chosen, shifted_output, output)
    return Trace(name, duration, arrivals, prompt, output, rate, initial_replicas)


@functools.cache
def standard_traces(base_rate: float, seed: int = TRACE_SEED) -> list[Trace]:
    """The traces of the benchmark table, at `base_rate` requests per second."""

    def steady(_: float) -> float:
        return 3.0 * base_rate

    def burst(t: float) -> float:
        return base_rate * (5.0 if 600.0 <= t < 1800.0 else 1.0)

    def diurnal(t: float) -> float:
        return 5.0 * base_rate * (0.25 + 0.75 * 0.5 * (1 - math.cos(2 * math.pi * t / 3600.0)))

    def square(half: float) -> Rate:
        return lambda t: base_rate * (4.0 if int(t // half) % 2 == 1 else 1.0)

    def ramp(t: float) -> float:
        return base_rate * (1.0 + 5.0 * min(max(t - 300.0, 0.0) / 2400.0, 1.0))

    def flat(_: float) -> float:
        return 1.5 * base_rate

    def rag_share(t: float) -> float:
        return min(max((t - 900.0) / 300.0, 0.0), 1.0)

    def rise_and_fall(t: float) -> float:
        return base_rate * (1.0 + 3.0 * 0.5 * (1 - math.cos(2 * math.pi * t / 2400.0)))

    return [
        make_trace("steady", 1800.0, steady, seed, initial_replicas=2),
        make_trace("burst 5x", 2400.0, burst, seed + 1),
        make_trace("diurnal", 3600.0, diurnal, seed + 2),
        make_trace("square 300s", 2400.0, square(300.0), seed + 3),
        make_trace("square 1200s", 4800.0, square(1200.0), seed + 4),
        make_trace("ramp 1x-6x", 3300.0, ramp, seed + 5),
        make_trace("chat->RAG", 2400.0, flat, seed + 6, shift=(RAG, rag_share)),
        make_trace(
            "azure-conv", 2400.0, rise_and_fall, seed + 7, lengths=AZURE_CONVERSATION, gamma_shape=0.5
        ),
    ]
