"""`InferenceDeploymentStatus`: what the operator (and the autoscaler and rollout planner beside it)
observed. Each writer owns its own fields through server-side apply with its own field manager;
conditions are a list map keyed by `type`, so writers never overwrite each other's conditions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from berth_operator.api.base import StatusModel
from berth_operator.api.cold_start import ColdStartStatus
from berth_operator.api.economics_status import EconomicsStatus

Phase = Literal["Pending", "Progressing", "Ready", "Degraded", "Failed"]
ConditionStatus = Literal["True", "False", "Unknown"]

# Condition types. The operator core owns the first four; the autoscaler the last two.
CONDITION_ACCEPTED = "Accepted"
CONDITION_READY = "Ready"
CONDITION_PROGRESSING = "Progressing"
CONDITION_DEGRADED = "Degraded"
CONDITION_SLO_MET = "SLOMet"
CONDITION_METRICS_UNAVAILABLE = "MetricsUnavailable"


class Condition(StatusModel):
    """One aspect of the deployment's state (the Kubernetes metav1.Condition shape)."""

    type: str = Field(
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        description=(
            "Condition type: Accepted, Ready, Progressing, Degraded (operator); SLOMet, "
            "MetricsUnavailable (autoscaler)."
        ),
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="Machine-readable CamelCase reason for the last transition.",
    )
    message: str = Field(default="", max_length=32768, description="Human-readable details.")
    last_transition_time: datetime = Field(
        description="When the status last changed (RFC 3339).",
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation the condition was set for."
    )


class RevisionStatus(StatusModel):
    """Pod revisions: the hash of everything that shapes a replica (label berth.dev/revision)."""

    current: str | None = Field(default=None, max_length=64, description="Revision most ready replicas run.")
    target: str | None = Field(default=None, max_length=64, description="Revision the current spec asks for.")


class AutoscalingSignals(StatusModel):
    """The metrics the last autoscaling evaluation saw."""

    ttft_p95_milliseconds: float | None = Field(
        default=None, ge=0, description="95th percentile time to first token, milliseconds."
    )
    itl_p95_milliseconds: float | None = Field(
        default=None, ge=0, description="95th percentile inter-token latency, milliseconds."
    )
    waiting_requests: float | None = Field(
        default=None, ge=0, description="Requests waiting in runtime queues, summed over replicas."
    )
    running_requests: float | None = Field(
        default=None, ge=0, description="Requests running, summed over replicas."
    )
    kv_cache_usage: float | None = Field(
        default=None, ge=0, le=1, description="Mean KV cache usage over replicas, in [0, 1]."
    )
    requests_per_second: float | None = Field(
        default=None, ge=0, description="Request rate over the metrics window."
    )


class ScalingDecision(StatusModel):
    """One replica change decided by the autoscaler."""

    time: datetime = Field(description="When the decision was made (RFC 3339).")
    from_replicas: int = Field(alias="from", ge=0, description="Replicas before the decision.")
    to_replicas: int = Field(alias="to", ge=0, description="Replicas decided.")
    reason: str = Field(max_length=1024, description="Why, with the numbers that drove it.")
    dry_run: bool | None = Field(
        default=None, description="True when the decision was only reported (autoscaling.dryRun)."
    )


class LearnedCapacity(StatusModel):
    """Per-replica capacity the autoscaler learned from the metrics, in token work per second
    (generated tokens plus prompt tokens weighted by their cost)."""

    ceiling_tokens_per_second: float | None = Field(
        default=None,
        ge=0,
        description="Work one replica serves when saturated (seen while an SLO was breached).",
    )
    floor_tokens_per_second: float | None = Field(
        default=None, ge=0, description="Most work one replica has served while every SLO held."
    )


class ScalingRecommendation(StatusModel):
    """What one evaluation recommended; the stabilization windows are taken over these."""

    time: datetime = Field(description="When the evaluation ran (RFC 3339).")
    scale_up: int = Field(ge=0, description="Replicas the scale-up rule asked for.")
    scale_down: int = Field(ge=0, description="Fewest replicas whose survivors keep the SLO with headroom.")
    requests_per_second: float | None = Field(
        default=None,
        ge=0,
        description="Request rate over the metrics window then; the demand's trend is fitted to these.",
    )


