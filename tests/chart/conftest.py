"""Fixtures for the Helm chart's tests: a pinned Helm CLI and a renderer that returns parsed objects.

Helm is built from the Go module proxy by scripts/ensure-helm.sh on first use (minutes on a fresh
machine, milliseconds after), so these tests run the real `helm lint` / `helm template`, with the
chart's real values.schema.json validation, not an imitation of them.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "berth"
RELEASE = "berth"
NAMESPACE = "berth-system"

# Building Helm on a fresh machine takes minutes; the first test to ask for it pays that once.
HELM_BUILD_TIMEOUT_SECONDS = 1500


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.timeout(HELM_BUILD_TIMEOUT_SECONDS))


@pytest.fixture(scope="session")
def helm_binary() -> str:
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "ensure-helm.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"scripts/ensure-helm.sh failed:\n{result.stderr}")
    return result.stdout.strip()


class HelmError(Exception):
    """Helm refused the chart or its values; the message is Helm's own."""


class Rendered(list[dict[str, Any]]):
    """The objects `helm template` rendered, with look-ups by kind and name."""

    def find(self, kind: str, name: str | None = None) -> list[dict[str, Any]]:
        return [
            obj for obj in self if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name)
        ]

    def only(self, kind: str, name: str | None = None) -> dict[str, Any]:
        """The one object of a kind (and name); fails the test when there are none or several."""
        matches = self.find(kind, name)
        if len(matches) != 1:
            raise AssertionError(f"expected one {kind} {name or ''}, rendered {len(matches)}")
        return matches[0]

    def kinds(self) -> set[str]:
        return {obj["kind"] for obj in self}


@dataclass
class Chart:
    """Runs Helm against charts/berth with a given set of values."""

    helm: str
    values_dir: Path

    def run(self, *args: str, values: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
        command = [self.helm, *args]
        if values is not None:
            handle, name = tempfile.mkstemp(dir=self.values_dir, suffix=".yaml")
            with os.fdopen(handle, "w") as values_file:
                yaml.safe_dump(values, values_file)
            command += ["--values", name]
        return subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO_ROOT)

    def render(
        self,
        values: dict[str, Any] | None = None,
        *,
        release: str = RELEASE,
        namespace: str = NAMESPACE,
    ) -> Rendered:
        """`helm template` the chart; the rendered objects, or HelmError with Helm's message."""
        result = self.run("template", release, str(CHART_DIR), "--namespace", namespace, values=values or {})
        if result.returncode != 0:
            raise HelmError(_without_symlink_notes(result.stderr))
        return Rendered(document for document in yaml.safe_load_all(result.stdout) if document)


def _without_symlink_notes(stderr: str) -> str:
    """Helm notes that files/crds is a symlink on every call; keep only what went wrong."""
    return "\n".join(line for line in stderr.splitlines() if "found symbolic link in path" not in line)


@pytest.fixture(scope="session")
def chart(helm_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chart]:
    yield Chart(helm=helm_binary, values_dir=tmp_path_factory.mktemp("chart-values"))
