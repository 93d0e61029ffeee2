"""status.coldStart from the kubelet's timestamps: each stage of a replica's start, medians over the
pods of the target revision that became Ready without a restart, the last figures kept meanwhile."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from status_factories import NOW, TARGET, make_deployment, make_inputs, make_pod, routing_every_ready_pod

from berth_operator.api.cold_start import ColdStartStatus
from berth_operator.builders.cold_start import measure_cold_start
from berth_operator.builders.pod import FETCH_CONTAINER, RUNTIME_CONTAINER
from berth_operator.builders.status import derive_status


def stamp(seconds: float) -> str:
    return (NOW + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def started_pod(
    name: str,
    *,
    scheduled: float,
    fetch: tuple[float, float] | None,
    runtime_started: float,
    ready: float | None,
    restarts: int = 0,
    revision: str = TARGET,
) -> dict[str, Any]:
    """A pod created at NOW whose stages happened at these offsets (seconds)."""
    conditions = [{"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp(scheduled)}]
    init = []
    if fetch is not None:
        init.append(
            {
                "name": FETCH_CONTAINER,
                "state": {
                    "terminated": {"exitCode": 0, "startedAt": stamp(fetch[0]), "finishedAt": stamp(fetch[1])}
                },
            }
        )
    pod = make_pod(
        name,
        ready=ready is not None,
        revision=revision,
        conditions=conditions,
        initContainerStatuses=init,
        containerStatuses=[
            {
                "name": RUNTIME_CONTAINER,
                "restartCount": restarts,
                "state": {"running": {"startedAt": stamp(runtime_started)}},
            }
        ],
    )
    pod["metadata"]["creationTimestamp"] = stamp(0)
    if ready is not None:
        pod["status"]["conditions"][0]["lastTransitionTime"] = stamp(ready)
    return pod


def test_each_stage_is_the_median_over_the_pods_that_became_ready() -> None:
    pods = [
        started_pod("a", scheduled=1, fetch=(3, 33), runtime_started=35, ready=95),
        started_pod("b", scheduled=2, fetch=(4, 24), runtime_started=26, ready=66),
        started_pod("c", scheduled=1, fetch=(5, 45), runtime_started=47, ready=147),
    ]
    measured = measure_cold_start(pods, TARGET, None)
    assert measured == ColdStartStatus(
        revision=TARGET,
        pods=3,
        scheduling_seconds=1,
        download_seconds=30,
        startup_seconds=60,
        total_seconds=95,
        slowest_seconds=147,
    )


def test_pods_not_ready_restarted_or_of_another_revision_do_not_count() -> None:
    pods = [
        started_pod("ready", scheduled=1, fetch=(2, 12), runtime_started=13, ready=43),
        started_pod("loading", scheduled=1, fetch=(2, 12), runtime_started=13, ready=None),
        started_pod("restarted", scheduled=1, fetch=(2, 12), runtime_started=200, ready=230, restarts=1),
        started_pod("old", scheduled=1, fetch=(2, 500), runtime_started=501, ready=900, revision="rev-old"),
    ]
    measured = measure_cold_start(pods, TARGET, None)
    assert measured is not None
    assert (measured.pods, measured.total_seconds, measured.startup_seconds) == (1, 43, 30)


def test_a_source_without_a_download_has_no_download_figure() -> None:
    pods = [started_pod("a", scheduled=1, fetch=None, runtime_started=3, ready=33)]
    measured = measure_cold_start(pods, TARGET, None)
    assert measured is not None and measured.download_seconds is None and measured.startup_seconds == 30


def test_the_last_figures_stay_while_no_pod_can_be_measured() -> None:
    previous = ColdStartStatus(
        revision=TARGET,
        pods=2,
        scheduling_seconds=1,
        startup_seconds=40,
        total_seconds=70,
        slowest_seconds=80,
    )
    loading = [
        started_pod("new", scheduled=1, fetch=None, runtime_started=3, ready=None, revision="rev-next")
    ]
    assert measure_cold_start([], TARGET, previous) == previous
    assert measure_cold_start(loading, "rev-next", previous) == previous


def test_the_status_carries_it_in_wire_form() -> None:
    pods = [started_pod("a", scheduled=2, fetch=(3, 13), runtime_started=14, ready=74)]
    status = derive_status(
        make_inputs(make_deployment(1, 1, 1), pods, desired=1, endpoint_slices=routing_every_ready_pod(pods))
    )
    assert status["coldStart"] == {
        "revision": TARGET,
        "pods": 1,
        "schedulingSeconds": 2.0,
        "downloadSeconds": 10.0,
        "startupSeconds": 60.0,
        "totalSeconds": 74.0,
        "slowestSeconds": 74.0,
    }