class AutoscalingStatus(StatusModel):
    """What the autoscaler saw and decided."""

    signals: AutoscalingSignals | None = Field(default=None, description="Last observed metrics.")
    last_evaluation_time: datetime | None = Field(
        default=None, description="When the autoscaler last evaluated (RFC 3339)."
    )
    last_decision: ScalingDecision | None = Field(default=None, description="The latest replica change.")
    history: list[ScalingDecision] = Field(
        default_factory=list,
        max_length=10,
        description="Recent replica changes, newest last (at most 10).",
    )
    capacity: LearnedCapacity | None = Field(
        default=None, description="Per-replica capacity learned so far (kept across operator restarts)."
    )
    recommendations: list[ScalingRecommendation] = Field(
        default_factory=list,
        max_length=120,
        description="Recent recommendations covering the stabilization window, oldest first (at most 120).",
    )
    pod_sampling: str | None = Field(
        default=None,
        max_length=1024,
        description=(
            "How reading the Ready replicas' own request gauges between evaluations "
            "(spec.autoscaling.podSampling) is going, as of the daemon's last round, written at each "
            "evaluation: how many of the Ready replicas answered on the metrics port and how often "
            '("2 of 2 Ready replicas answered on port 8001 every 2s"); the replicas that did not, '
            "with their address and the error, and that a scale-up for their load then waits for "
            'Prometheus; "disabled" when spec.autoscaling.podSampling.enabled is false. A '
            "Warning Event PodSamplingFailed is recorded when replicas stop answering."
        ),
    )


RolloutPhase = Literal["Stable", "Rolling", "Canary", "Promoting", "RolledBack"]
AnalysisVerdict = Literal["Pass", "Fail", "Inconclusive"]
RolloutOutcome = Literal["Completed", "Promoted", "RolledBack", "Aborted", "Superseded"]


class RevisionFigures(StatusModel):
    """What one revision served in an analysis window, from Prometheus."""

    requests: float = Field(ge=0, description="Requests answered in the window.")
    error_rate: float = Field(ge=0, le=1, description="Share of them that failed (non-2xx or aborted).")
    ttft_p95_milliseconds: float | None = Field(
        default=None, ge=0, description="95th percentile time to first token, milliseconds."
    )
    itl_p95_milliseconds: float | None = Field(
        default=None, ge=0, description="95th percentile inter-token latency, milliseconds."
    )


class AnalysisReport(StatusModel):
    """The last canary analysis: the verdict and the numbers behind it."""

    time: datetime = Field(description="When the analysis ran (RFC 3339).")
    step: int = Field(ge=0, description="Index of the canary step it judged.")
    window_seconds: int = Field(ge=0, description="The window the figures cover, seconds.")
    verdict: AnalysisVerdict = Field(
        description="Pass, Fail, or Inconclusive (too few requests or no metrics)."
    )
    message: str = Field(default="", max_length=4096, description="The verdict in words, with the numbers.")
    canary: RevisionFigures | None = Field(default=None, description="The new revision's figures.")
    stable: RevisionFigures | None = Field(default=None, description="The stable revision's figures.")


class RolloutRecord(StatusModel):
    """How one finished rollout ended."""

    revision: str = Field(max_length=64, description="The revision rolled out.")
    strategy: str = Field(max_length=16, description="Rolling or Canary.")
    outcome: RolloutOutcome = Field(
        description="Completed (rolling), Promoted (canary), RolledBack, Aborted (by hand) or Superseded."
    )
    time: datetime = Field(description="When it ended (RFC 3339).")
    message: str = Field(default="", max_length=1024, description="Why it ended so.")


