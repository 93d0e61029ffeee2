"""Pod problems carry the cause a person needs: the container's termination message (bounded), and
for a pod stuck before its first container, the kubelet's latest start-failure Warning Event."""

from __future__ import annotations

from typing import Any

import pytest

from berth_operator.builders.pod_problems import MESSAGE_LIMIT, bounded, is_awaiting_start, pod_problem

MOUNT_MESSAGE = 'MountVolume.SetUp failed for volume "api-key" : secret "chat-key" not found'


def _container(name: str, state: dict[str, Any], last: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "state": state, "lastState": last or {}}


def _waiting(reason: str) -> dict[str, Any]:
    return {"waiting": {"reason": reason}}


def _pod(
    name: str = "chat-1",
    *,
    init: list[dict[str, Any]] | None = None,
    containers: list[dict[str, Any]] | None = None,
    phase: str = "Pending",
    uid: str = "uid-1",
    **metadata: Any,
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "containerStatuses": containers or []}
    if init is not None:
        status["initContainerStatuses"] = init
    return {"metadata": {"name": name, "uid": uid, **metadata}, "status": status}


def _event(
    reason: str = "FailedMount",
    message: str = MOUNT_MESSAGE,
    pod: str = "chat-1",
    uid: str | None = "uid-1",
    last: str = "2026-01-01T12:00:00Z",
    event_type: str = "Warning",
) -> dict[str, Any]:
    involved: dict[str, Any] = {"kind": "Pod", "name": pod}
    if uid is not None:
        involved["uid"] = uid
    return {
        "type": event_type,
        "reason": reason,
        "message": message,
        "involvedObject": involved,
        "lastTimestamp": last,
    }


CREATING = _pod(containers=[_container("runtime", _waiting("ContainerCreating"))])
INITIALIZING = _pod(
    init=[_container("fetch-model", _waiting("PodInitializing"))],
    containers=[_container("runtime", _waiting("PodInitializing"))],
)


def test_crash_loop_names_the_termination_message() -> None:
    pod = _pod(
        phase="Running",
        containers=[
            _container(
                "runtime",
                {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                {"terminated": {"exitCode": 1, "reason": "Error", "message": "CUDA error: out of memory"}},
            )
        ],
    )
    problem = pod_problem(pod)
    assert problem is not None
    assert problem.message == (
        "pod chat-1 container runtime: back-off 40s; last exit code 1 (Error): CUDA error: out of memory"
    )


def test_a_long_termination_message_keeps_its_end_on_one_line() -> None:
    traceback = "Traceback (most recent call last):\n" + "  frame\n" * 200 + "torch.OutOfMemoryError: CUDA"
    pod = _pod(
        phase="Running",
        containers=[
            _container(
                "runtime",
                _waiting("CrashLoopBackOff"),
                {"terminated": {"exitCode": 1, "message": traceback}},
            )
        ],
    )
    problem = pod_problem(pod)
    assert problem is not None
    detail = problem.message.split("last exit code 1 (Error): ", 1)[1]
    assert len(detail) == MESSAGE_LIMIT
    assert detail.startswith("...") and detail.endswith("torch.OutOfMemoryError: CUDA")
    assert "\n" not in problem.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("short", "short"),
        ("two\n  lines", "two lines"),
        ("x" * 12, "...xxxxxxx"),
    ],
)
def test_bounded(text: str, expected: str) -> None:
    assert bounded(text, limit=10) == expected


def test_a_failed_pod_without_a_message_says_how_its_container_ended() -> None:
    pod = _pod(
        phase="Failed",
        containers=[
            _container(
                "runtime", {"terminated": {"exitCode": 3, "reason": "Error", "message": "bad weights"}}
            )
        ],
    )
    problem = pod_problem(pod)
    assert problem is not None
    assert (problem.reason, problem.message) == (
        "PodFailed",
        "pod chat-1 failed: last exit code 3 (Error): bad weights",
    )


@pytest.mark.parametrize(
    ("pod", "awaiting"),
    [
        pytest.param(CREATING, True, id="container-creating"),
        pytest.param(INITIALIZING, True, id="pod-initializing"),
        pytest.param(_pod(), False, id="no-container-status-yet"),
        pytest.param(
            _pod(
                init=[_container("fetch-model", {"running": {}})],
                containers=[_container("runtime", _waiting("PodInitializing"))],
            ),
            False,
            id="init-container-running",
        ),
        pytest.param(
            _pod(containers=[_container("runtime", _waiting("ImagePullBackOff"))]), False, id="other-wait"
        ),
        pytest.param(
            {**CREATING, "metadata": {"name": "chat-1", "deletionTimestamp": "2026-01-01T00:00:00Z"}},
            False,
            id="being-deleted",
        ),
    ],
)
def test_awaiting_start(pod: dict[str, Any], awaiting: bool) -> None:
    assert is_awaiting_start(pod) is awaiting


