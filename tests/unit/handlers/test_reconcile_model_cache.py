"""A Node-mode model cache through a reconcile: refused (and said why) where the operator has no cache
root, rendered with the operator's root and budget where it has one."""

from __future__ import annotations

import kopf
import pytest
from reconcile_support import InferenceDeploymentFactory, conditions

from berth_operator.handlers.context import OperatorContext
from berth_operator.handlers.reconcile import reconcile
from berth_operator.kube import InMemoryKubeApi
from berth_operator.kube.kinds import DEPLOYMENT
from berth_operator.settings import OperatorSettings
from berth_operator.settings_model_cache import ModelCacheSettings

NODE_MODE = {"model": {"name": "m", "source": "hf://org/m", "cache": {"mode": "Node"}}}


async def test_node_mode_without_a_cache_root_is_refused(
    api: InMemoryKubeApi, context: OperatorContext, inference_deployment: InferenceDeploymentFactory
) -> None:
    with pytest.raises(kopf.PermanentError, match="BERTH_MODEL_CACHE_ROOT"):
        await reconcile(context, inference_deployment(NODE_MODE))
    assert conditions(api)["Accepted"] == ("False", "NodeModelCacheDisabled")
    assert api.stored(DEPLOYMENT, "ml", "chat") is None


async def test_node_mode_uses_the_operators_root_and_budget(
    api: InMemoryKubeApi, context: OperatorContext, inference_deployment: InferenceDeploymentFactory
) -> None:
    context.settings = OperatorSettings(
        model_cache=ModelCacheSettings(root="/srv/models", budget_bytes=10**12)
    )
    await reconcile(context, inference_deployment(NODE_MODE))
    pod = (api.stored(DEPLOYMENT, "ml", "chat") or {})["spec"]["template"]["spec"]
    assert {
        "name": "shared-model-cache",
        "hostPath": {"path": "/srv/models", "type": "DirectoryOrCreate"},
    } in pod["volumes"]
    fetch = next(container for container in pod["initContainers"] if container["name"] == "fetch-model")
    assert fetch["command"][-2:] == ["--cache-budget-bytes", str(10**12)]
