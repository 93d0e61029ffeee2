"""The operator's settings for the node-local model cache (spec.model.cache.mode Node).

A hostPath folder on every GPU node is the cluster admin's decision, not a tenant's: where it lives
(a disk with room for weights) and how much of it the cache may fill. So the root and the per-node
byte budget are operator settings (chart values operator.modelCache.*), and a spec can only ask to
use them. Without a root, Node mode is refused with a message that names this setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from berth_operator.api.common import parse_quantity

DEFAULT_BUDGET = "100Gi"
ROOT_VARIABLE = "BERTH_MODEL_CACHE_ROOT"
BUDGET_VARIABLE = "BERTH_MODEL_CACHE_BUDGET"


@dataclass(frozen=True)
class ModelCacheSettings:
    """Where Node-mode caches live on each node and how many bytes each may hold."""

    root: str | None = None
    """BERTH_MODEL_CACHE_ROOT: absolute host folder of the node-local model cache, created on each node
    that runs a Node-mode pod. Default empty: Node mode is refused (Pod and PVC modes work)."""
    budget_bytes: int = int(parse_quantity(DEFAULT_BUDGET))
    """BERTH_MODEL_CACHE_BUDGET: most bytes the cache may hold on one node, as a quantity (500Gi,
    1T). Default 100Gi. Before a download, least recently used entries not in use are evicted."""


def model_cache_from_environment(environ: Mapping[str, str]) -> ModelCacheSettings:
    root = environ.get(ROOT_VARIABLE, "").strip() or None
    if root is not None and (not root.startswith("/") or root.rstrip("/") == "" or "/../" in f"{root}/"):
        raise ValueError(
            f"{ROOT_VARIABLE}={root!r}: expected an absolute folder on the nodes other than / and without "
            "'..', e.g. /var/cache/berth-models"
        )
    raw_budget = environ.get(BUDGET_VARIABLE, "").strip() or DEFAULT_BUDGET
    try:
        budget = parse_quantity(raw_budget)
    except ValueError:
        budget = parse_quantity("0")
    if budget < 1 or budget != int(budget):
        raise ValueError(
            f"{BUDGET_VARIABLE}={raw_budget!r}: expected a positive whole number of bytes as a quantity, "
            "e.g. 500Gi or 1T"
        )
    return ModelCacheSettings(root=root.rstrip("/") if root else None, budget_bytes=int(budget))
