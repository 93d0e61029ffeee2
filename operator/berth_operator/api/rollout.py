"""`spec.rollout`: how a new revision (model swap, runtime change) replaces the old one."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from berth_operator.api.base import ApiModel, CrossFieldRule, section_default


class RolloutStep(ApiModel):
    """One canary step: run this many new-revision replicas, then wait."""

    replicas: int = Field(ge=1, le=1000, description="New-revision replicas during this step.")
    pause_seconds: int = Field(
        default=0, ge=0, le=86400, description="Seconds to hold this step while analysis runs."
    )


class AnalysisSpec(ApiModel):
    """Thresholds a canary must stay within to be promoted; breaching one rolls it back."""

    max_error_rate: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Highest share of failed requests (5xx) of the new revision, in [0, 1].",
    )
    max_time_to_first_token_p95_milliseconds: int | None = Field(
        default=None,
        ge=1,
        le=600000,
        description="Highest 95th percentile time to first token of the new revision, in milliseconds.",
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
            "(where maxUnavailable is capped to 0) at least 1 is used."
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
        description="Seconds a rollout may make no progress before it is reported as failed.",
    )
    steps: list[RolloutStep] = Field(
        default_factory=list,
        max_length=10,
        description="Canary steps, in order. Required with the Canary strategy, forbidden otherwise.",
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
