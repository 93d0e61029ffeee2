"""Judging one canary step: what the new revision served, read per revision from Prometheus, held
against the analysis thresholds and against the stable revision serving beside it.

Why per revision: during a canary both revisions serve one InferenceDeployment, so its series carry
the same `namespace` and `app_kubernetes_io_instance`; the pod label `berth.dev/revision` (which the
chart's PodMonitor relabels into the series label `berth_dev_revision`) is what tells them apart.

Pure: this module builds the PromQL (`revision_queries`), turns the answers into `RevisionMetrics`
(`parse_revision_metrics`) and decides (`judge`); `revision_metrics` runs the queries. The verdict
is never a guess: no series, or fewer requests than `min_requests`, is Inconclusive, not Pass.

The rules of `judge`, in order:
1. No metrics for the canary, or fewer than `min_requests` canary requests: Inconclusive.
2. Fail on any breach:
   - the canary's error rate above `max_error_rate`. This ceiling is absolute; the error rate is not
     also compared with the stable revision's, because a canary window holds tens to hundreds of
     requests: against a stable rate near zero, one client hanging up would read as a regression.
   - the canary's TTFT or ITL p95 above its SLO ceiling (when one is set);
   - the canary's TTFT or ITL p95 above the stable's times `1 + max_regression`. Compared only when
     the stable revision served at least `min_requests` itself and has that p95; otherwise (e.g. the
     stable revision is already at zero replicas at the last step) the comparison is skipped, not
     failed, and the message says so.
3. Pass otherwise.
The message names every number that decided the verdict (milliseconds, percentages, counts).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from berth_operator.autoscaling.signals import SeriesSelector, _escape

REVISION_SERIES_LABEL: Final = "berth_dev_revision"
"""The series label that carries a pod's `berth.dev/revision` (the chart's PodMonitor relabeling)."""

MIN_WINDOW_SECONDS: Final = 2
"""Shortest analysis window, seconds: `increase()` needs two samples inside it."""

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

Verdict = Literal["Pass", "Fail", "Inconclusive"]


@dataclass(frozen=True)
class RevisionMetrics:
    """What one revision served in the analysis window, summed over its pods."""

    requests: float
    """Requests answered in the window: `berth:http_requests_total` (every status code), or, when
    that series is absent, the finished requests of `vllm:request_success_total`. A float:
    `increase()` extrapolates to the window's edges."""
    errors: float
    """Failed requests in the window: non-2xx responses plus aborted requests
    (`finished_reason="abort"`: the client went away or the stream failed). 4xx count too: a revision
    that newly refuses requests (404 for a renamed model, 400 for a shorter context) must fail, at
    the price of also counting clients' own mistakes. One request can count twice (a non-streaming
    request closed by its client mid-way is a 499 and an abort), so this is capped at `requests`."""
    ttft_p95_seconds: float | None
    """95th percentile time to first token; None when no request finished in the window."""
    itl_p95_seconds: float | None
    """95th percentile inter-token latency; None when no token was generated in the window."""

    @property
    def error_rate(self) -> float:
        """`errors / requests` in [0, 1]; 0 when there were no requests (nothing failed)."""
        if self.requests <= 0:
            return 0.0
        return min(max(self.errors, 0.0) / self.requests, 1.0)


@dataclass(frozen=True)
class AnalysisThresholds:
    """What a canary must show to pass a step."""

    min_requests: int
    """Canary requests needed in the window before a verdict; fewer is Inconclusive (never pass
    blind). The stable revision needs as many to be compared with. At least 1."""
    max_error_rate: float
    """Highest share of the canary's requests that may fail, in [0, 1]; absolute."""
    ttft_p95_seconds: float | None
    """SLO ceiling on the canary's TTFT p95, seconds; None: no absolute ceiling."""
    itl_p95_seconds: float | None
    """SLO ceiling on the canary's ITL p95, seconds; None: no absolute ceiling."""
    max_regression: float
    """How much worse than the stable revision the canary's TTFT and ITL p95 may be, as a fraction:
    0.2 lets the canary be 20% slower. At least 0."""

    def __post_init__(self) -> None:
        if self.min_requests < 1:
            raise ValueError(
                f"min_requests: {self.min_requests!r} must be at least 1 (a canary is never passed blind)"
            )
        if not 0.0 <= self.max_error_rate <= 1.0:
            raise ValueError(f"max_error_rate: {self.max_error_rate!r} must be a share in [0, 1]")
        for name in ("ttft_p95_seconds", "itl_p95_seconds"):
            ceiling = getattr(self, name)
            if ceiling is not None and not (math.isfinite(ceiling) and ceiling > 0):
                raise ValueError(f"{name}: {ceiling!r} must be a positive number of seconds, or None")
        if not (math.isfinite(self.max_regression) and self.max_regression >= 0):
            raise ValueError(
                f"max_regression: {self.max_regression!r} must be a fraction of at least 0 (0.2 = 20% worse)"
            )


