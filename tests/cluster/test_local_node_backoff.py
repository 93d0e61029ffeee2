"""The local node's crash-loop back-off, on a fake clock: the kubelet's 0, 10, 20, ... 300 s."""

from __future__ import annotations

import pytest

from tests.cluster.local_node.backoff import CrashLoopBackOff, go_duration


def _delays(backoff: CrashLoopBackOff, exits: int, run_seconds: float = 1.0) -> list[float]:
    """Waits before each restart when every run lasts ``run_seconds``."""
    clock, waits = 0.0, []
    for _ in range(exits):
        clock += run_seconds  # the container runs, then exits at `clock`
        finished = clock
        wait = backoff.remaining(finished, clock)
        waits.append(wait)
        clock += wait
        assert backoff.remaining(finished, clock) == 0
        backoff.record_restart(finished, clock)
    return waits


def test_first_exit_restarts_at_once_then_the_delay_doubles_to_five_minutes() -> None:
    assert _delays(CrashLoopBackOff(), 9) == [0, 10, 20, 40, 80, 160, 300, 300, 300]


def test_a_test_sized_base_keeps_the_same_shape() -> None:
    assert _delays(CrashLoopBackOff(initial_seconds=1, maximum_seconds=4), 6) == [0, 1, 2, 4, 4, 4]


def test_the_wait_counts_from_the_exit_not_from_the_check() -> None:
    backoff = CrashLoopBackOff(initial_seconds=10)
    backoff.record_restart(finished_at=0.0, now=0.0)
    assert backoff.remaining(finished_at=100.0, now=103.0) == pytest.approx(7.0)


def test_a_container_stable_for_twice_the_maximum_starts_over() -> None:
    backoff = CrashLoopBackOff(initial_seconds=10, maximum_seconds=300)
    _delays(backoff, 5)  # delay is now 160 s
    assert backoff.delay_seconds == 160
    last = backoff.last_update or 0.0
    assert backoff.remaining(last + 601, last + 601) == 0  # expired: no wait
    backoff.record_restart(last + 601, last + 601)
    assert backoff.delay_seconds == 10


def test_nonsense_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        CrashLoopBackOff(initial_seconds=0)
    with pytest.raises(ValueError, match="below the initial delay"):
        CrashLoopBackOff(initial_seconds=10, maximum_seconds=5)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(1, "1s"), (10, "10s"), (0.5, "500ms"), (1.5, "1.5s"), (80, "1m20s"), (300, "5m0s"), (3725, "1h2m5s")],
)
def test_durations_print_as_go_prints_them(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text
