"""The observed view: one parse of the spec and status per event, and what it makes of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from berth_operator.builders import BuildContext
from berth_operator.builders.status import SpecVerdict
from berth_operator.handlers import observed
from berth_operator.handlers.context import OperatorContext
from berth_operator.handlers.observed import observe
from berth_operator.handlers.reconcile import reconcile
from berth_operator.settings import OperatorSettings

InferenceDeploymentFactory = Callable[..., dict[str, Any]]
SPEC = {"model": {"name": "m", "source": "hf://org/m"}, "replicas": 2}


def _body(spec: Any = SPEC, status: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": "chat", "namespace": "ml", "uid": "uid-chat", "generation": 4},
        "spec": spec,
    }
    if status is not None:
        body["status"] = status
    return body


def test_a_parsed_spec_becomes_the_build_with_the_replicas_to_run(settings: OperatorSettings) -> None:
    view = observe(_body(), settings)
    assert isinstance(view.build, BuildContext)
    assert (view.namespace, view.name, view.owner.uid, view.generation) == ("ml", "chat", "uid-chat", 4)
    assert view.build.replicas == 2
    assert view.build.runtime_image == settings.runtime_image


def test_a_refused_spec_is_kept_as_why(settings: OperatorSettings) -> None:
    view = observe(_body({"model": {"name": "m", "source": "ftp://nope"}}), settings)
    assert isinstance(view.build, SpecVerdict)
    assert not view.build.accepted
    assert "spec.model.source" in view.build.message


def test_a_status_the_models_cannot_read_counts_as_empty(settings: OperatorSettings) -> None:
    view = observe(_body(status={"phase": "Exploded"}), settings)
    assert view.status.phase is None


async def test_a_reconcile_parses_the_spec_once(
    context: OperatorContext,
    inference_deployment: InferenceDeploymentFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parses: list[object] = []
    parse = observed.parse_spec

    def counting(raw: object) -> object:
        parses.append(raw)
        return parse(raw)

    monkeypatch.setattr(observed, "parse_spec", counting)
    await reconcile(context, inference_deployment())
    assert len(parses) == 1, "apply and status sync share the reconcile's observed view"
