"""Generates the InferenceDeployment CustomResourceDefinition from the API models.

`python -m berth_operator.crd` writes crds/inferencedeployments.berth.dev.yaml; `--check` exits 1
when the committed file differs from what the models generate (the file is never edited by hand).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from berth_operator.api import InferenceDeploymentSpec, InferenceDeploymentStatus
from berth_operator.api import resource as identity
from berth_operator.api.base import cel_matches
from berth_operator.schema import structural_schema

CRD_FILE = f"{identity.CRD_NAME}.yaml"

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Model", "type": "string", "jsonPath": ".spec.model.name", "description": "Served model name."},
    {
        "name": "Revision",
        "type": "string",
        "jsonPath": ".status.revision.current",
        "description": "Pod revision most ready replicas run.",
    },
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": ".status.ready",
        "description": "Ready/desired replicas.",
    },
    {
        "name": "Desired",
        "type": "integer",
        "jsonPath": ".status.desiredReplicas",
        "description": "Replicas the operator drives towards.",
    },
    {
        "name": "TTFT-p95",
        "type": "number",
        "jsonPath": ".status.autoscaling.signals.ttftP95Milliseconds",
        "description": "95th percentile time to first token, milliseconds.",
    },
    {
        "name": "SLO-1h",
        "type": "number",
        "jsonPath": ".status.economics.lastHour.ttftAttainmentPercent",
        "description": "Percent of requests within the TTFT target over the last hour.",
    },
    {
        "name": "Rollout",
        "type": "string",
        "jsonPath": ".status.rollout.summary",
        "description": "Rollout phase, canary step and last verdict.",
    },
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Summary state."},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def resource_schema() -> dict[str, Any]:
    """The openAPIV3Schema of the whole resource."""
    return {
        "type": "object",
        "description": (
            "InferenceDeployment runs one large language model as a dedicated, autoscaled deployment "
            "of berth's inference runtime on GPU nodes."
        ),
        "properties": {
            "apiVersion": {"type": "string", "description": "API version: berth.dev/v1alpha1."},
            "kind": {"type": "string", "description": "Kind: InferenceDeployment."},
            # The API server allows no more here than restrictions on metadata.name.
            "metadata": {
                "type": "object",
                "properties": {
                    "name": {
                        "type": "string",
                        "maxLength": identity.NAME_MAX_LENGTH,
                        "x-kubernetes-validations": [
                            {
                                "rule": cel_matches("self", identity.NAME_PATTERN),
                                "message": identity.NAME_RULE_MESSAGE,
                            }
                        ],
                    }
                },
            },
            "spec": structural_schema(InferenceDeploymentSpec, with_defaults=True),
            "status": structural_schema(InferenceDeploymentStatus, with_defaults=False),
        },
        "required": ["spec"],
    }


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition manifest."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": identity.CRD_NAME,
            "labels": {"app.kubernetes.io/name": "berth", "app.kubernetes.io/part-of": "berth"},
        },
        "spec": {
            "group": identity.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": identity.KIND,
                "listKind": f"{identity.KIND}List",
                "plural": identity.PLURAL,
                "singular": identity.SINGULAR,
                "shortNames": list(identity.SHORT_NAMES),
                "categories": list(identity.CATEGORIES),
            },
            "versions": [
                {
                    "name": identity.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": resource_schema()},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


def render_crd() -> str:
    header = "# Generated by `python -m berth_operator.crd` from berth_operator.api. Do not edit.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m berth_operator.crd", description=__doc__)
    parser.add_argument("--output-dir", type=Path, default=Path("crds"), help="default: crds/")
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args(argv)
    target = args.output_dir / CRD_FILE
    rendered = render_crd()
    if args.check:
        current = target.read_text() if target.exists() else ""
        if current != rendered:
            print(f"{target} is out of date: run `python -m berth_operator.crd`", file=sys.stderr)
            return 1
        return 0
    args.output_dir.mkdir(parents=True, exist_ok=True)
    target.write_text(rendered)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
