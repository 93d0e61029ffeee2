"""What every handler shares: the API, settings, metrics, a clock, per-resource locks and which
fields of each child berth owns.

One OperatorContext is built at start-up and handed to Kopf as its memo, so handlers take it as an
argument instead of reaching for globals, and tests build one with an InMemoryKubeApi.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from berth_operator.kube import FieldOwnership, KubeApi
from berth_operator.metrics import OperatorMetrics
from berth_operator.settings import OperatorSettings


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class OperatorContext:
    api: KubeApi
    settings: OperatorSettings
    metrics: OperatorMetrics
    clock: Callable[[], datetime] = utc_now
    ownership: FieldOwnership = field(default_factory=FieldOwnership)
    _locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    _rollout_locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    _managed: set[tuple[str, str]] = field(default_factory=set)
    _resync_requested: dict[tuple[str, str], bool] = field(default_factory=dict)

    def lock(self, namespace: str, name: str) -> asyncio.Lock:
        """Serialises status syncs of one InferenceDeployment (events of its pods arrive concurrently)."""
        return self._locks.setdefault((namespace, name), asyncio.Lock())

    def rollout_lock(self, namespace: str, name: str) -> asyncio.Lock:
        """Serialises the rollout planning and the workload writes of one InferenceDeployment (the
        reconcile, the rollout timer and the autoscaler all converge its Deployments), so no two
        plans start from the same state. Never held while taking `lock`'s turn the other way round."""
        return self._rollout_locks.setdefault((namespace, name), asyncio.Lock())

    def claim_sync(self, namespace: str, name: str) -> bool:
        """True when the caller should run the event-driven status sync; False when one is already
        running, which is then told to run once more (a burst of pod events costs two syncs)."""
        key = (namespace, name)
        if key in self._resync_requested:
            self._resync_requested[key] = True
            return False
        self._resync_requested[key] = False
        return True

    def sync_again(self, namespace: str, name: str) -> bool:
        """After a sync: whether events arrived meanwhile, so it must run once more."""
        key = (namespace, name)
        again = self._resync_requested.get(key, False)
        self._resync_requested[key] = False
        return again

    def release_sync(self, namespace: str, name: str) -> None:
        self._resync_requested.pop((namespace, name), None)

    def track(self, namespace: str, name: str) -> None:
        self._managed.add((namespace, name))
        self.metrics.managed_resources.set(len(self._managed))

    def forget(self, namespace: str, name: str) -> None:
        self._managed.discard((namespace, name))
        self._locks.pop((namespace, name), None)
        self._rollout_locks.pop((namespace, name), None)
        self.metrics.managed_resources.set(len(self._managed))
