"""The canary analysis live: a real Prometheus (Debian's package) scraping two stand-in replicas of
one InferenceDeployment, one per revision, that run the runtime's own /metrics code.

Why: the verdict is only as good as the PromQL under it -- `increase()` over the window, histogram
quantiles per revision, the `berth_dev_revision` label keeping the two revisions apart, error
responses and aborts counted from the counters the runtime really exports. Each test gives the two
replicas a load, waits until the analysis window holds nothing else, and judges what Prometheus
answers. No control plane is needed: the exporters carry the labels the chart's relabelings give.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from berth_operator.autoscaling.prometheus import PrometheusClient
from berth_operator.autoscaling.signals import SeriesSelector
from berth_operator.rollout.analysis import AnalysisResult, AnalysisThresholds, judge
from berth_operator.rollout.revision_metrics import query_revision
from tests.integration.live_metrics import LiveMetrics, prometheus_binary
from tests.integration.load_exporter import LoadProfile

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        prometheus_binary() is None,
        reason="needs Debian's prometheus package (scripts/test.sh installs it)",
    ),
]

NAMESPACE = "ml"
INSTANCE = "chat"
STABLE = "stable1"
CANARY = "canary1"
WINDOW_SECONDS = 10
SETTLE_SECONDS = WINDOW_SECONDS + 3.0
"""After a load change, the window must start past the first scrape of the new load (1 s) plus the
exporter's tick: only then does it hold the new load alone."""
REQUESTS_PER_SECOND = 10.0
EXPECTED_REQUESTS = REQUESTS_PER_SECOND * WINDOW_SECONDS

SELECTOR = SeriesSelector(namespace=NAMESPACE, instance=INSTANCE)
BASE = LoadProfile(requests_per_second=REQUESTS_PER_SECOND, ttft_seconds=0.1, itl_seconds=0.02)
THRESHOLDS = AnalysisThresholds(
    min_requests=30, max_error_rate=0.05, ttft_p95_seconds=1.0, itl_p95_seconds=None, max_regression=0.2
)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveMetrics]:
    """Prometheus and one stand-in replica per revision of `chat`, stopped by PID after."""
    metrics = LiveMetrics(
        tmp_path_factory.mktemp("rollout-analysis"), NAMESPACE, INSTANCE, revisions=[STABLE, CANARY]
    )
    metrics.start(BASE)
    yield metrics
    metrics.stop()
    print(f"\n----- prometheus log (shown when a test failed) -----\n{metrics.log()}")


async def analyse(
    live: LiveMetrics, stable: LoadProfile, canary: LoadProfile, canary_revision: str = CANARY
) -> AnalysisResult:
    """Give each replica its load, wait until the window holds only that, then judge."""
    live.exporter(STABLE).set_load(stable)
    live.exporter(CANARY).set_load(canary)
    await asyncio.sleep(SETTLE_SECONDS)
    async with PrometheusClient(live.url) as client:
        canary_metrics = await query_revision(client, SELECTOR, canary_revision, WINDOW_SECONDS)
        stable_metrics = await query_revision(client, SELECTOR, STABLE, WINDOW_SECONDS)
    return judge(canary_metrics, stable_metrics, THRESHOLDS, canary_revision=canary_revision)


def assert_close_to_the_load(requests: float) -> None:
    assert EXPECTED_REQUESTS * 0.75 <= requests <= EXPECTED_REQUESTS * 1.25, (requests, EXPECTED_REQUESTS)


async def test_equal_revisions_pass_with_the_counts_of_the_load(live: LiveMetrics) -> None:
    result = await analyse(live, BASE, BASE)
    assert result.verdict == "Pass", result.message
    assert result.canary is not None and result.stable is not None
    for revision in (result.canary, result.stable):
        assert_close_to_the_load(revision.requests)
        assert revision.errors == 0
        # 100 ms falls in the (90 ms, 100 ms] bucket; the quantile interpolates inside it.
        assert revision.ttft_p95_seconds is not None and 0.09 < revision.ttft_p95_seconds <= 0.1
        assert revision.itl_p95_seconds is not None and 0.0175 < revision.itl_p95_seconds <= 0.02
    assert f"{result.canary.requests:.0f} canary requests" in result.message
    assert "error rate 0.0%" in result.message


async def test_a_canary_five_times_slower_to_first_token_fails_on_ttft(live: LiveMetrics) -> None:
    result = await analyse(live, BASE, LoadProfile(**{**BASE.__dict__, "ttft_seconds": 0.5}))
    assert result.verdict == "Fail", result.message
    assert result.canary is not None and result.stable is not None
    assert result.canary.ttft_p95_seconds is not None and 0.45 < result.canary.ttft_p95_seconds <= 0.5
    assert result.stable.ttft_p95_seconds is not None and result.stable.ttft_p95_seconds <= 0.1
    assert result.message.startswith("canary TTFT p95 ")
    assert "> stable " in result.message
    assert "error rate" not in result.message.split(" (")[0]


async def test_a_canary_failing_one_request_in_five_fails_on_error_rate(live: LiveMetrics) -> None:
    result = await analyse(live, BASE, LoadProfile(**{**BASE.__dict__, "error_share": 0.2}))
    assert result.verdict == "Fail", result.message
    assert result.canary is not None and result.stable is not None
    assert_close_to_the_load(result.canary.requests)
    # Half the failures are 500s, half are aborted streams: both count.
    assert 0.15 <= result.canary.error_rate <= 0.25, result.canary
    assert result.stable.errors == 0
    assert result.message.startswith("canary error rate ")
    assert "> ceiling 5.0%" in result.message
    assert "TTFT p95" not in result.message.split(" (")[0]


async def test_a_revision_without_pods_is_inconclusive(live: LiveMetrics) -> None:
    async with PrometheusClient(live.url) as client:
        assert await query_revision(client, SELECTOR, "canary-gone", WINDOW_SECONDS) is None
        stable = await query_revision(client, SELECTOR, STABLE, WINDOW_SECONDS)
    assert stable is not None
    result = judge(None, stable, THRESHOLDS, canary_revision="canary-gone")
    assert result.verdict == "Inconclusive"
    assert result.message == "no metrics for canary revision canary-gone: Prometheus has no series for it"