@dataclass(frozen=True)
class AnalysisResult:
    """The verdict on one canary step, and the figures it was reached from."""

    verdict: Verdict
    message: str
    """One line for status and Events, with the numbers that decided it."""
    canary: RevisionMetrics | None
    stable: RevisionMetrics | None


def revision_queries(
    selector: SeriesSelector,
    revision: str,
    window_seconds: int,
    revision_label: str = REVISION_SERIES_LABEL,
) -> dict[str, str]:
    """The PromQL that measures one revision over the last `window_seconds`, by name; each query
    aggregates to at most one series. `parse_revision_metrics` reads the answers."""
    if window_seconds < MIN_WINDOW_SECONDS:
        raise ValueError(f"window_seconds: {window_seconds!r} must be at least {MIN_WINDOW_SECONDS} seconds")
    if not revision:
        raise ValueError("revision: must not be empty (it selects the revision's series)")
    if not _LABEL_NAME.fullmatch(revision_label):
        raise ValueError(
            f"revision_label: {revision_label!r} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
        )
    match = _with_matcher(selector.matchers(), f'{revision_label}="{_escape(revision)}"')
    window = f"[{window_seconds}s]"
    http_errors = _with_matcher(match, 'status!~"2.."')
    aborted = _with_matcher(match, 'finished_reason="abort"')

    def p95(histogram: str) -> str:
        return f"histogram_quantile(0.95, sum by (le) (rate({histogram}_bucket{match}{window})))"

    return {
        "http_requests": f"sum(increase(berth:http_requests_total{match}{window}))",
        "http_errors": f"sum(increase(berth:http_requests_total{http_errors}{window}))",
        "finished_requests": f"sum(increase(vllm:request_success_total{match}{window}))",
        "aborted_requests": f"sum(increase(vllm:request_success_total{aborted}{window}))",
        "ttft_p95_seconds": p95("vllm:time_to_first_token_seconds"),
        "itl_p95_seconds": p95("vllm:inter_token_latency_seconds"),
        "reporting_pods": f"count(max_over_time(vllm:num_requests_running{match}{window}))",
    }


def _with_matcher(matchers: str, matcher: str) -> str:
    """`{a="x"}` plus `b="y"` -> `{a="x",b="y"}`."""
    return f"{matchers[:-1]},{matcher}}}"


def parse_revision_metrics(values: Mapping[str, float | None]) -> RevisionMetrics | None:
    """Turn the answers to `revision_queries` (None: empty result or NaN) into `RevisionMetrics`.

    None when the revision has no series at all: no pod reported in the window and no request was
    counted. A revision whose pods reported but served nothing has zero requests (Inconclusive
    later, with the count), which says something different from "no metrics"."""
    http_requests = values.get("http_requests")
    finished_requests = values.get("finished_requests")
    if values.get("reporting_pods") is None and http_requests is None and finished_requests is None:
        return None
    if http_requests is not None:
        requests = http_requests
        errors = (values.get("http_errors") or 0.0) + (values.get("aborted_requests") or 0.0)
    else:
        requests = finished_requests or 0.0
        errors = values.get("aborted_requests") or 0.0
    requests = max(requests, 0.0)
    return RevisionMetrics(
        requests=requests,
        errors=min(max(errors, 0.0), requests),
        ttft_p95_seconds=_latency(values.get("ttft_p95_seconds")),
        itl_p95_seconds=_latency(values.get("itl_p95_seconds")),
    )


def _latency(value: float | None) -> float | None:
    """NaN (a quantile of no observations) is no reading: None. +Inf (the p95 fell in the +Inf
    bucket) stays, and breaches any ceiling."""
    if value is None or math.isnan(value):
        return None
    return max(value, 0.0)


