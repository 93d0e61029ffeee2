"""The real model as an InferenceDeployment on the local bed: examples/local-chat.yaml with the GGUF
file's path filled in, and small reads of what it serves.

Why here: the demo and the end-to-end tests deploy the same manifest, so the example a user reads is
the one the tests prove.
"""

from __future__ import annotations

import copy
import json
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.integration.support import ClusterAccess, wait_for
from tests.smollm2_reference import smollm2_gguf_file

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "local-chat.yaml"
PLACEHOLDER = "${SMOLLM2_GGUF}"
LOCAL_ADDRESS_ANNOTATION = "berth.dev/local-address"


def local_model(name: str, **spec: Any) -> dict[str, Any]:
    """examples/local-chat.yaml named `name`, the GGUF path filled in, `spec` sections merged over it."""
    resource = yaml.safe_load(EXAMPLE.read_text().replace(PLACEHOLDER, str(smollm2_gguf_file())))
    resource["metadata"]["name"] = name
    for section, value in spec.items():
        current = resource["spec"].get(section)
        if isinstance(current, dict) and isinstance(value, dict):
            resource["spec"][section] = {**copy.deepcopy(current), **value}
        else:
            resource["spec"][section] = value
    return dict(resource)


def service_address(cluster: ClusterAccess, namespace: str, name: str, timeout: float = 30.0) -> str:
    """`http://127.0.0.1:PORT`: where the local Service proxy answers for the resource's Service."""

    def annotated() -> str | None:
        service = cluster.get_or_none("service", name, namespace=namespace)
        address = ((service or {}).get("metadata", {}).get("annotations") or {}).get(LOCAL_ADDRESS_ANNOTATION)
        return f"http://{address}" if address else None

    return wait_for(annotated, timeout, f"the local address of Service {namespace}/{name}")


def get_json(url: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())