class RolloutStatus(StatusModel):
    """Where the rollout of the target revision stands (written by the operator's rollout planner)."""

    strategy: str | None = Field(default=None, max_length=16, description="Rolling or Canary.")
    phase: RolloutPhase = Field(
        default="Stable",
        description=(
            "Stable: every replica runs stableRevision. Rolling: a rolling update to the target. "
            "Canary: the target runs beside the stable revision through the steps. Promoting: the "
            "target replaces the stable replicas after the last step. RolledBack: the target failed "
            "and the stable revision serves; it stays so until the spec names another revision."
        ),
    )
    stable_revision: str | None = Field(
        default=None, max_length=64, description="The last revision that was ready on every replica."
    )
    canary_revision: str | None = Field(
        default=None, max_length=64, description="The revision being rolled out (Canary, Promoting)."
    )
    failed_revision: str | None = Field(
        default=None,
        max_length=64,
        description="A revision that failed and is not tried again until the spec changes.",
    )
    current_step: int | None = Field(default=None, ge=0, description="Index of the canary step in progress.")
    step_count: int | None = Field(default=None, ge=0, description="Canary steps in the spec.")
    phase_start_time: datetime | None = Field(
        default=None,
        description="When the current phase or step began: its progress deadline counts from here.",
    )
    step_start_time: datetime | None = Field(
        default=None,
        description="When the step's new-revision replicas were all ready: its pause counts from here.",
    )
    canary_replicas: int | None = Field(default=None, ge=0, description="New-revision replicas asked for.")
    canary_ready_replicas: int | None = Field(default=None, ge=0, description="New-revision replicas ready.")
    canary_share_percent: int | None = Field(
        default=None,
        ge=0,
        le=100,
        description=(
            "Share of traffic the new revision takes: its ready replicas out of all ready replicas of "
            "the Service (traffic follows endpoints), in percent."
        ),
    )
    replacing_without_surge: bool | None = Field(
        default=None,
        description=(
            "True while a surge pod found no free GPU: the roll goes on one replica at a time by "
            "replacing (never below the PodDisruptionBudget)."
        ),
    )
    halted: str | None = Field(
        default=None,
        max_length=4096,
        description="Why the rollout holds after a failure (autoRollback off); cleared by a spec change.",
    )
    analysis: AnalysisReport | None = Field(default=None, description="The last canary analysis.")
    summary: str | None = Field(
        default=None, max_length=64, description="One line for `kubectl get`: phase, step and verdict."
    )
    message: str | None = Field(default=None, max_length=4096, description="Rollout progress in words.")
    history: list[RolloutRecord] = Field(
        default_factory=list, max_length=5, description="The last rollouts, newest last (at most 5)."
    )


class InferenceDeploymentStatus(StatusModel):
    """Observed state of an InferenceDeployment."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation the operator last acted on."
    )
    phase: Phase | None = Field(
        default=None,
        description="Summary: Pending, Progressing, Ready, Degraded or Failed (see conditions for why).",
    )
    replicas: int | None = Field(
        default=None, ge=0, description="Runtime pods that exist (the scale subresource's status)."
    )
    ready_replicas: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Runtime pods the Service routes to: ready endpoints of its EndpointSlices (a pod whose "
            "node is gone is not counted, whatever the Deployment says)."
        ),
    )
    updated_replicas: int | None = Field(
        default=None, ge=0, description="Runtime pods that run the target revision."
    )
    desired_replicas: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Replicas the operator drives the Deployment to: spec.replicas, or with autoscaling the "
            "autoscaler's latest decision (kept here, so it survives an operator restart)."
        ),
    )
    ready: str | None = Field(
        default=None, max_length=32, description="Ready replicas out of desired, as `ready/desired`."
    )
    selector: str | None = Field(
        default=None, max_length=1024, description="Label selector of the runtime pods (for scaling)."
    )
    revision: RevisionStatus | None = Field(default=None, description="Current and target pod revision.")
    endpoint: str | None = Field(
        default=None, max_length=1024, description="In-cluster URL of the Service clients call."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        description="Latest observations of the deployment's state.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    autoscaling: AutoscalingStatus | None = Field(
        default=None, description="Autoscaler observations and decisions."
    )
    rollout: RolloutStatus | None = Field(
        default=None,
        description="How the target revision is being rolled out, and how the last rollouts ended.",
    )
    economics: EconomicsStatus | None = Field(
        default=None,
        description="GPU-hours, output tokens, cost and SLO attainment over the last hour and day.",
    )
    cold_start: ColdStartStatus | None = Field(
        default=None,
        description="How long a replica takes from creation to Ready, by stage (median over its pods).",
    )

    def condition(self, condition_type: str) -> Condition | None:
        """The condition of this type, if present."""
        return next((c for c in self.conditions if c.type == condition_type), None)
