"""The rollout plan: from where the rollout stood and what is observed now, where it stands next.

Pure: `advance(spec, previous, observation, analysis)` returns the next `status.rollout` and the
Events its transitions deserve; `workload_shape` (shape.py) turns that state into what the two
Deployments run, and the handler applies it. The state lives in status, so an operator restart
resumes a rollout where it was.

The phases: Stable (every replica on stableRevision) -> Rolling (a rolling update to the target) or
Canary (the target beside the stable revision, step by step, each held for its pause while
Prometheus analysis judges it) -> Promoting (the target replaces the stable replicas) -> Stable; or,
on a failure (the progress deadline missed, an analysis that fails, an abort), RolledBack: the stable
revision serves again and the failed revision is not tried again until the spec names another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from berth_operator.api.rollout import RolloutSpec
from berth_operator.api.status import (
    AnalysisReport,
    RolloutOutcome,
    RolloutPhase,
    RolloutRecord,
    RolloutStatus,
)
from berth_operator.builders.pod_problems import bounded
from berth_operator.builders.status import StatusEvent
from berth_operator.rollout.observation import RolloutObservation

HISTORY_LENGTH = 5
STATUS_TEXT_LIMIT = 4096
"""status.rollout.message and .halted hold at most this many characters (the CRD's maxLength)."""
MAX_ANALYSIS_WINDOW_SECONDS = 86400


@dataclass(frozen=True)
class Advance:
    """The next rollout state, the Events to emit, and whether a manual action was consumed."""

    state: RolloutStatus
    events: list[StatusEvent] = field(default_factory=list)
    action_done: bool = False


def _record(
    state: RolloutStatus, outcome: RolloutOutcome, message: str, now: datetime
) -> list[RolloutRecord]:
    record = RolloutRecord(
        revision=state.canary_revision or "",
        strategy=state.strategy or "Rolling",
        outcome=outcome,
        time=now,
        message=message[:1024],
    )
    return [*state.history, record][-HISTORY_LENGTH:]


def _summary(state: RolloutStatus, paused: bool) -> str:
    if state.halted:
        text = f"Halted at {state.phase}"
    elif state.phase == "Canary":
        verdict = (
            state.analysis.verdict if state.analysis and state.analysis.step == state.current_step else None
        )
        step = f"{(state.current_step or 0) + 1}/{state.step_count or 0}"
        text = f"Canary {step} {verdict or ('Analysing' if state.step_start_time else 'Starting')}"
    else:
        text = state.phase
    if state.replacing_without_surge and state.phase in ("Rolling", "Promoting"):
        text += " (replacing)"
    return f"Paused: {text}" if paused and state.phase in ("Rolling", "Canary") else text


def analysis_window(spec: RolloutSpec, state: RolloutStatus, now: datetime) -> int | None:
    """Seconds of metrics the next analysis should cover, or None when none is due now.

    Due once a step's new-revision replicas are all ready: first after one interval (or at the end
    of a shorter pause), then every interval, and once more as the pause ends. The window is the
    step so far, at least one interval.
    """
    if state.phase != "Canary" or state.halted or spec.paused or state.step_start_time is None:
        return None
    interval = spec.analysis.interval_seconds
    step = spec.steps[min(state.current_step or 0, len(spec.steps) - 1)]
    started = state.step_start_time
    elapsed = (now - started).total_seconds()
    pause_end = started + timedelta(seconds=step.pause_seconds)
    last = state.analysis
    if last is not None and (last.step != state.current_step or last.time < started):
        last = None
    if last is None:
        due = elapsed >= min(interval, step.pause_seconds)
    else:
        due = (now - last.time).total_seconds() >= interval or last.time < pause_end <= now
    if not due:
        return None
    return int(min(max(interval, elapsed), MAX_ANALYSIS_WINDOW_SECONDS))


class _Planner:
    """One advance: the spec, the previous state and the observation, and what changes."""

    def __init__(self, spec: RolloutSpec, previous: RolloutStatus, observed: RolloutObservation) -> None:
        self.spec, self.observed, self.now = spec, observed, observed.now
        self.state = previous
        self.events: list[StatusEvent] = []

    def update(self, **changes: object) -> None:
        # model_copy does not validate: texts are bounded here to what status.rollout admits.
        for text in ("message", "halted"):
            if isinstance(changes.get(text), str):
                changes[text] = bounded(str(changes[text]), STATUS_TEXT_LIMIT)
        self.state = self.state.model_copy(update=changes)

    def emit(self, kind: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(StatusEvent(kind, reason, message))

    @property
    def deadline_passed(self) -> bool:
        started = self.state.phase_start_time
        if started is None:
            return False
        return (self.now - started).total_seconds() > self.spec.progress_deadline_seconds

    def start(self, target: str) -> None:
        """A new target: a canary when the spec asks for one and the stable revision can stay
        beside it; else a rolling update."""
        observed, spec = self.observed, self.spec
        canary = (
            spec.strategy == "Canary" and observed.desired_replicas > 0 and observed.stable_template_found
        )
        phase: RolloutPhase = "Canary" if canary else "Rolling"
        self.update(
            phase=phase,
            canary_revision=target,
            failed_revision=None,
            halted=None,
            current_step=0 if canary else None,
            step_count=len(spec.steps) if canary else None,
            phase_start_time=self.now,
            step_start_time=None,
            replacing_without_surge=None,
            analysis=None,
        )
        if canary:
            message = f"canary of revision {target} started beside {self.state.stable_revision}"
        elif spec.strategy == "Canary" and observed.desired_replicas == 0:
            message = f"revision {target} rolls out directly: at 0 replicas there is nothing to compare"
        elif spec.strategy == "Canary":
            message = (
                f"revision {target} rolls out directly: the pod template of stable revision "
                f"{self.state.stable_revision} can no longer be found to run beside it"
            )
        else:
            message = f"rolling update to revision {target} started"
        self.update(message=message)
        self.emit("Normal", "RolloutStarted", message)

    def finish(self, outcome: RolloutOutcome, message: str) -> None:
        """The target now runs everywhere (Completed, Promoted): it becomes the stable revision."""
        self.update(
            history=_record(self.state, outcome, message, self.now),
            phase="Stable",
            stable_revision=self.state.canary_revision,
            canary_revision=None,
            current_step=None,
            step_count=None,
            phase_start_time=None,
            step_start_time=None,
            replacing_without_surge=None,
            halted=None,
            message=message,
        )
        self.emit("Normal", outcome, message)

    def fail(self, cause: str, outcome: RolloutOutcome = "RolledBack", forced: bool = False) -> None:
        """The target failed: roll back to the stable revision (autoRollback, or an abort), or hold
        and say why."""
        target, stable = self.state.canary_revision, self.state.stable_revision
        if not (self.spec.auto_rollback or forced):
            self.halt(f"revision {target} failed: {cause}; autoRollback is off, so the rollout holds here")
            return
        if not self.observed.stable_template_found:
            self.halt(
                f"revision {target} failed: {cause}; it cannot be rolled back: no ReplicaSet keeps the pod "
                f"template of stable revision {stable} any more"
            )
            return
        message = f"revision {target} rolled back to {stable}: {cause}"
        self.update(
            history=_record(self.state, outcome, message, self.now),
            phase="RolledBack",
            failed_revision=target,
            phase_start_time=self.now,
            step_start_time=None,
            halted=None,
            message=message,
        )
        self.emit("Warning", outcome, message)

    def halt(self, why: str) -> None:
        """Hold the rollout where it is after a failure, saying why once."""
        if why != self.state.halted:
            self.update(halted=why, message=why)
            self.emit("Warning", "RolloutFailed", why)

    def supersede(self, why: str) -> None:
        if self.state.phase in ("Rolling", "Canary", "Promoting") and self.state.canary_revision:
            self.update(history=_record(self.state, "Superseded", why, self.now))

    def act(self, action: str) -> None:
        phase = self.state.phase
        if action == "abort" and phase in ("Rolling", "Canary", "Promoting"):
            self.fail("aborted by hand (annotation berth.dev/rollout-action: abort)", "Aborted", forced=True)
        elif action == "promote" and phase == "Canary":
            self.promote(
                f"revision {self.state.canary_revision} promoted by hand (berth.dev/rollout-action: promote)"
            )
        else:
            self.emit("Warning", "RolloutActionIgnored", f"{action}: no canary is in progress ({phase})")

    def rolling(self) -> None:
        observed, target = self.observed, self.state.canary_revision
        if (
            observed.primary_revision == target
            and observed.primary_rolled_out
            and observed.primary_replicas == observed.desired_replicas
        ):
            self.finish("Completed", f"revision {target} runs on all {observed.desired_replicas} replicas")
        elif observed.deadline_exceeded is not None and observed.primary_revision == target:
            cause = observed.problem or observed.deadline_exceeded
            self.fail(
                f"not ready within progressDeadlineSeconds ({self.spec.progress_deadline_seconds} s): {cause}"
            )
        else:
            self.replace_if_starved(observed.primary_gpu_starved, "the surge pod")

    def replace_if_starved(self, starved: bool, who: str) -> None:
        if starved and not self.state.replacing_without_surge:
            message = (
                f"{who} waits for a GPU no node has free: the rollout goes on one replica at a time by "
                "replacing instead of surging"
            )
            self.update(replacing_without_surge=True, message=message)
            self.emit("Normal", "ReplacingWithoutSurge", message)

    def canary(self, analysis: AnalysisReport | None) -> None:
        observed, state = self.observed, self.state
        step_index = state.current_step or 0
        step = self.spec.steps[min(step_index, len(self.spec.steps) - 1)]
        goal = step.canary_replicas(observed.desired_replicas)
        label = f"step {step_index + 1}/{len(self.spec.steps)}"
        if state.step_start_time is None:
            if observed.canary_ready >= goal:
                message = f"{label}: {goal} replicas of revision {state.canary_revision} ready; analysing"
                self.update(step_start_time=self.now, message=message)
                self.emit("Normal", "CanaryStep", message)
            elif self.deadline_passed:
                cause = observed.problem or f"{observed.canary_ready}/{goal} new-revision replicas ready"
                self.fail(f"{label} not ready within progressDeadlineSeconds: {cause}")
                return
            else:
                self.replace_if_starved(observed.canary_gpu_starved, "a canary pod")
                self.update(
                    message=f"{label}: {observed.canary_ready}/{goal} replicas of revision "
                    f"{state.canary_revision} ready"
                )
        if analysis is None or self.spec.paused:
            return
        self.update(analysis=analysis)
        if analysis.verdict == "Fail":
            self.fail(f"analysis at {label}: {analysis.message}")
            return
        started = self.state.step_start_time
        held = started is not None and (self.now - started).total_seconds() >= step.pause_seconds
        if analysis.verdict == "Pass" and held:
            self.next_step(step_index, analysis.message)
        else:
            waiting = "pause not over" if analysis.verdict == "Pass" else "holding"
            self.update(message=f"{label}: {analysis.verdict} ({waiting}): {analysis.message}")

    def next_step(self, step_index: int, why: str) -> None:
        if step_index + 1 >= len(self.spec.steps):
            self.promote(f"revision {self.state.canary_revision} passed every step ({why}); promoting")
            return
        message = f"step {step_index + 1}/{len(self.spec.steps)} passed ({why}); step {step_index + 2} starts"
        self.update(
            current_step=step_index + 1,
            phase_start_time=self.now,
            step_start_time=None,
            replacing_without_surge=None,  # a new step looks for free GPUs afresh
            message=message,
        )
        self.emit("Normal", "CanaryStep", message)

    def promote(self, message: str) -> None:
        """The new revision replaces the stable replicas (after the last step, or by hand); it looks for
        free GPUs afresh."""
        self.update(
            phase="Promoting",
            phase_start_time=self.now,
            step_start_time=None,
            halted=None,
            replacing_without_surge=None,
            message=message,
        )
        self.emit("Normal", "Promoting", message)

    def promoting(self) -> None:
        observed, target = self.observed, self.state.canary_revision
        done = (
            observed.primary_revision == target
            and observed.primary_rolled_out
            and observed.primary_replicas == observed.desired_replicas
            and observed.canary_replicas == 0
        )
        if done:
            self.finish(
                "Promoted", f"revision {target} promoted: it runs on all {observed.desired_replicas} replicas"
            )
        elif self.deadline_passed and observed.problem is not None:
            self.fail(f"promotion not done within progressDeadlineSeconds: {observed.problem}")
        else:
            self.replace_if_starved(observed.primary_gpu_starved, "a replica of the promoted revision")


def initial_state(observed: RolloutObservation) -> RolloutStatus:
    """Before any rollout: the revision the primary runs (or, before it exists, the target) is stable."""
    return RolloutStatus(
        phase="Stable", stable_revision=observed.primary_revision or observed.target_revision
    )


def advance(
    spec: RolloutSpec,
    previous: RolloutStatus | None,
    observed: RolloutObservation,
    analysis: AnalysisReport | None = None,
) -> Advance:
    """The next rollout state for what is observed now (and, when one was due, the analysis)."""
    if previous is None or previous.stable_revision is None:
        previous = initial_state(observed)
    planner = _Planner(spec, previous.model_copy(update={"strategy": spec.strategy}), observed)
    target, state = observed.target_revision, planner.state
    in_progress = state.phase != "Stable" and state.canary_revision is not None
    if target == state.stable_revision:
        if state.phase != "Stable":
            planner.supersede(f"the spec returned to stable revision {target}")
            planner.update(
                phase="Stable",
                canary_revision=None,
                failed_revision=None,
                current_step=None,
                step_count=None,
                phase_start_time=None,
                step_start_time=None,
                replacing_without_surge=None,
                halted=None,
                message=f"revision {target} is stable",
            )
    elif (not in_progress or target != state.canary_revision) and target != state.failed_revision:
        planner.supersede(f"the spec moved on to revision {target}")
        planner.start(target)
    if planner.state.phase == "Canary" and spec.strategy != "Canary":
        revision = planner.state.canary_revision
        message = f"strategy changed to {spec.strategy}: revision {revision} rolls out directly"
        planner.update(
            phase="Rolling", current_step=None, step_count=None, step_start_time=None, message=message
        )
        planner.emit("Normal", "RolloutStarted", message)
    action_done = observed.action is not None
    if observed.action is not None:
        planner.act(observed.action)
    if not planner.state.halted:
        phase = planner.state.phase
        if phase == "Rolling":
            planner.rolling()
        elif phase == "Canary" and not spec.paused:
            planner.canary(analysis)
        elif phase == "Promoting":
            planner.promoting()
    final = planner.state.model_copy(update={"summary": _summary(planner.state, spec.paused)})
    return Advance(final, planner.events, action_done)
