"""Pod status derivation of the local node: the kubelet's phase table, conditions and shapes."""

from __future__ import annotations

import pytest

from tests.cluster.local_node.records import ContainerSnapshot, Running, Terminated, Waiting
from tests.cluster.local_node.status import PodView, container_status, merge_conditions, pod_phase, pod_status

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:00:05Z"
RUNNING = Running(T0)
EXIT_0 = Terminated(0, "Completed", T0, T1, "berth-local://1")
EXIT_3 = Terminated(3, "Error", T0, T1, "berth-local://2", message="boom")


def _c(
    state: object, last: Terminated | None = None, ready: bool = False, name: str = "c"
) -> ContainerSnapshot:
    return ContainerSnapshot(name=name, image="img", state=state, last_state=last, ready=ready)  # type: ignore[arg-type]


def _view(
    main: list[ContainerSnapshot], init: list[ContainerSnapshot] | None = None, **kw: object
) -> PodView:
    fields: dict[str, object] = {"restart_policy": "Always", "sandbox_ready": True, "host_ip": "10.0.0.1"}
    fields.update(kw)
    return PodView(init=tuple(init or []), main=tuple(main), start_time=T0, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("policy", "main", "init", "terminal", "phase"),
    [
        ("Always", [_c(Waiting("ContainerCreating"))], [], False, "Pending"),
        ("Always", [_c(RUNNING)], [], False, "Running"),
        ("Always", [_c(Waiting("PodInitializing"))], [_c(RUNNING, name="i")], False, "Pending"),
        # an init container crash-looping keeps the pod Pending unless the policy is Never
        (
            "Always",
            [_c(Waiting("PodInitializing"))],
            [_c(Waiting("CrashLoopBackOff"), EXIT_3, name="i")],
            False,
            "Pending",
        ),
        ("Never", [_c(Waiting("PodInitializing"))], [_c(EXIT_3, name="i")], False, "Failed"),
        # a crash-looping container: waiting after an exit counts as stopped -> Running under Always
        ("Always", [_c(Waiting("CrashLoopBackOff"), EXIT_3)], [], False, "Running"),
        ("Always", [_c(EXIT_0)], [], False, "Running"),  # about to restart
        ("OnFailure", [_c(EXIT_0)], [], False, "Succeeded"),
        ("OnFailure", [_c(EXIT_3)], [], False, "Running"),  # will restart
        ("Never", [_c(EXIT_3)], [], False, "Failed"),
        ("Never", [_c(EXIT_0), _c(EXIT_3, name="d")], [], False, "Failed"),
        ("Never", [_c(EXIT_0), _c(RUNNING, name="d")], [], False, "Running"),
        # deleted and stopped: final whatever the policy
        ("Always", [_c(Terminated(143, "Error", T0, T1, "x"))], [], True, "Failed"),
        ("Always", [_c(EXIT_0)], [], True, "Succeeded"),
    ],
)
def test_phase_follows_the_kubelets_get_phase(
    policy: str, main: list[ContainerSnapshot], init: list[ContainerSnapshot], terminal: bool, phase: str
) -> None:
    assert pod_phase(_view(main, init, restart_policy=policy, terminal=terminal)) == phase


def test_conditions_name_the_containers_that_hold_the_pod_back() -> None:
    view = _view(
        [_c(RUNNING, ready=True, name="a"), _c(RUNNING, name="b")],
        [_c(EXIT_0, name="fetch")],
    )
    status = pod_status(view, [], T1)
    conditions = {condition["type"]: condition for condition in status["conditions"]}
    assert conditions["Initialized"]["status"] == "True"
    assert conditions["PodReadyToStartContainers"]["status"] == "True"
    for kind in ("Ready", "ContainersReady"):
        assert conditions[kind]["status"] == "False"
        assert conditions[kind]["reason"] == "ContainersNotReady"
        assert conditions[kind]["message"] == "containers with unready status: [b]"
    pending = pod_status(
        _view(
            [_c(Waiting("PodInitializing"))],
            [_c(RUNNING, name="x"), _c(Waiting("PodInitializing"), name="y")],
        ),
        [],
        T1,
    )
    initialized = next(c for c in pending["conditions"] if c["type"] == "Initialized")
    assert initialized["message"] == "containers with incomplete status: [x y]"
    assert initialized["reason"] == "ContainersNotInitialized"


def test_ready_when_every_container_is_ready() -> None:
    status = pod_status(_view([_c(RUNNING, ready=True)]), [], T1)
    assert all(condition["status"] == "True" for condition in status["conditions"])
    assert status["phase"] == "Running"


def test_transition_times_hold_while_a_condition_holds_and_foreign_conditions_are_kept() -> None:
    scheduled = {"type": "PodScheduled", "status": "True", "lastTransitionTime": "earlier"}
    first = merge_conditions([scheduled], [("Ready", "False", "ContainersNotReady", "m")], T0)
    again = merge_conditions(first, [("Ready", "False", "ContainersNotReady", "m2")], T1)
    flipped = merge_conditions(again, [("Ready", "True", "", "")], "2026-01-01T00:01:00Z")
    assert [c["type"] for c in first] == ["Ready", "PodScheduled"]
    assert again[0]["lastTransitionTime"] == T0 and again[0]["message"] == "m2"
    assert flipped[0]["lastTransitionTime"] == "2026-01-01T00:01:00Z"
    assert "reason" not in flipped[0]
    assert flipped[1] == scheduled


def test_container_status_shapes() -> None:
    crashing = container_status(
        ContainerSnapshot(
            "c", "img", Waiting("CrashLoopBackOff", "back-off 10s ..."), EXIT_3, restart_count=2
        )
    )
    assert crashing["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s ..."}}
    assert crashing["lastState"] == {
        "terminated": {
            "exitCode": 3,
            "reason": "Error",
            "message": "boom",
            "startedAt": T0,
            "finishedAt": T1,
            "containerID": "berth-local://2",
        }
    }
    assert crashing["restartCount"] == 2 and crashing["ready"] is False
    fresh = container_status(ContainerSnapshot("c", "img", Waiting("ContainerCreating")))
    assert fresh["lastState"] == {} and "containerID" not in fresh


def test_the_pod_ip_appears_once_the_sandbox_is_ready() -> None:
    before = pod_status(_view([_c(Waiting("ContainerCreating"))], sandbox_ready=False), [], T0)
    after = pod_status(_view([_c(RUNNING)], pod_ip="10.213.0.9"), [], T0)
    assert "podIP" not in before and before["hostIP"] == "10.0.0.1"
    assert (
        next(c for c in before["conditions"] if c["type"] == "PodReadyToStartContainers")["status"] == "False"
    )
    assert after["podIP"] == "10.213.0.9" and after["podIPs"] == [{"ip": "10.213.0.9"}]
    assert "initContainerStatuses" not in after