def judge(
    canary: RevisionMetrics | None,
    stable: RevisionMetrics | None,
    thresholds: AnalysisThresholds,
    *,
    canary_revision: str | None = None,
) -> AnalysisResult:
    """The verdict on the canary's window (rules in the module docstring). `canary_revision` only
    names the revision in the message when it has no metrics."""
    if canary is None:
        who = f"canary revision {canary_revision}" if canary_revision else "the canary revision"
        return AnalysisResult(
            "Inconclusive", f"no metrics for {who}: Prometheus has no series for it", None, stable
        )
    if canary.requests < thresholds.min_requests:
        return AnalysisResult(
            "Inconclusive",
            f"{_count(canary.requests)} canary requests in the window, fewer than the "
            f"{thresholds.min_requests} needed to judge",
            canary,
            stable,
        )
    why_not_compared = _why_not_comparable(stable, thresholds)
    compared = stable if why_not_compared is None else None
    stable_ttft = None if compared is None else compared.ttft_p95_seconds
    stable_itl = None if compared is None else compared.itl_p95_seconds
    latencies = (
        ("TTFT", canary.ttft_p95_seconds, thresholds.ttft_p95_seconds, stable_ttft),
        ("ITL", canary.itl_p95_seconds, thresholds.itl_p95_seconds, stable_itl),
    )
    checks = [_error_check(canary, thresholds)] + [
        _latency_check(label, value, ceiling, reference, thresholds.max_regression, compared is not None)
        for label, value, ceiling, reference in latencies
    ]
    context = f"{_count(canary.requests)} canary requests; " + (
        f"stable: {_figures(compared)}"
        if compared is not None
        else f"no comparison with stable: {why_not_compared}"
    )
    breaches = [check.failed_text() for check in checks if check.failed]
    if breaches:
        return AnalysisResult("Fail", f"canary {'; '.join(breaches)} ({context})", canary, stable)
    return AnalysisResult(
        "Pass", f"canary passes: {'; '.join(check.text() for check in checks)} ({context})", canary, stable
    )


@dataclass(frozen=True)
class _Comparison:
    text: str
    failed: bool


@dataclass(frozen=True)
class _Check:
    """One figure of the canary and the comparisons made on it."""

    subject: str
    comparisons: tuple[_Comparison, ...]

    @property
    def failed(self) -> bool:
        return any(comparison.failed for comparison in self.comparisons)

    def text(self) -> str:
        return self._join(self.comparisons)

    def failed_text(self) -> str:
        return self._join(tuple(comparison for comparison in self.comparisons if comparison.failed))

    def _join(self, comparisons: tuple[_Comparison, ...]) -> str:
        if not comparisons:
            return self.subject
        return f"{self.subject} {', '.join(comparison.text for comparison in comparisons)}"


def _error_check(canary: RevisionMetrics, thresholds: AnalysisThresholds) -> _Check:
    rate, ceiling = canary.error_rate, thresholds.max_error_rate
    failed = rate > ceiling
    subject = f"error rate {_percent(rate)} ({_count(canary.errors)} of {_count(canary.requests)} requests)"
    return _Check(subject, (_Comparison(f"{'>' if failed else '<='} ceiling {_percent(ceiling)}", failed),))


def _latency_check(
    label: str,
    value: float | None,
    ceiling: float | None,
    reference: float | None,
    max_regression: float,
    stable_compared: bool,
) -> _Check:
    if value is None:
        return _Check(f"{label} p95 unknown (no observations in the window)", ())
    comparisons = []
    if ceiling is not None:
        failed = value > ceiling
        comparisons.append(_Comparison(f"{'>' if failed else '<='} SLO {_ms(ceiling)}", failed))
    if reference is not None:
        allowed = reference * (1 + max_regression)
        failed = value > allowed
        comparisons.append(
            _Comparison(
                f"{'>' if failed else '<='} stable {_ms(reference)} + {max_regression * 100:g}% "
                f"= {_ms(allowed)}",
                failed,
            )
        )
    elif stable_compared:
        comparisons.append(_Comparison(f"not compared with stable (stable {label} p95 unknown)", False))
    return _Check(f"{label} p95 {_ms(value)}", tuple(comparisons))


def _why_not_comparable(stable: RevisionMetrics | None, thresholds: AnalysisThresholds) -> str | None:
    """Why the canary cannot be compared with the stable revision; None when it can."""
    if stable is None:
        return "the stable revision has no series in Prometheus"
    if stable.requests < thresholds.min_requests:
        return (
            f"the stable revision served {_count(stable.requests)} requests, fewer than the "
            f"{thresholds.min_requests} needed to compare"
        )
    return None


def _figures(metrics: RevisionMetrics) -> str:
    ttft = "unknown" if metrics.ttft_p95_seconds is None else _ms(metrics.ttft_p95_seconds)
    itl = "unknown" if metrics.itl_p95_seconds is None else _ms(metrics.itl_p95_seconds)
    return (
        f"{_count(metrics.requests)} requests, error rate {_percent(metrics.error_rate)}, "
        f"TTFT p95 {ttft}, ITL p95 {itl}"
    )


def _ms(seconds: float) -> str:
    milliseconds = seconds * 1000
    if not math.isfinite(milliseconds):
        return f"{milliseconds} ms"
    return f"{milliseconds:.0f} ms" if milliseconds >= 100 else f"{milliseconds:.3g} ms"


def _percent(share: float) -> str:
    return f"{share * 100:.1f}%"


def _count(number: float) -> str:
    return f"{number:.0f}"
