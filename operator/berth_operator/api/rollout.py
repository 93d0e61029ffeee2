"""`spec.rollout`: how a new revision (model swap, runtime change) replaces the old one.

Rolling is the Deployment's rolling update, with two guards of berth's own: a revision that does not
become ready within the deadline is reverted (`autoRollback`), and a surge pod that no free GPU can
take turns the roll into replacement, one replica at a time. Canary runs the new revision beside the
stable one through `steps`, judged at each by `analysis` from Prometheus, then promotes or rolls back.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from berth_operator.api.base import ApiModel, CrossFieldRule, section_default

ROLLOUT_ACTION_ANNOTATION = "berth.dev/rollout-action"
"""Annotation on an InferenceDeployment asking for one manual action on the canary in progress:
`promote` (skip the remaining steps and analysis) or `abort` (roll back now). The operator removes it
once done."""
ROLLOUT_ACTIONS = ("promote", "abort")


class RolloutStep(ApiModel):
    """One canary step: run this share of the replicas on the new revision, then hold while analysis
    runs."""

    replicas: int | None = Field(
        default=None, ge=1, le=1000, description="New-revision replicas during this step (or set percent)."
    )
    percent: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description=(
            "New-revision replicas during this step as a percentage of the desired replicas, rounded up "
            "(or set replicas)."
        ),
    )
    pause_seconds: int = Field(
        default=0,
        ge=0,
        le=86400,
        description=(
            "Seconds to hold this step, counted from when its new-revision replicas are all ready, "
            "while analysis runs. The step passes at the end only with a passing analysis."
        ),
    )

    def canary_replicas(self, desired: int) -> int:
        """New-revision replicas this step runs out of `desired` (at least 1, at most `desired`)."""
        wanted = (
            self.replicas if self.replicas is not None else math.ceil(desired * (self.percent or 0) / 100)
        )
        return max(1, min(wanted, max(desired, 1)))

    cross_field_rules = (
        CrossFieldRule(
            cel="has(self.replicas) != has(self.percent)",
            message="rollout.steps[]: set exactly one of replicas and percent",
            holds=lambda step: (step.replicas is None) != (step.percent is None),
        ),
    )


class AnalysisSpec(ApiModel):
    """What a canary must show, per revision from Prometheus, to pass a step; a breach rolls it back."""

    max_error_rate: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description=(
            "Highest share of the new revision's requests that may fail (non-2xx responses and "
            "aborted requests), in [0, 1]."
        ),
    )
    max_time_to_first_token_p95_milliseconds: int | None = Field(
        default=None,
        ge=1,
        le=600000,
        description=(
            "Highest 95th percentile time to first token of the new revision, in milliseconds. Unset: "
            "autoscaling.slo.timeToFirstTokenP95Milliseconds, if set."
        ),
    )
    max_inter_token_latency_p95_milliseconds: int | None = Field(
        default=None,
        ge=1,
        le=60000,
        description=(
            "Highest 95th percentile inter-token latency of the new revision, in milliseconds. Unset: "
            "autoscaling.slo.interTokenLatencyP95Milliseconds, if set."
        ),
    )
    max_regression_percent: int = Field(
        default=20,
        ge=0,
        le=1000,
        description=(
            "How much worse than the stable revision, in percent, the new revision's TTFT and ITL p95 "
            "may be (compared only while the stable revision has served enough requests itself)."
        ),
    )
    min_requests: int = Field(
        default=20,
        ge=1,
        le=1000000,
        description=(
            "Requests the new revision must have answered in the step before it can pass: with fewer "
            "the step holds (a canary is never promoted blind)."
        ),
    )
    interval_seconds: int = Field(
        default=30,
        ge=5,
        le=3600,
        description=(
            "Seconds between analyses within a step; each covers the step so far (at least one interval)."
        ),
    )


class RolloutSpec(ApiModel):
    """Replacement of pods when the revision changes."""

    strategy: Literal["Rolling", "Canary"] = Field(
        default="Rolling",
        description=(
            "Rolling: a rolling update that never takes the last ready replica down. Canary: the "
            "new revision runs beside the old one through `steps`, judged by `analysis`."
        ),
    )
    max_surge: int = Field(
        default=1,
        ge=0,
        le=100,
        description=(
            "Replicas created above the desired count during a rolling update. With one replica "
            "(where maxUnavailable is capped to 0) at least 1 is used. A surge pod no free GPU can take "
            "turns the roll into replacement (surge 0, one unavailable) until it completes."
        ),
    )
    max_unavailable: int = Field(
        default=0,
        ge=0,
        le=100,
        description=(
            "Replicas that may be unavailable during a rolling update, capped at replicas - 1 so the "
            "last ready replica is never taken down. The default 0 keeps every ready replica until "
            "its replacement is ready."
        ),
    )
    progress_deadline_seconds: int = Field(
        default=1800,
        ge=60,
        le=86400,
        description=(
            "Seconds a new revision may take to become ready (a rolling update, or a canary step's "
            "replicas) before it counts as failed: reverted with autoRollback, else reported."
        ),
    )
    auto_rollback: bool = Field(
        default=True,
        description=(
            "Revert to the last revision that was ready when the new one fails: misses "
            "progressDeadlineSeconds (crash loop, image pull, OOM, warm-up failure) or, with Canary, "
            "fails its analysis. Off: the failure is reported and the rollout holds where it is."
        ),
    )
    paused: bool = Field(
        default=False,
        description=(
            "Hold the rollout where it is: a canary stays at its step (no promotion, no rollback by "
            "analysis), a rolling update stops replacing pods (the Deployment is paused). False resumes."
        ),
    )
    steps: list[RolloutStep] = Field(
        default_factory=list,
        max_length=10,
        description=(
            "Canary steps, in order; promotion follows the last one. Required with the Canary strategy, "
            "forbidden otherwise."
        ),
    )
    analysis: AnalysisSpec = Field(
        default_factory=AnalysisSpec,
        description="Canary analysis thresholds.",
        json_schema_extra=section_default(AnalysisSpec),
    )

    cross_field_rules = (
        CrossFieldRule(
            cel="self.maxSurge + self.maxUnavailable >= 1",
            message="rollout: maxSurge plus maxUnavailable must be at least 1",
            holds=lambda rollout: rollout.max_surge + rollout.max_unavailable >= 1,
            field_path=".maxSurge",
        ),
        CrossFieldRule(
            cel="(self.strategy == 'Canary') == (has(self.steps) && size(self.steps) > 0)",
            message="rollout.steps is required with strategy Canary and forbidden with strategy Rolling",
            holds=lambda rollout: (rollout.strategy == "Canary") == bool(rollout.steps),
            field_path=".steps",
        ),
    )
