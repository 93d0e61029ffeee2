"""Event-driven status syncs: a burst of pod events coalesces into at most two syncs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from berth_operator.handlers.context import OperatorContext
from berth_operator.handlers.reconcile import reconcile
from berth_operator.handlers.status_sync import follow
from berth_operator.kube import Forbidden, InMemoryKubeApi
from berth_operator.kube.kinds import INFERENCE_DEPLOYMENT, ResourceKind

OWNER: dict[str, Any] = {
    "apiVersion": "berth.dev/v1alpha1",
    "kind": "InferenceDeployment",
    "metadata": {"name": "chat", "namespace": "ml", "uid": "uid-chat", "generation": 1},
    "spec": {"model": {"name": "m", "source": "hf://org/m"}},
}


class YieldingApi(InMemoryKubeApi):
    """Yields to the event loop on every read, as a real API client does, and counts owner reads."""

    owner_reads = 0

    async def get(self, kind: ResourceKind, namespace: str, name: str) -> dict[str, Any] | None:
        if kind == INFERENCE_DEPLOYMENT:
            self.owner_reads += 1
        await asyncio.sleep(0)
        return await super().get(kind, namespace, name)


async def test_a_burst_of_events_costs_two_syncs_not_one_per_event(context: OperatorContext) -> None:
    api = YieldingApi()
    context.api = api
    await reconcile(context, api.put(OWNER))
    api.owner_reads = 0
    await asyncio.gather(*(follow(context, "ml", "chat") for _ in range(20)))
    assert api.owner_reads == 2
    await follow(context, "ml", "chat")  # the claim was released: a later event syncs again
    assert api.owner_reads == 3


async def test_a_failing_sync_releases_its_claim(context: OperatorContext) -> None:
    api = YieldingApi(forbidden_kinds={"InferenceDeployment"})
    context.api = api
    for _ in range(2):
        with pytest.raises(Forbidden):
            await follow(context, "ml", "chat")
    assert api.owner_reads == 2  # the second event was not swallowed by a claim left behind
