"""The PromQL behind `status.economics`: one set of instant queries per trailing window.

Every query aggregates to at most one series per deployment (the histogram queries to one series per
bucket boundary `le`), selected by the same labels as the autoscaler's (`SeriesSelector`). The
formulas, their units and their limits are documented in docs/economics.md; a test there keeps the
document and these strings in step.
"""

from __future__ import annotations

from dataclasses import dataclass

from berth_operator.autoscaling.signals import SeriesSelector

PRESENCE_GAUGE = "vllm:num_requests_running"
"""One series per replica, exported from the runtime's start (zeros until the model is loaded): its
presence is what counts a replica as running."""
OUTPUT_TOKENS_COUNTER = "vllm:generation_tokens_total"
TTFT_HISTOGRAM = "vllm:time_to_first_token_seconds"
ITL_HISTOGRAM = "vllm:inter_token_latency_seconds"

SECONDS_PER_HOUR = 3600


@dataclass(frozen=True)
class Window:
    """A trailing window ending at the evaluation time."""

    label: str
    """How messages name it: "last hour", "last day"."""
    seconds: int
    presence_step_seconds: int
    """Resolution of the presence subquery: a replica is looked for once per step."""

    def __post_init__(self) -> None:
        if self.seconds <= 0 or self.presence_step_seconds <= 0:
            raise ValueError(f"window {self.label!r}: seconds and step must be positive")
        if self.seconds % self.presence_step_seconds:
            raise ValueError(
                f"window {self.label!r}: {self.seconds}s is not a whole number of "
                f"{self.presence_step_seconds}s steps"
            )

    @property
    def hours(self) -> float:
        return self.seconds / SECONDS_PER_HOUR


LAST_HOUR = Window("last hour", 3600, 15)
LAST_DAY = Window("last day", 86400, 60)
WINDOWS = (LAST_HOUR, LAST_DAY)


def window_queries(selector: SeriesSelector, window: Window) -> dict[str, str]:
    """The PromQL for one window, by reading name.

    - `replicas_mean`: the mean number of replicas present over the window, sampled every
      `presence_step_seconds` (a step with no series counts 0, through `or vector(0)`); times the
      window in hours it is replica-hours.
    - `output_tokens`: generated tokens, summed over replicas (counter resets handled by `increase`).
    - `ttft_buckets`, `itl_buckets`: per bucket boundary `le`, the observations of the window, summed
      over replicas (cumulative counts, as the histogram stores them).
    """
    match = selector.matchers()
    span = f"[{window.seconds}s]"
    return {
        "replicas_mean": (
            f"avg_over_time((count({PRESENCE_GAUGE}{match}) or vector(0))"
            f"[{window.seconds}s:{window.presence_step_seconds}s])"
        ),
        "output_tokens": f"sum(increase({OUTPUT_TOKENS_COUNTER}{match}{span}))",
        "ttft_buckets": f"sum by (le) (increase({TTFT_HISTOGRAM}_bucket{match}{span}))",
        "itl_buckets": f"sum by (le) (increase({ITL_HISTOGRAM}_bucket{match}{span}))",
    }
