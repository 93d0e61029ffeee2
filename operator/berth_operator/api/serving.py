"""`spec.serving`: how clients reach the runtime, and how it stops without dropping streams."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from berth_operator.api.base import ApiModel, CrossFieldRule
from berth_operator.api.common import DNS_SUBDOMAIN_PATTERN, SecretKeySelector

GATEWAY_HOSTNAME_PATTERN = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""Gateway API's Hostname: a DNS name, optionally with one leading wildcard label."""


class GatewayParentReference(ApiModel):
    """A Gateway (or a listener of one) the route attaches to: Gateway API's ParentReference, for the
    kind Gateway."""

    name: str = Field(max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="Name of the Gateway.")
    namespace: str | None = Field(
        default=None,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="Namespace of the Gateway. Unset: the InferenceDeployment's.",
    )
    section_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="The Gateway listener to attach to. Unset: every listener that allows the route.",
    )
    port: int | None = Field(default=None, ge=1, le=65535, description="The Gateway port to attach to.")


class HttpRouteSpec(ApiModel):
    """A Gateway API HTTPRoute berth manages for this resource: all traffic to the Service, and during a
    canary weighted between the stable and the new revision (docs/rollouts.md)."""

    parent_refs: list[GatewayParentReference] = Field(
        min_length=1, max_length=32, description="Gateways the route attaches to."
    )
    hostnames: list[Annotated[str, Field(max_length=253, pattern=GATEWAY_HOSTNAME_PATTERN)]] = Field(
        default_factory=list,
        max_length=16,
        description="Host names the route matches (Gateway API hostnames). Empty: the listeners' own.",
    )


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
    http_route: HttpRouteSpec | None = Field(
        default=None,
        description=(
            "Route clients through a Gateway API Gateway (needs the gateway.networking.k8s.io/v1 CRDs): "
            "berth creates an HTTPRoute named like the resource, with weighted backends during a canary. "
            "Changing it never restarts a pod; removing it deletes the route."
        ),
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
