"""What every builder needs besides the spec: the owning resource and the operator's defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from berth_operator.api import InferenceDeploymentSpec
from berth_operator.api import resource as identity
from berth_operator.settings_model_cache import ModelCacheSettings


@dataclass(frozen=True)
class Owner:
    """The InferenceDeployment that owns the children (garbage collection follows it)."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": identity.API_VERSION,
            "kind": identity.KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class BuildContext:
    """One build: the owner, its parsed spec, the replica count to run, and operator defaults
    (the runtime image, the node-local model cache)."""

    owner: Owner
    spec: InferenceDeploymentSpec
    replicas: int
    default_runtime_image: str
    model_cache: ModelCacheSettings = field(default_factory=ModelCacheSettings)

    @property
    def runtime_image(self) -> str:
        return self.spec.runtime.image or self.default_runtime_image
