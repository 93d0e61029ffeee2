"""The rollout plan, step by step: what each observation moves the state to, and the Events it says.

Pure and table-driven: a spec, the previous `status.rollout`, one observation (and, where due, an
analysis report) in; the next state and its Events out.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from rollout_factories import NOW, STABLE, TARGET, observed

from berth_operator.api.rollout import RolloutSpec
from berth_operator.api.status import AnalysisReport, RolloutStatus
from berth_operator.rollout.plan import advance, analysis_window


def canary_spec(**changes: Any) -> RolloutSpec:
    wire: dict[str, Any] = {
        "strategy": "Canary",
        "steps": [{"replicas": 1, "pauseSeconds": 60}, {"percent": 50, "pauseSeconds": 60}],
        "analysis": {"intervalSeconds": 30, "minRequests": 10},
        "progressDeadlineSeconds": 300,
    }
    wire.update(changes)
    return RolloutSpec.model_validate(wire)


def report(verdict: str, step: int = 0, at: datetime = NOW, message: str = "numbers") -> AnalysisReport:
    return AnalysisReport(time=at, step=step, window_seconds=30, verdict=verdict, message=message)  # type: ignore[arg-type]


def canary_at(step: int, started: datetime | None, **changes: Any) -> RolloutStatus:
    fields: dict[str, Any] = {
        "strategy": "Canary",
        "phase": "Canary",
        "stable_revision": STABLE,
        "canary_revision": TARGET,
        "current_step": step,
        "step_count": 2,
        "phase_start_time": NOW - timedelta(seconds=100),
        "step_start_time": started,
    }
    return RolloutStatus(**{**fields, **changes})


def reasons(events: list[Any]) -> list[str]:
    return [event.reason for event in events]


def test_first_look_takes_the_running_revision_as_stable() -> None:
    step = advance(canary_spec(), None, observed(target_revision=STABLE))
    assert step.state.phase == "Stable" and step.state.stable_revision == STABLE
    assert step.events == []


def test_a_new_revision_with_canary_starts_at_step_one_beside_the_stable_one() -> None:
    step = advance(canary_spec(), RolloutStatus(stable_revision=STABLE), observed())
    state = step.state
    assert (state.phase, state.canary_revision, state.current_step, state.step_count) == (
        "Canary",
        TARGET,
        0,
        2,
    )
    assert state.phase_start_time == NOW and state.step_start_time is None
    assert reasons(step.events) == ["RolloutStarted"]
    assert state.summary == "Canary 1/2 Starting"


def test_without_canary_a_new_revision_rolls() -> None:
    step = advance(RolloutSpec(), RolloutStatus(stable_revision=STABLE), observed())
    assert step.state.phase == "Rolling" and step.state.canary_revision == TARGET


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"desired_replicas": 0}, "at 0 replicas there is nothing to compare"),
        ({"stable_template_found": False}, "can no longer be found"),
    ],
)
def test_a_canary_that_cannot_run_beside_stable_rolls_and_says_why(changes: dict[str, Any], why: str) -> None:
    step = advance(canary_spec(), RolloutStatus(stable_revision=STABLE), observed(**changes))
    assert step.state.phase == "Rolling"
    assert why in (step.state.message or "")


def test_the_step_clock_starts_when_its_canary_replicas_are_ready() -> None:
    waiting = advance(canary_spec(), canary_at(0, None), observed(canary_exists=True, canary_replicas=1))
    assert waiting.state.step_start_time is None and "0/1" in (waiting.state.message or "")
    ready = advance(
        canary_spec(), canary_at(0, None), observed(canary_exists=True, canary_replicas=1, canary_ready=1)
    )
    assert ready.state.step_start_time == NOW
    assert reasons(ready.events) == ["CanaryStep"]


def test_canary_replicas_not_ready_by_the_deadline_roll_back_with_the_pod_problem() -> None:
    late = canary_at(0, None, phase_start_time=NOW - timedelta(seconds=301))
    problem = "pod chat-canary-x container runtime: CrashLoopBackOff; last exit code 1"
    step = advance(canary_spec(), late, observed(canary_exists=True, canary_replicas=1, problem=problem))
    state = step.state
    assert state.phase == "RolledBack" and state.failed_revision == TARGET
    assert problem in (state.message or "")
    assert reasons(step.events) == ["RolledBack"]
    assert state.history[-1].outcome == "RolledBack" and state.history[-1].revision == TARGET


def test_a_failing_analysis_rolls_back_at_once_with_its_numbers() -> None:
    state = canary_at(0, NOW - timedelta(seconds=30))
    verdict = report("Fail", message="canary TTFT p95 812 ms > SLO 500 ms")
    step = advance(
        canary_spec(), state, observed(canary_ready=1, canary_replicas=1, canary_exists=True), verdict
    )
    assert step.state.phase == "RolledBack"
    assert "812 ms" in (step.state.message or "")
    assert step.state.analysis == verdict


def test_a_failing_analysis_without_auto_rollback_holds_and_says_so() -> None:
    state = canary_at(0, NOW - timedelta(seconds=30))
    step = advance(canary_spec(autoRollback=False), state, observed(canary_ready=1), report("Fail"))
    assert step.state.phase == "Canary" and step.state.halted is not None
    assert "autoRollback is off" in step.state.halted
    assert reasons(step.events) == ["RolloutFailed"]
    assert step.state.summary == "Halted at Canary"


def test_a_pass_before_the_pause_ends_holds_the_step() -> None:
    state = canary_at(0, NOW - timedelta(seconds=30))
    step = advance(canary_spec(), state, observed(canary_ready=1), report("Pass"))
    assert step.state.current_step == 0 and step.state.phase == "Canary"
    assert "pause not over" in (step.state.message or "")


def test_a_pass_after_the_pause_moves_to_the_next_step_and_the_last_to_promotion() -> None:
    first = advance(
        canary_spec(), canary_at(0, NOW - timedelta(seconds=60)), observed(canary_ready=1), report("Pass")
    )
    assert first.state.current_step == 1 and first.state.step_start_time is None
    assert reasons(first.events) == ["CanaryStep"]
    last = advance(
        canary_spec(),
        canary_at(1, NOW - timedelta(seconds=60)),
        observed(canary_ready=2),
        report("Pass", step=1),
    )
    assert last.state.phase == "Promoting"
    assert reasons(last.events) == ["Promoting"]


def test_an_inconclusive_analysis_never_promotes() -> None:
    state = canary_at(1, NOW - timedelta(seconds=600))
    step = advance(
        canary_spec(), state, observed(canary_ready=2), report("Inconclusive", step=1, message="no metrics")
    )
    assert step.state.phase == "Canary" and step.state.current_step == 1
    assert "no metrics" in (step.state.message or "")


def test_paused_holds_the_step_whatever_the_analysis() -> None:
    state = canary_at(0, NOW - timedelta(seconds=600))
    step = advance(canary_spec(paused=True), state, observed(canary_ready=1), report("Fail"))
    assert step.state.phase == "Canary" and step.state.current_step == 0
    assert step.state.summary is not None and step.state.summary.startswith("Paused")


@pytest.mark.parametrize(
    ("action", "phase", "reason"),
    [("promote", "Promoting", "Promoting"), ("abort", "RolledBack", "Aborted")],
)
def test_manual_promote_and_abort(action: str, phase: str, reason: str) -> None:
    state = canary_at(0, None)
    step = advance(canary_spec(autoRollback=False), state, observed(action=action))
    assert step.state.phase == phase
    assert reason in reasons(step.events)
    assert step.action_done


def test_an_action_with_nothing_to_act_on_is_consumed_and_told() -> None:
    step = advance(canary_spec(), RolloutStatus(stable_revision=TARGET), observed(action="promote"))
    assert step.state.phase == "Stable" and step.action_done
    assert reasons(step.events) == ["RolloutActionIgnored"]


def test_promotion_completes_once_the_primary_runs_the_target_everywhere_and_the_canary_is_gone() -> None:
    promoting = canary_at(1, None, phase="Promoting")
    rolling_primary = observed(
        primary_revision=TARGET, primary_ready={TARGET: 4}, canary_exists=True, canary_replicas=1
    )
    assert advance(canary_spec(), promoting, rolling_primary).state.phase == "Promoting"
    done = advance(canary_spec(), promoting, replace(rolling_primary, canary_replicas=0))
    assert done.state.phase == "Stable" and done.state.stable_revision == TARGET
    assert done.state.canary_revision is None
    assert done.state.history[-1].outcome == "Promoted"


def test_a_rolling_update_completes_and_its_revision_becomes_stable() -> None:
    rolling = RolloutStatus(
        stable_revision=STABLE, phase="Rolling", canary_revision=TARGET, phase_start_time=NOW
    )
    step = advance(RolloutSpec(), rolling, observed(primary_revision=TARGET, primary_ready={TARGET: 4}))
    assert step.state.phase == "Stable" and step.state.stable_revision == TARGET
    assert reasons(step.events) == ["Completed"]


def test_a_rolling_update_past_its_deadline_is_reverted_with_the_cause() -> None:
    rolling = RolloutStatus(
        stable_revision=STABLE, phase="Rolling", canary_revision=TARGET, phase_start_time=NOW
    )
    crash = "pod chat-x container runtime: back-off restarting failed container; last exit code 3"
    seen = observed(
        primary_revision=TARGET,
        primary_rolled_out=False,
        deadline_exceeded='ReplicaSet "chat-x" has timed out progressing.',
        problem=crash,
    )
    step = advance(RolloutSpec(), rolling, seen)
    assert step.state.phase == "RolledBack" and step.state.failed_revision == TARGET
    assert crash in (step.state.message or "")
    # The failed revision is not tried again while the spec names it.
    again = advance(RolloutSpec(), step.state, replace(seen, primary_revision=STABLE, deadline_exceeded=None))
    assert again.state.phase == "RolledBack" and again.events == []


def test_a_surge_pod_starved_of_gpus_turns_the_roll_into_replacement_once() -> None:
    rolling = RolloutStatus(
        stable_revision=STABLE, phase="Rolling", canary_revision=TARGET, phase_start_time=NOW
    )
    starved = observed(primary_revision=TARGET, primary_rolled_out=False, primary_gpu_starved=True)
    step = advance(RolloutSpec(), rolling, starved)
    assert step.state.replacing_without_surge is True
    assert reasons(step.events) == ["ReplacingWithoutSurge"]
    assert step.state.summary == "Rolling (replacing)"
    assert advance(RolloutSpec(), step.state, starved).events == []


def test_a_newer_revision_supersedes_the_canary_in_progress() -> None:
    step = advance(canary_spec(), canary_at(1, NOW), observed(target_revision="newer0003"))
    assert step.state.canary_revision == "newer0003" and step.state.current_step == 0
    assert step.state.history[-1].outcome == "Superseded"


def test_a_spec_back_on_the_stable_revision_ends_the_canary() -> None:
    step = advance(canary_spec(), canary_at(1, NOW), observed(target_revision=STABLE))
    assert step.state.phase == "Stable" and step.state.canary_revision is None
    assert step.state.history[-1].outcome == "Superseded"


def test_history_keeps_the_last_five() -> None:
    state = RolloutStatus(stable_revision=STABLE)
    for number in range(7):
        revision = f"rev{number:07d}"
        rolling = advance(RolloutSpec(), state, observed(target_revision=revision)).state
        state = advance(
            RolloutSpec(),
            rolling,
            observed(target_revision=revision, primary_revision=revision, primary_ready={revision: 4}),
        ).state
    assert [record.revision for record in state.history] == [f"rev{n:07d}" for n in range(2, 7)]


@pytest.mark.parametrize(
    ("started_ago", "last_ago", "pause", "window"),
    [
        (None, None, 60, None),  # the step's replicas are not ready yet
        (10, None, 60, None),  # first analysis after one interval
        (30, None, 60, 30),
        (45, 20, 60, None),  # the last one was 20 s ago
        (61, 20, 60, 61),  # the pause just ended: once more, over the whole step
        (10, None, 5, 30),  # a pause shorter than the interval: at its end, over one interval
    ],
)
def test_analysis_is_due_after_an_interval_and_as_the_pause_ends(
    started_ago: int | None, last_ago: int | None, pause: int, window: int | None
) -> None:
    spec = canary_spec(steps=[{"replicas": 1, "pauseSeconds": pause}])
    started = None if started_ago is None else NOW - timedelta(seconds=started_ago)
    last = None if last_ago is None else report("Pass", at=NOW - timedelta(seconds=last_ago))
    state = canary_at(0, started, analysis=last)
    assert analysis_window(spec, state, NOW) == window


def test_a_canary_whose_spec_turns_to_rolling_rolls_out_directly() -> None:
    step = advance(RolloutSpec(), canary_at(0, NOW), observed())
    assert step.state.phase == "Rolling" and step.state.canary_revision == TARGET
    assert step.state.current_step is None
    assert "strategy changed to Rolling" in (step.state.message or "")


def test_a_new_step_and_promotion_look_for_free_gpus_afresh() -> None:
    starved = canary_at(0, NOW - timedelta(seconds=60), replacing_without_surge=True)
    step = advance(canary_spec(), starved, observed(canary_ready=1), report("Pass"))
    assert step.state.current_step == 1 and step.state.replacing_without_surge is None
    last = canary_at(1, NOW - timedelta(seconds=60), replacing_without_surge=True)
    promoted = advance(canary_spec(), last, observed(canary_ready=2), report("Pass", step=1))
    assert promoted.state.phase == "Promoting" and promoted.state.replacing_without_surge is None


def test_a_cause_longer_than_status_admits_is_bounded_keeping_its_end() -> None:
    late = canary_at(0, None, phase_start_time=NOW - timedelta(seconds=301))
    problem = "x" * 5000 + " exit code 137"
    step = advance(canary_spec(autoRollback=False), late, observed(canary_exists=True, problem=problem))
    assert step.state.halted is not None and len(step.state.halted) <= 4096
    assert step.state.halted.endswith("holds here")
    RolloutStatus.model_validate(step.state.model_dump())  # what the API server would admit
