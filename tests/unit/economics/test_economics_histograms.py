"""The share of a histogram's observations within a target: exact on a bucket boundary, linear inside
a bucket, a flagged lower bound above the highest finite bucket, nothing without observations."""

from __future__ import annotations

import math

import pytest

from berth_operator.autoscaling.samples import Sample
from berth_operator.economics.histograms import (
    Bucket,
    buckets_from_samples,
    share_within,
    total_observations,
)

INF = math.inf
# 10 observations <= 0.25 s, 20 more in (0.25, 0.3], 10 in (0.3, 0.5], 10 above 0.5 s.
BUCKETS: tuple[Bucket, ...] = ((0.25, 10.0), (0.3, 30.0), (0.5, 40.0), (INF, 50.0))


@pytest.mark.parametrize(
    ("target", "fraction", "lower_bound"),
    [
        (0.3, 30 / 50, False),  # a boundary: exact
        (0.5, 40 / 50, False),
        (0.25, 10 / 50, False),
        (0.275, (10 + 20 * 0.5) / 50, False),  # halfway through (0.25, 0.3]
        (0.4, (30 + 10 * 0.5) / 50, False),  # halfway through (0.3, 0.5]
        (0.1, (10 * 0.1 / 0.25) / 50, False),  # inside the first bucket, whose lower bound is 0
        (1.0, 40 / 50, True),  # above the highest finite bound: only what is known to be under
        (600.0, 40 / 50, True),
    ],
)
def test_share_within_a_target(target: float, fraction: float, lower_bound: bool) -> None:
    share = share_within(BUCKETS, target)
    assert share is not None
    assert share.fraction == pytest.approx(fraction)
    assert share.observations == 50.0
    assert share.lower_bound is lower_bound


def test_order_of_buckets_does_not_matter() -> None:
    share = share_within(tuple(reversed(BUCKETS)), 0.275)
    assert share is not None and share.fraction == pytest.approx(0.4)


def test_a_target_written_in_milliseconds_hits_the_boundary_it_names() -> None:
    # 300 ms / 1000 is the same double as the label "0.3": no interpolation error at a boundary.
    share = share_within(BUCKETS, 300 / 1000)
    assert share is not None and share.fraction == 30 / 50


@pytest.mark.parametrize(
    "buckets",
    [
        (),  # no series
        ((0.25, 0.0), (0.5, 0.0), (INF, 0.0)),  # no observations in the window
        ((0.25, 3.0), (0.5, 4.0)),  # no +Inf bucket: the total is unknown
    ],
)
def test_no_share_without_observations(buckets: tuple[Bucket, ...]) -> None:
    assert share_within(buckets, 0.3) is None


def test_extrapolation_noise_is_made_monotonic_and_clamped() -> None:
    # increase() can leave a higher bound a hair below a lower one, or above the total.
    noisy: tuple[Bucket, ...] = ((0.25, 10.2), (0.3, 10.0), (0.5, 20.4), (INF, 20.0))
    at_boundary = share_within(noisy, 0.3)
    assert at_boundary is not None and at_boundary.fraction == pytest.approx(10.2 / 20)
    above_total = share_within(noisy, 0.5)
    assert above_total is not None and above_total.fraction == 1.0


def test_buckets_from_a_sum_by_le_vector() -> None:
    samples = [
        Sample({"le": "+Inf"}, 50.0, 0.0),
        Sample({"le": "0.5"}, 40.0, 0.0),
        Sample({"le": "0.25"}, 10.0, 0.0),
        Sample({}, 7.0, 0.0),  # no le: not a bucket
        Sample({"le": "0.3"}, math.nan, 0.0),  # NaN: nothing to count
    ]
    buckets = buckets_from_samples(samples)
    assert buckets == ((0.25, 10.0), (0.5, 40.0), (INF, 50.0))
    assert total_observations(buckets) == 50.0
    assert total_observations(buckets[:-1]) is None
