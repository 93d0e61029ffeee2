"""One InferenceDeployment as observed for one event: read once, parsed once, built on once.

Every handler step that starts from the resource -- a reconcile, an event-driven status sync, an
autoscaling evaluation -- turns the object it read into an `ObservedResource` here and hands that
on, so the spec is parsed and the `BuildContext` made in one place, once per event, and the status
it was read with goes along. A spec the models refuse is kept as the `SpecVerdict` that says why;
a status they cannot read counts as empty (and is rewritten by the next sync).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from berth_operator.api import InferenceDeploymentStatus
from berth_operator.api.status import CONDITION_ACCEPTED
from berth_operator.builders import BuildContext, Owner
from berth_operator.builders.replicas import effective_replicas
from berth_operator.builders.status import SpecVerdict
from berth_operator.handlers.checks import parse_spec
from berth_operator.settings import OperatorSettings


def plain(value: Any) -> Any:
    """Kopf's read-only body views as plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def parse_status(raw: Any) -> InferenceDeploymentStatus:
    """The status as read; a status the models cannot read is treated as empty (and rewritten)."""
    try:
        return InferenceDeploymentStatus.model_validate(raw or {})
    except ValidationError:
        return InferenceDeploymentStatus()


@dataclass(frozen=True)
class ObservedResource:
    """An InferenceDeployment as one event saw it."""

    body: dict[str, Any]
    """The object as read (plain dicts): what Events name as their involved object."""
    owner: Owner
    generation: int | None
    status: InferenceDeploymentStatus
    build: BuildContext | SpecVerdict
    """What the children are built from -- the parsed spec, the replicas to run, the operator's
    defaults -- or, for a spec the models refuse, why."""

    @property
    def accepted_as_it_is(self) -> bool:
        """Whether the reconcile has accepted this very generation of the spec: only then may a timer
        (the autoscaler, the rollout) apply Deployments built from it (a refused or not yet checked
        spec never is)."""
        accepted = self.status.condition(CONDITION_ACCEPTED)
        return (
            accepted is not None
            and accepted.status == "True"
            and accepted.observed_generation == self.generation
        )

    @property
    def namespace(self) -> str:
        return self.owner.namespace

    @property
    def name(self) -> str:
        return self.owner.name


def observe(raw_body: Mapping[str, Any], settings: OperatorSettings) -> ObservedResource:
    """Parse an InferenceDeployment as read from the API server or handed over by Kopf."""
    body: dict[str, Any] = plain(raw_body)
    metadata = body["metadata"]
    owner = Owner(metadata["name"], metadata["namespace"], metadata.get("uid", ""))
    spec = parse_spec(body.get("spec", {}))
    status = parse_status(body.get("status"))
    build: BuildContext | SpecVerdict
    if isinstance(spec, SpecVerdict):
        build = spec
    else:
        build = BuildContext(
            owner=owner,
            spec=spec,
            replicas=effective_replicas(spec, status),
            default_runtime_image=settings.runtime_image,
            model_cache=settings.model_cache,
        )
    return ObservedResource(body, owner, metadata.get("generation"), status, build)
