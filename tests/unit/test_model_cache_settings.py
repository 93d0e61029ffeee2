"""spec.model.cache's rules (each field does what it says or is refused), the operator's cache root
and budget settings, and the reconcile's refusal of Node mode where the operator offers no root."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from berth_operator.api import InferenceDeploymentSpec
from berth_operator.api.model import ModelSpec
from berth_operator.handlers.checks import REASON_NO_MODEL_CACHE_ROOT, check_model_cache
from berth_operator.settings import OperatorSettings
from berth_operator.settings_model_cache import ModelCacheSettings


def model(**fields: Any) -> ModelSpec:
    return ModelSpec.model_validate({"name": "chat", "source": "hf://org/chat", **fields})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cache": {"mode": "PVC"}}, "claimName is required with mode PVC"),
        (
            {"cache": {"mode": "Node", "claimName": "shared"}},
            "claimName is required with mode PVC and only valid",
        ),
        ({"cache": {"mode": "Node", "budget": "1Ti"}}, "budget is only valid with mode PVC"),
        (
            {"cache": {"mode": "Node"}, "cacheSizeLimit": "10Gi"},
            "cacheSizeLimit .* only valid with cache mode Pod",
        ),
        (
            {"cache": {"mode": "Node"}, "source": "pvc://claim/llama"},
            "Node or PVC is only valid with an hf:// or s3://",
        ),
        (
            {"cache": {"mode": "PVC", "claimName": "s"}, "source": "file:///m"},
            "only valid with an hf:// or s3://",
        ),
        ({"cache": {"mode": "Cluster"}}, "'Pod', 'Node' or 'PVC'"),
    ],
)
def test_a_cache_field_that_would_do_nothing_is_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        model(**fields)


def test_accepted_cache_specs() -> None:
    assert model().cache_mode == "Pod"
    assert model(cache={"mode": "Node"}, source="s3://bucket/llama").cache_mode == "Node"
    assert model(cache={"mode": "PVC", "claimName": "shared", "budget": "2Ti"}).cache_mode == "PVC"
    assert model(cache={"mode": "Pod"}, cacheSizeLimit="10Gi").cache_mode == "Pod"


def test_the_operator_offers_no_node_cache_unless_given_a_root() -> None:
    assert OperatorSettings.from_environment({}).model_cache == ModelCacheSettings(None, 100 * 2**30)
    settings = OperatorSettings.from_environment(
        {"BERTH_MODEL_CACHE_ROOT": "/var/cache/berth-models/", "BERTH_MODEL_CACHE_BUDGET": "1T"}
    )
    assert settings.model_cache == ModelCacheSettings("/var/cache/berth-models", 10**12)


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        (
            {"BERTH_MODEL_CACHE_ROOT": "var/cache"},
            r"BERTH_MODEL_CACHE_ROOT='var/cache': expected an absolute folder",
        ),
        ({"BERTH_MODEL_CACHE_ROOT": "/"}, "other than /"),
        ({"BERTH_MODEL_CACHE_ROOT": "/var/../etc"}, "without '..'"),
        (
            {"BERTH_MODEL_CACHE_BUDGET": "0"},
            r"BERTH_MODEL_CACHE_BUDGET='0': expected a positive whole number",
        ),
        ({"BERTH_MODEL_CACHE_BUDGET": "lots"}, "e.g. 500Gi or 1T"),
        ({"BERTH_MODEL_CACHE_BUDGET": "500m"}, "whole number of bytes"),
    ],
)
def test_bad_cache_settings_stop_the_operator(environment: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OperatorSettings.from_environment(environment)


def spec(cache: dict[str, Any]) -> InferenceDeploymentSpec:
    return InferenceDeploymentSpec.model_validate(
        {"model": {"name": "chat", "source": "hf://org/chat", "cache": cache}}
    )


def test_node_mode_is_refused_where_the_operator_has_no_root() -> None:
    verdict = check_model_cache(spec({"mode": "Node"}), OperatorSettings())
    assert verdict is not None and not verdict.accepted and verdict.reason == REASON_NO_MODEL_CACHE_ROOT
    assert "spec.model.cache.mode 'Node'" in verdict.message and "BERTH_MODEL_CACHE_ROOT" in verdict.message
    assert "accepted here: Pod, or PVC" in verdict.message
    with_root = OperatorSettings(model_cache=ModelCacheSettings(root="/var/cache/berth-models"))
    assert check_model_cache(spec({"mode": "Node"}), with_root) is None
    assert check_model_cache(spec({"mode": "PVC", "claimName": "shared"}), OperatorSettings()) is None