@pytest.mark.parametrize(
    ("pod", "events", "expected"),
    [
        pytest.param(
            CREATING, [_event()], ("FailedMount", f"pod chat-1: {MOUNT_MESSAGE}"), id="failed-mount"
        ),
        pytest.param(
            INITIALIZING,
            [_event("FailedAttachVolume", "Multi-Attach error for volume pvc-1")],
            ("FailedAttachVolume", "pod chat-1: Multi-Attach error for volume pvc-1"),
            id="failed-attach-behind-init",
        ),
        pytest.param(
            CREATING,
            [
                _event("FailedMount", "older", last="2026-01-01T12:00:00Z"),
                _event("FailedCreatePodSandBox", "newer", last="2026-01-01T12:00:05Z"),
            ],
            ("FailedCreatePodSandBox", "pod chat-1: newer"),
            id="latest-wins",
        ),
        pytest.param(CREATING, [], None, id="no-events-merely-starting"),
        pytest.param(CREATING, [_event(pod="chat-2")], None, id="another-pods-event"),
        pytest.param(CREATING, [_event(uid="uid-earlier-pod")], None, id="same-name-earlier-pod"),
        pytest.param(
            CREATING, [_event(uid=None)], ("FailedMount", f"pod chat-1: {MOUNT_MESSAGE}"), id="no-uid"
        ),
        pytest.param(CREATING, [_event(event_type="Normal")], None, id="normal-event"),
        pytest.param(CREATING, [_event("BackOff", "back-off pulling")], None, id="other-reason"),
        pytest.param(
            _pod(phase="Running", containers=[_container("runtime", {"running": {}})]),
            [_event()],
            None,
            id="stale-event-of-a-started-pod",
        ),
    ],
)
def test_start_failure_events_explain_a_pod_awaiting_its_first_container(
    pod: dict[str, Any], events: list[dict[str, Any]], expected: tuple[str, str] | None
) -> None:
    problem = pod_problem(pod, events)
    assert ((problem.reason, problem.message) if problem else None) == expected


def test_an_event_message_is_bounded() -> None:
    problem = pod_problem(CREATING, [_event("FailedCreatePodSandBox", "cni: " + "x" * 1000)])
    assert problem is not None
    assert len(problem.message) == len("pod chat-1: ") + MESSAGE_LIMIT


def _restarted(ready: bool, restarts: int, exit_code: int, reason: str) -> dict[str, Any]:
    return {
        "name": "runtime",
        "ready": ready,
        "restartCount": restarts,
        "state": {"running": {"startedAt": "2026-01-01T00:00:05Z"}},
        "lastState": {"terminated": {"exitCode": exit_code, "reason": reason, "message": "CUDA error"}},
    }


def test_a_container_restarted_after_a_crash_is_a_problem_until_it_is_ready_again() -> None:
    # The kubelet restarts a first crash at once: running, not ready, the crash in lastState.
    problem = pod_problem(_pod(containers=[_restarted(False, 1, 137, "Error")], phase="Running"))
    assert problem is not None
    assert problem.reason == "ContainerRestarted"
    assert "restart 1" in problem.message and "last exit code 137 (Error): CUDA error" in problem.message
    assert pod_problem(_pod(containers=[_restarted(True, 1, 137, "Error")], phase="Running")) is None
    completed = _restarted(False, 1, 0, "Completed")
    assert pod_problem(_pod(containers=[completed], phase="Running")) is None


TP_REFUSAL = (  # the runtime's words (tests/runtime/test_tensor_parallel_startup.py)
    "python -m berth_runtime serve: error: invalid tensor_parallel_size=3 (--tensor-parallel-size): this "
    "model has 4 attention heads and 2 KV heads (intermediate size 128), and 4 attention heads do not "
    "divide by 3; accepted values for this model: 1, 2, 4"
)


@pytest.mark.parametrize(
    ("state", "last"),
    [
        # back-off after the refusal
        (
            {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}},
            {"terminated": {"exitCode": 2, "reason": "Error", "message": TP_REFUSAL}},
        ),
        # the kubelet restarted the first refusal at once
        (
            {"running": {"startedAt": "2026-01-01T00:00:05Z"}},
            {"terminated": {"exitCode": 2, "reason": "Error", "message": TP_REFUSAL}},
        ),
        # it has just ended
        ({"terminated": {"exitCode": 2, "reason": "Error", "message": TP_REFUSAL}}, None),
    ],
)
def test_the_runtimes_refusal_is_a_configuration_problem_with_its_message(
    state: dict[str, Any], last: dict[str, Any] | None
) -> None:
    container = {**_container("runtime", state, last), "restartCount": 1, "ready": False}
    problem = pod_problem(_pod(containers=[container], phase="Running"))
    assert problem is not None
    assert problem.reason == "ConfigurationRefused"
    assert problem.message == (
        "pod chat-1 container runtime refused its configuration (exit code 2; restarting will not "
        f"help): {TP_REFUSAL}"
    )


def test_a_refusing_fetch_init_container_is_named_as_such() -> None:
    init = _container(
        "fetch-model",
        {"waiting": {"reason": "CrashLoopBackOff"}},
        {"terminated": {"exitCode": 2, "message": "fetch: error: --cache-budget-bytes 0: expected ..."}},
    )
    problem = pod_problem(_pod(init=[init], containers=[_container("runtime", _waiting("PodInitializing"))]))
    assert problem is not None and problem.reason == "ConfigurationRefused"
    assert problem.message.startswith("pod chat-1 init container fetch-model refused its configuration")


def test_other_exit_codes_and_ready_containers_are_not_refusals() -> None:
    crash = _container(
        "runtime",
        {"waiting": {"reason": "CrashLoopBackOff"}},
        {"terminated": {"exitCode": 1, "message": "x"}},
    )
    problem = pod_problem(_pod(containers=[crash], phase="Running"))
    assert problem is not None and problem.reason == "CrashLoopBackOff"
    ready = {**_restarted(True, 1, 2, "Error")}
    assert pod_problem(_pod(containers=[ready], phase="Running")) is None
