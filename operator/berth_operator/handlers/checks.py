"""Checks a spec that passed the schema but may still never work: parse errors the CRD could not
catch, a GPU product outside the operator's allow-list, a node-local model cache the operator has no
root for, a referenced Secret that does not exist.

Each failure is a SpecVerdict (Accepted=False with a reason and a message naming the field and value),
which becomes a status condition and an Event instead of a crash loop.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from berth_operator.api import InferenceDeploymentSpec
from berth_operator.api import resource as identity
from berth_operator.builders.status import SpecVerdict
from berth_operator.kube import Forbidden, KubeApi
from berth_operator.kube.kinds import SECRET
from berth_operator.settings import OperatorSettings

REASON_INVALID_SPEC = "InvalidSpec"
REASON_UNSUPPORTED_GPU = "UnsupportedGpuProduct"
REASON_SECRET_NOT_FOUND = "SecretNotFound"
REASON_INVALID_NAME = "InvalidName"
REASON_NO_MODEL_CACHE_ROOT = "NodeModelCacheDisabled"


def check_name(name: str) -> SpecVerdict | None:
    """The name becomes a Service name: an RFC 1035 label (the CRD checks it too, on create)."""
    if len(name) <= identity.NAME_MAX_LENGTH and re.fullmatch(identity.NAME_PATTERN, name):
        return None
    return SpecVerdict(False, REASON_INVALID_NAME, identity.NAME_RULE_MESSAGE + f" (got {name!r})")


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem: `spec.<field>: <what is wrong> (got <value>)`."""
    problems = []
    for detail in error.errors(include_url=False):
        location = ".".join(str(part) for part in ("spec", *detail["loc"]))
        value = detail.get("input")
        shown = f" (got {value!r})" if not isinstance(value, dict) else ""
        problems.append(f"{location}: {detail['msg']}{shown}")
    return "; ".join(problems)


def parse_spec(raw_spec: Any) -> InferenceDeploymentSpec | SpecVerdict:
    try:
        return InferenceDeploymentSpec.model_validate(raw_spec)
    except ValidationError as error:
        return SpecVerdict(False, REASON_INVALID_SPEC, describe_validation_error(error))


def check_gpu_product(spec: InferenceDeploymentSpec, settings: OperatorSettings) -> SpecVerdict | None:
    product = spec.resources.gpu.product
    if settings.gpu_products and product is not None and product not in settings.gpu_products:
        return SpecVerdict(
            False,
            REASON_UNSUPPORTED_GPU,
            f"spec.resources.gpu.product {product!r} is not offered by this cluster; "
            f"accepted: {', '.join(settings.gpu_products)}",
        )
    return None


def check_model_cache(spec: InferenceDeploymentSpec, settings: OperatorSettings) -> SpecVerdict | None:
    """Node mode needs the operator's host folder; without one the pods would have nowhere to cache."""
    if spec.model.cache_mode == "Node" and spec.model.is_downloaded and settings.model_cache.root is None:
        return SpecVerdict(
            False,
            REASON_NO_MODEL_CACHE_ROOT,
            "spec.model.cache.mode 'Node' needs a node-local model cache, which this operator does not "
            "offer (BERTH_MODEL_CACHE_ROOT, chart value operator.modelCache.root, is unset); accepted "
            "here: Pod, or PVC with a ReadWriteMany claimName",
        )
    return None


async def check_secrets(api: KubeApi, namespace: str, spec: InferenceDeploymentSpec) -> SpecVerdict | None:
    """The first referenced Secret (or Secret key) that is missing, as a SpecVerdict; None when all exist.

    Without permission to read Secrets the check is skipped: the pods then report the problem.
    """
    wanted: list[tuple[str, str, str | None]] = []
    if spec.model.credentials_secret_ref is not None:
        wanted.append(("spec.model.credentialsSecretRef", spec.model.credentials_secret_ref.name, None))
    if spec.serving.api_key_secret_ref is not None:
        reference = spec.serving.api_key_secret_ref
        wanted.append(("spec.serving.apiKeySecretRef", reference.name, reference.key))
    for field_path, name, key in wanted:
        try:
            secret = await api.get(SECRET, namespace, name)
        except Forbidden:
            return None
        if secret is None:
            message = f"{field_path}: Secret {name!r} not found in namespace {namespace!r}"
            return SpecVerdict(False, REASON_SECRET_NOT_FOUND, message)
        if key is not None and key not in {**secret.get("data", {}), **secret.get("stringData", {})}:
            message = f"{field_path}: Secret {name!r} has no key {key!r}"
            return SpecVerdict(False, REASON_SECRET_NOT_FOUND, message)
    return None
