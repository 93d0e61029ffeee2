"""Fixtures for the image tests: the operator image built once per session from the checkout, and the
local control plane's fixtures (tests/integration/conftest.py) for running it against a cluster.

Skipped, with the reason, where buildah or mmdebstrap is missing; scripts/test.sh installs both.
"""

from __future__ import annotations

import pytest

from tests.images.image_build import BuiltImage, build_images, buildah_missing
from tests.integration.conftest import (  # noqa: F401 -- fixtures and the build-first hook, shared
    cluster,
    crds,
    namespace,
    pytest_collection_finish,
    pytest_runtest_makereport,
)


@pytest.fixture(scope="session")
def operator_image(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """scripts/build-images.sh operator, as CI runs it: the base and the dependency layer come from
    the cache after the first run, so this costs the code layer and the export (seconds)."""
    if reason := buildah_missing():
        pytest.skip(reason)
    (image,) = build_images(tmp_path_factory.mktemp("images"), "operator")
    print(f"\n{image.name}: {image.megabytes} MB archive, built in {image.build_seconds} s")
    return image
