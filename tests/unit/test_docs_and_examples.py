"""The generated API reference is current, and every example is a valid InferenceDeployment."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from berth_operator import docs
from berth_operator.api import InferenceDeploymentSpec
from berth_operator.api import resource as identity

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def test_committed_api_reference_matches_the_models() -> None:
    assert (REPO / "docs" / docs.DOCS_FILE).read_text() == docs.render_api_reference(), (
        "run `python -m berth_operator.docs` and commit docs/"
    )


def test_api_reference_documents_every_section_and_rule() -> None:
    reference = docs.render_api_reference()
    for heading in (
        "## `spec.model`",
        "## `spec.autoscaling.slo`",
        "## `status.conditions[]`",
        "## `status.autoscaling`",
    ):
        assert heading in reference
    assert "autoscaling.minReplicas must be less than or equal to autoscaling.maxReplicas" in reference


def test_docs_check_mode_reports_drift(tmp_path: Path) -> None:
    assert docs.main(["--output-dir", str(tmp_path), "--check"]) == 1
    assert docs.main(["--output-dir", str(tmp_path)]) == 0
    assert docs.main(["--output-dir", str(tmp_path), "--check"]) == 0


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_examples_are_valid(path: Path) -> None:
    # local-chat.yaml names the GGUF file by a placeholder the demo fills in (its path is per machine).
    text = path.read_text().replace("${SMOLLM2_GGUF}", "/opt/models/smollm2.gguf")
    documents = [document for document in yaml.safe_load_all(text) if document]
    inference_deployments = [d for d in documents if d.get("kind") == identity.KIND]
    assert inference_deployments
    for document in inference_deployments:
        assert document["apiVersion"] == identity.API_VERSION
        InferenceDeploymentSpec.model_validate(document["spec"])


def test_chat_example_schedules_on_one_h100() -> None:
    document = yaml.safe_load((REPO / "examples" / "chat.yaml").read_text())
    spec = InferenceDeploymentSpec.model_validate(document["spec"])
    assert spec.resources.gpu.count == 1
    assert spec.resources.gpu.product == "NVIDIA-H100-80GB-HBM3"
