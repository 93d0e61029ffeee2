"""The runtime ConfigMap: the rendered command lines and revision, mounted read-only into every pod.

It makes what the operator decided inspectable (`kubectl get cm NAME-runtime -o yaml`, or
/etc/berth/config inside a pod) without reading the operator's code.
"""

from __future__ import annotations

import json
from typing import Any

from berth_operator.builders.context import BuildContext
from berth_operator.builders.labels import common_labels, revision_hash
from berth_operator.builders.runtime_args import fetch_command, serve_command


def config_map_name(owner_name: str) -> str:
    return f"{owner_name}-runtime"


def build_config_map(context: BuildContext) -> dict[str, Any]:
    spec = context.spec
    config = {
        "revision": revision_hash(context),
        "image": context.runtime_image,
        "serveCommand": serve_command(spec),
        "fetchCommand": fetch_command(spec) if spec.model.is_downloaded else None,
        "model": spec.model.to_wire(),
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": config_map_name(context.owner.name),
            "namespace": context.owner.namespace,
            "labels": common_labels(context.owner.name),
            "ownerReferences": [context.owner.reference()],
        },
        "data": {"runtime.json": json.dumps(config, indent=2, sort_keys=True) + "\n"},
    }
