"""The canary analysis: the per-revision PromQL, its parsing, and the verdict with its numbers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from berth_operator.autoscaling.errors import PrometheusUnavailable
from berth_operator.autoscaling.samples import QueryResult, Sample
from berth_operator.autoscaling.signals import SeriesSelector
from berth_operator.builders.labels import REVISION_LABEL
from berth_operator.rollout.analysis import (
    REVISION_SERIES_LABEL,
    AnalysisThresholds,
    RevisionMetrics,
    judge,
    parse_revision_metrics,
    revision_queries,
)
from berth_operator.rollout.revision_metrics import query_revision
from tests.cluster.pod_targets import meta_label_name
from tests.cluster.prometheus import chart_pod_monitor

SELECTOR = SeriesSelector(namespace="ml", instance="chat")
THRESHOLDS = AnalysisThresholds(
    min_requests=20, max_error_rate=0.05, ttft_p95_seconds=0.5, itl_p95_seconds=0.05, max_regression=0.2
)
NO_CEILINGS = AnalysisThresholds(
    min_requests=20, max_error_rate=0.05, ttft_p95_seconds=None, itl_p95_seconds=None, max_regression=0.2
)


def metrics(
    requests: float = 64, errors: float = 0, ttft: float | None = 0.12, itl: float | None = 0.02
) -> RevisionMetrics:
    return RevisionMetrics(requests=requests, errors=errors, ttft_p95_seconds=ttft, itl_p95_seconds=itl)


STABLE = metrics(requests=80, ttft=0.11, itl=0.021)


@dataclass(frozen=True)
class Case:
    id: str
    canary: RevisionMetrics | None
    stable: RevisionMetrics | None
    verdict: str
    says: tuple[str, ...]
    thresholds: AnalysisThresholds = THRESHOLDS
    never_says: tuple[str, ...] = field(default=())


CASES = [
    Case(
        "no canary series",
        None,
        STABLE,
        "Inconclusive",
        ("no metrics for canary revision 7c9f5d",),
    ),
    Case(
        "too few canary requests, however bad they look",
        metrics(requests=12, errors=12, ttft=9.0),
        STABLE,
        "Inconclusive",
        ("12 canary requests", "fewer than the 20 needed"),
    ),
    Case(
        "within every threshold",
        metrics(requests=64, errors=1),
        STABLE,
        "Pass",
        (
            "error rate 1.6% (1 of 64 requests) <= ceiling 5.0%",
            "TTFT p95 120 ms <= SLO 500 ms, <= stable 110 ms + 20% = 132 ms",
            "ITL p95 20 ms <= SLO 50 ms, <= stable 21 ms + 20% = 25.2 ms",
            "64 canary requests",
            "stable: 80 requests, error rate 0.0%, TTFT p95 110 ms, ITL p95 21 ms",
        ),
    ),
    Case(
        "TTFT above the SLO",
        metrics(ttft=0.812),
        metrics(requests=80, ttft=0.12),
        "Fail",
        (
            "canary TTFT p95 812 ms > SLO 500 ms",
            "stable: 80 requests",
            "TTFT p95 120 ms",
            "64 canary requests",
        ),
        never_says=("ITL p95 20 ms <=",),
    ),
    Case(
        "ITL above the SLO",
        metrics(itl=0.08),
        None,
        "Fail",
        ("canary ITL p95 80 ms > SLO 50 ms", "no comparison with stable"),
    ),
    Case(
        "TTFT regressed against stable, under the SLO",
        metrics(ttft=0.3),
        metrics(requests=80, ttft=0.1),
        "Fail",
        ("canary TTFT p95 300 ms > stable 100 ms + 20% = 120 ms", "64 canary requests"),
        never_says=("> SLO",),
    ),
    Case(
        "ITL regressed against stable, no SLO",
        metrics(itl=0.04),
        metrics(requests=80, itl=0.02),
        "Fail",
        ("canary ITL p95 40 ms > stable 20 ms + 20% = 24 ms",),
        NO_CEILINGS,
    ),
    Case(
        "error rate above the ceiling",
        metrics(requests=64, errors=13),
        STABLE,
        "Fail",
        ("canary error rate 20.3% (13 of 64 requests) > ceiling 5.0%", "stable: 80 requests"),
    ),
    Case(
        "error rate exactly at the ceiling passes",
        metrics(requests=100, errors=5),
        STABLE,
        "Pass",
        ("error rate 5.0% (5 of 100 requests) <= ceiling 5.0%",),
    ),
    Case(
        "error rate is judged by the ceiling alone, not against a clean stable",
        metrics(requests=100, errors=4),
        metrics(requests=1000, errors=0),
        "Pass",
        ("error rate 4.0% (4 of 100 requests) <= ceiling 5.0%",),
    ),
    Case(
        "latency exactly at stable plus the tolerance passes",
        metrics(ttft=0.5, itl=0.02),
        metrics(requests=80, ttft=0.25, itl=0.02),
        "Pass",
        ("TTFT p95 500 ms <= stable 250 ms + 100% = 500 ms",),
        AnalysisThresholds(
            min_requests=20,
            max_error_rate=0.05,
            ttft_p95_seconds=None,
            itl_p95_seconds=None,
            max_regression=1.0,
        ),
    ),
    Case(
        "every breach is named",
        metrics(requests=50, errors=10, ttft=0.9, itl=0.2),
        metrics(requests=80, ttft=0.1, itl=0.02),
        "Fail",
        (
            "error rate 20.0% (10 of 50 requests) > ceiling 5.0%",
            "TTFT p95 900 ms > SLO 500 ms, > stable 100 ms + 20% = 120 ms",
            "ITL p95 200 ms > SLO 50 ms, > stable 20 ms + 20% = 24 ms",
        ),
    ),
    Case(
        "no stable series: the comparison is skipped, not failed",
        metrics(ttft=0.4),
        None,
        "Pass",
        ("TTFT p95 400 ms <= SLO 500 ms", "no comparison with stable: the stable revision has no series"),
        never_says=("<= stable",),
    ),
    Case(
        "stable with too few requests is not compared with",
        metrics(ttft=0.45),
        metrics(requests=3, ttft=0.05),
        "Pass",
        ("no comparison with stable: the stable revision served 3 requests, fewer than the 20 needed",),
        never_says=("stable 50 ms",),
    ),
    Case(
        "stable without a p95 of its own",
        metrics(ttft=0.45),
        metrics(requests=80, ttft=None),
        "Pass",
        ("TTFT p95 450 ms <= SLO 500 ms, not compared with stable (stable TTFT p95 unknown)",),
    ),
    Case(
        "a canary with no finished request in the window has no latency to breach",
        metrics(requests=30, ttft=None, itl=None),
        STABLE,
        "Pass",
        ("TTFT p95 unknown (no observations in the window)", "ITL p95 unknown"),
    ),
    Case(
        "a p95 in the +Inf bucket breaches the SLO",
        metrics(ttft=math.inf),
        STABLE,
        "Fail",
        ("TTFT p95 inf ms > SLO 500 ms",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_judge(case: Case) -> None:
    result = judge(case.canary, case.stable, case.thresholds, canary_revision="7c9f5d")
    assert result.verdict == case.verdict, result.message
    for fragment in case.says:
        assert fragment in result.message
    for fragment in case.never_says:
        assert fragment not in result.message
    assert "\n" not in result.message
    assert (result.canary, result.stable) == (case.canary, case.stable)


def test_a_canary_without_metrics_is_named_when_the_revision_is_not_given() -> None:
    assert judge(None, None, THRESHOLDS).message.startswith("no metrics for the canary revision")


@pytest.mark.parametrize(
    ("requests", "errors", "rate"),
    [(0, 0, 0.0), (0, 3, 0.0), (64, 16, 0.25), (10, 12, 1.0), (10, -1, 0.0)],
)
def test_error_rate(requests: float, errors: float, rate: float) -> None:
    assert metrics(requests=requests, errors=errors).error_rate == rate


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"min_requests": 0}, "min_requests: 0 must be at least 1"),
        ({"max_error_rate": 1.5}, "max_error_rate: 1.5 must be a share in [0, 1]"),
        ({"ttft_p95_seconds": 0.0}, "ttft_p95_seconds: 0.0 must be a positive number of seconds"),
        ({"itl_p95_seconds": math.nan}, "itl_p95_seconds: nan must be a positive number"),
        ({"max_regression": -0.1}, "max_regression: -0.1 must be a fraction of at least 0"),
    ],
)
def test_thresholds_refuse_values_that_cannot_judge(changes: dict[str, float], message: str) -> None:
    values: dict[str, float | None] = {
        "min_requests": 20,
        "max_error_rate": 0.05,
        "ttft_p95_seconds": 0.5,
        "itl_p95_seconds": None,
        "max_regression": 0.2,
    }
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        AnalysisThresholds(**{**values, **changes})  # type: ignore[arg-type]


def test_queries_select_one_revision_of_the_deployment() -> None:
    queries = revision_queries(SELECTOR, "7c9f5d", 30)
    match = '{namespace="ml",app_kubernetes_io_instance="chat",berth_dev_revision="7c9f5d"}'
    assert queries == {
        "http_requests": f"sum(increase(berth:http_requests_total{match}[30s]))",
        "http_errors": (
            "sum(increase(berth:http_requests_total"
            '{namespace="ml",app_kubernetes_io_instance="chat",berth_dev_revision="7c9f5d",status!~"2.."}'
            "[30s]))"
        ),
        "finished_requests": f"sum(increase(vllm:request_success_total{match}[30s]))",
        "aborted_requests": (
            "sum(increase(vllm:request_success_total"
            '{namespace="ml",app_kubernetes_io_instance="chat",berth_dev_revision="7c9f5d",'
            'finished_reason="abort"}[30s]))'
        ),
        "ttft_p95_seconds": (
            "histogram_quantile(0.95, sum by (le) "
            f"(rate(vllm:time_to_first_token_seconds_bucket{match}[30s])))"
        ),
        "itl_p95_seconds": (
            "histogram_quantile(0.95, sum by (le) "
            f"(rate(vllm:inter_token_latency_seconds_bucket{match}[30s])))"
        ),
        "reporting_pods": f"count(max_over_time(vllm:num_requests_running{match}[30s]))",
    }


def test_queries_escape_the_revision_and_take_another_label() -> None:
    queries = revision_queries(SELECTOR, 'a"b\\c', 10, revision_label="rev")
    assert 'rev="a\\"b\\\\c"' in queries["http_requests"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("7c9f5d", 1, "berth_dev_revision"), "window_seconds: 1 must be at least 2 seconds"),
        (("", 30, "berth_dev_revision"), "revision: must not be empty"),
        (
            ("7c9f5d", 30, "berth.dev/revision"),
            "revision_label: 'berth.dev/revision' is not a Prometheus label",
        ),
    ],
)
def test_queries_refuse_what_would_select_nothing(arguments: tuple[str, int, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        revision_queries(SELECTOR, *arguments)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param({}, None, id="no series at all"),
        pytest.param(
            {"reporting_pods": 2}, metrics(requests=0, ttft=None, itl=None), id="pods without traffic"
        ),
        pytest.param(
            {
                "reporting_pods": 2,
                "http_requests": 100,
                "http_errors": 3,
                "finished_requests": 97,
                "aborted_requests": 2,
                "ttft_p95_seconds": 0.2,
                "itl_p95_seconds": 0.03,
            },
            metrics(requests=100, errors=5, ttft=0.2, itl=0.03),
            id="errors are non-2xx responses plus aborts",
        ),
        pytest.param(
            {"finished_requests": 40, "aborted_requests": 4, "ttft_p95_seconds": 0.2},
            metrics(requests=40, errors=4, ttft=0.2, itl=None),
            id="without the HTTP counter, finished requests and their aborts",
        ),
        pytest.param(
            {"http_requests": 10, "http_errors": 8, "aborted_requests": 8},
            metrics(requests=10, errors=10, ttft=None, itl=None),
            id="a request counted twice is capped",
        ),
        pytest.param(
            {"http_requests": 10, "ttft_p95_seconds": math.nan, "itl_p95_seconds": math.nan},
            metrics(requests=10, errors=0, ttft=None, itl=None),
            id="a quantile of nothing is no reading",
        ),
    ],
)
def test_parse_revision_metrics(values: dict[str, float], expected: RevisionMetrics | None) -> None:
    assert parse_revision_metrics(values) == expected


@dataclass
class FakePrometheus:
    """An in-memory `InstantQuerier`: answers by query text, empty for anything else."""

    answers: dict[str, float]
    asked: list[tuple[str, float | None]] = field(default_factory=list)
    failure: Exception | None = None

    async def query(self, promql: str, at: float | None = None) -> QueryResult:
        self.asked.append((promql, at))
        if self.failure is not None:
            raise self.failure
        if promql not in self.answers:
            return QueryResult(promql, ())
        return QueryResult(promql, (Sample({}, self.answers[promql], at or 0.0),))


async def test_query_revision_reads_every_figure_at_one_time() -> None:
    queries = revision_queries(SELECTOR, "canary1", 15)
    prometheus = FakePrometheus(
        {
            queries["http_requests"]: 150.0,
            queries["http_errors"]: 6.0,
            queries["aborted_requests"]: 3.0,
            queries["ttft_p95_seconds"]: 0.25,
            queries["itl_p95_seconds"]: math.nan,
        }
    )
    result = await query_revision(prometheus, SELECTOR, "canary1", 15, at=1_800_000_000.0)
    assert result == metrics(requests=150, errors=9, ttft=0.25, itl=None)
    assert sorted(promql for promql, _ in prometheus.asked) == sorted(queries.values())
    assert {at for _, at in prometheus.asked} == {1_800_000_000.0}


async def test_query_revision_without_series_is_none() -> None:
    assert await query_revision(FakePrometheus({}), SELECTOR, "gone", 15) is None


async def test_an_unknown_revision_is_none_without_asking() -> None:
    prometheus = FakePrometheus({})
    assert await query_revision(prometheus, SELECTOR, "", 15) is None
    assert prometheus.asked == []


async def test_query_revision_lets_prometheus_errors_through() -> None:
    failing = FakePrometheus(
        {}, failure=PrometheusUnavailable("http://prometheus:9090", "connection refused")
    )
    with pytest.raises(PrometheusUnavailable, match="connection refused"):
        await query_revision(failing, SELECTOR, "canary1", 15)


def test_the_chart_gives_series_the_revision_label_the_analysis_selects_on() -> None:
    _, relabelings = chart_pod_monitor()
    assert {
        "action": "replace",
        "sourceLabels": [f"__meta_kubernetes_pod_label_{meta_label_name(REVISION_LABEL)}"],
        "targetLabel": REVISION_SERIES_LABEL,
    } in relabelings
