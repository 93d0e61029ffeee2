"""`spec.serving`: how clients reach the runtime, and how it stops without dropping streams."""

from __future__ import annotations

from pydantic import Field

from berth_operator.api.base import ApiModel, CrossFieldRule
from berth_operator.api.common import SecretKeySelector


class ServingSpec(ApiModel):
    """The runtime's network endpoint, authentication and shutdown."""

    port: int = Field(
        default=8000,
        ge=1024,
        le=65535,
        description="HTTP port (KServe v2, OpenAI-compatible API, health, /metrics); the Service's port.",
    )
    metrics_port: int = Field(
        default=8001,
        ge=1024,
        le=65535,
        description="Separate port that also serves /metrics (the `metrics` container port).",
    )
    api_key_secret_ref: SecretKeySelector | None = Field(
        default=None,
        description=(
            "Secret key holding a bearer token: requests then need `Authorization: Bearer <token>`. "
            "Health endpoints and /metrics stay open. Unset: no authentication."
        ),
    )
    drain_timeout_seconds: int = Field(
        default=30,
        ge=0,
        le=3600,
        description="On shutdown, seconds in-flight requests and streams get to finish.",
    )
    pre_stop_delay_seconds: int = Field(
        default=5,
        ge=0,
        le=120,
        description=(
            "Seconds a terminating pod keeps serving before it is signalled, so load balancers stop "
            "sending it new requests first."
        ),
    )

    cross_field_rules = (
        CrossFieldRule(
            cel="self.port != self.metricsPort",
            message="serving.port and serving.metricsPort must differ",
            holds=lambda serving: serving.port != serving.metrics_port,
            field_path=".metricsPort",
        ),
    )
