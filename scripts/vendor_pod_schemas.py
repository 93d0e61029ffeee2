"""Writes operator/berth_operator/api/pod_schemas.json: Kubernetes' own OpenAPI schema of core/v1
Affinity, made structural for a CRD.

Why vendored: spec.scheduling.affinity is passed into the pod template as is, so it must be exactly a
core/v1 Affinity; with Kubernetes' schema in the CRD the API server rejects `nodeAffinity: everywhere`
or an unknown key at `kubectl apply`, instead of the Deployment failing later. The source is the
OpenAPI v3 document in the k8s.io/kubernetes module that tests/cluster pins (the Go module cache has
it once `python -m tests.cluster build` ran). Rerun after bumping that version:

    python scripts/vendor_pod_schemas.py
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "operator" / "berth_operator" / "api" / "pod_schemas.json"
ROOTS = {"affinity": "io.k8s.api.core.v1.Affinity"}
COLLECTION_BOUND = 64
# The OpenAPI document leaves these enums to prose; the API server's pod validation enforces them.
ENUMS = {
    "io.k8s.api.core.v1.NodeSelectorRequirement": {
        "operator": ["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    },
    "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement": {
        "operator": ["In", "NotIn", "Exists", "DoesNotExist"]
    },
}


def _kubernetes_module_dir() -> Path:
    go_mod = (ROOT / "tests" / "cluster" / "go.mod").read_text()
    version = re.search(r"^\s*k8s\.io/kubernetes\s+(v\S+)", go_mod, re.MULTILINE)
    if version is None:
        sys.exit("tests/cluster/go.mod pins no k8s.io/kubernetes version")
    cache = subprocess.run(
        ["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return Path(cache) / f"k8s.io/kubernetes@{version.group(1)}"


def _structural(node: dict[str, Any], schemas: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    if "allOf" in node:  # {allOf: [{$ref}], description}: the reference, with the field's description
        [reference] = node["allOf"]
        target = _structural({"$ref": reference["$ref"]}, schemas)
        return {**target, **({"description": node["description"]} if "description" in node else {})}
    if "$ref" in node:
        definition = node["$ref"].rsplit("/", 1)[-1]
        return _structural(schemas[definition], schemas, definition)
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            result[key] = {field: _structural(child, schemas) for field, child in value.items()}
            for field, values in ENUMS.get(name or "", {}).items():
                result[key][field]["enum"] = values
        elif key == "items" or key == "additionalProperties":
            result[key] = _structural(value, schemas)
        elif key in ("default", "format"):
            continue  # no server-side defaults in berth's spec; int32/int64 formats are implied
        else:
            result[key] = value
    # Bounds the API server's CEL cost estimator (and request sizes) need; Kubernetes sets none.
    if result.get("type") == "array":
        result.setdefault("maxItems", COLLECTION_BOUND)
    if isinstance(result.get("additionalProperties"), dict):
        result.setdefault("maxProperties", COLLECTION_BOUND)
    return result


def main() -> int:
    document = _kubernetes_module_dir() / "api" / "openapi-spec" / "v3" / "api__v1_openapi.json"
    schemas = json.loads(document.read_text())["components"]["schemas"]
    vendored = {field: _structural({"$ref": f"#/{root}"}, schemas) for field, root in ROOTS.items()}
    TARGET.write_text(json.dumps(vendored, indent=1, sort_keys=True) + "\n")
    print(f"wrote {TARGET.relative_to(ROOT)} from {document}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
