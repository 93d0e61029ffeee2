"""The operator's image, built from the checkout by scripts/build-images.sh and run with buildah.

Why: the chart installs this image, so it must exist, start, and do the operator's job from inside
itself: its entrypoint answers --help, and run as the image's non-root user against the local
control plane (the kubeconfig bind-mounted in) it brings an InferenceDeployment on the simulated GPU
nodes to Ready, writing nothing outside /tmp (what a read-only root filesystem allows). The archive
users push carries the OCI source/version/revision annotations and labels, and the pinned lock of
what pip installed is in the image and beside the archive, with an SBOM made from it. (Here, not
in tests/images, so that it shares the session's one local control plane.)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.cluster.processes import free_port
from tests.images.image_build import (
    REPO_ROOT,
    BuiltImage,
    Container,
    build_images,
    buildah_missing,
    files_written_since,
    oci_archive_manifest_and_config,
    stop_process_group,
)
from tests.integration.idep_reads import wait_idep_ready
from tests.integration.support import ClusterAccess, condition

pytestmark = pytest.mark.slow

NON_ROOT_USER = "65532:65532"
KUBECONFIG_INSIDE = "/etc/berth/kubeconfig"


@pytest.fixture(scope="module")
def operator_image(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """scripts/build-images.sh operator, as CI runs it: the base and the dependency layer come from
    the cache after the first run, so this costs the code layer and the export (seconds). Skipped,
    with the reason, where buildah or mmdebstrap is missing; scripts/test.sh installs both."""
    if reason := buildah_missing():
        pytest.skip(reason)
    (image,) = build_images(tmp_path_factory.mktemp("images"), "operator")
    print(f"\n{image.name}: {image.megabytes} MB archive, built in {image.build_seconds} s")
    return image


def _is_ancestor_of_head(commit: str) -> bool:
    def git(*args: str) -> int:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, check=False).returncode

    verified = git("rev-parse", "--verify", f"{commit}^{{commit}}") == 0
    return len(commit) == 40 and verified and git("merge-base", "--is-ancestor", commit, "HEAD") == 0


def test_the_archive_is_labelled_non_root_and_locked(operator_image: BuiltImage) -> None:
    manifest, config = oci_archive_manifest_and_config(operator_image.archive)

    annotations = manifest["annotations"]
    assert annotations["org.opencontainers.image.source"] == "https://github.com/berth-dev/berth"
    assert annotations["org.opencontainers.image.version"] == "0.1.0"
    # The commit built from: this checkout's, though others may have committed on top of it since.
    revision = annotations["org.opencontainers.image.revision"].removesuffix("-dirty")
    assert _is_ancestor_of_head(revision), revision
    labels = config["config"]["Labels"]
    assert labels["org.opencontainers.image.revision"] == annotations["org.opencontainers.image.revision"]
    assert config["config"]["User"] == NON_ROOT_USER
    assert config["config"]["Entrypoint"] == ["python", "-m", "berth_operator"]
    lock = operator_image.sibling(".pip-freeze.txt").read_text().splitlines()
    assert lock and all("==" in line for line in lock), lock
    assert any(line.startswith("kopf==") for line in lock)
    assert not any(line.lower().startswith(("torch==", "triton==")) for line in lock)
    sbom = json.loads(operator_image.sibling(".cdx.json").read_text())
    assert sorted(f"{c['name']}=={c['version']}" for c in sbom["components"]) == sorted(lock)


def test_the_entrypoint_starts_and_answers_help(operator_image: BuiltImage) -> None:
    _, config = oci_archive_manifest_and_config(operator_image.archive)
    container = Container(operator_image.reference)
    try:
        help_run = container.run([*config["config"]["Entrypoint"], "--help"])
        lock_in_image = container.run(["cat", "/opt/berth/pip-freeze.txt"])
        whoami = container.run(["python", "-c", "import os; print(os.getuid(), os.getgid())"])
    finally:
        container.remove()

    assert help_run.returncode == 0, help_run.stderr
    assert "reconciles InferenceDeployments" in help_run.stdout
    assert "--namespace" in help_run.stdout
    assert lock_in_image.stdout == operator_image.sibling(".pip-freeze.txt").read_text()
    assert whoami.stdout.split() == ["65532", "65532"]


def test_skopeo_copies_the_archive_as_the_readme_pushes_it(
    operator_image: BuiltImage, tmp_path: Path
) -> None:
    """The README pushes with `skopeo copy oci-archive:... docker://...`; with no registry here the
    destination is an OCI layout, which reads the same source the same way."""
    if shutil.which("skopeo") is None:
        pytest.skip("needs skopeo (Debian: apt-get install skopeo)")
    layout = tmp_path / "layout"
    subprocess.run(
        ["skopeo", "copy", "--quiet", f"oci-archive:{operator_image.archive}", f"oci:{layout}:pushed"],
        check=True,
        timeout=300,
    )
    (entry,) = json.loads((layout / "index.json").read_text())["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "pushed"
    manifest = json.loads((layout / "blobs" / entry["digest"].replace(":", "/")).read_text())
    original, _ = oci_archive_manifest_and_config(operator_image.archive)
    assert manifest["layers"] == original["layers"]


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.mark.integration
def test_the_operator_in_its_image_brings_a_resource_to_ready(
    operator_image: BuiltImage, crds: ClusterAccess, namespace: str, tmp_path: Path
) -> None:
    container = Container(operator_image.reference)
    try:
        written = _reconcile_to_ready_from_inside(container, crds, namespace, tmp_path)
    finally:
        container.remove()
    assert written == [], f"the operator wrote outside /tmp (a read-only root would refuse): {written}"


def _reconcile_to_ready_from_inside(
    container: Container, crds: ClusterAccess, namespace: str, tmp_path: Path
) -> list[str]:
    """Runs the image's operator against the cluster until one resource is Ready and deleted again,
    stops it with SIGTERM (it must exit 0), and returns what it wrote outside /tmp."""
    # Self-contained (certificates inline) and readable by the image's user, mounted read-only.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(crds.kubectl("config", "view", "--raw", "--flatten"))
    kubeconfig.chmod(0o644)
    health_port = free_port()
    marker = tmp_path / "started"
    marker.touch()
    time.sleep(0.01)
    log_path = tmp_path / "operator.log"
    command = container.command(
        ["python", "-m", "berth_operator", "--namespace", namespace],
        mounts={kubeconfig: KUBECONFIG_INSIDE},
        env={
            "KUBECONFIG": KUBECONFIG_INSIDE,
            "BERTH_HEALTH_PORT": str(health_port),
            "BERTH_METRICS_PORT": str(free_port()),
        },
    )
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 90
        while not _healthy(health_port):
            assert process.poll() is None, f"the operator exited:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"no /healthz in 90 s:\n{log_path.read_text()}"
            time.sleep(0.5)
        crds.apply(
            {
                "apiVersion": "berth.dev/v1alpha1",
                "kind": "InferenceDeployment",
                "metadata": {"name": "chat"},
                "spec": {
                    "model": {
                        "name": "qwen",
                        "source": "hf://Qwen/Qwen2.5-0.5B-Instruct",
                        "revision": "main",
                    },
                    "resources": {"gpu": {"count": 1}},
                },
            },
            namespace=namespace,
        )
        try:
            status = wait_idep_ready(crds, namespace, "chat", replicas=1)
        except AssertionError:
            print(f"\n----- operator log -----\n{log_path.read_text()}")
            raise
        assert (condition({"status": status}, "Accepted") or {}).get("status") == "True"
        assert (condition({"status": status}, "Ready") or {}).get("status") == "True"
        # Release the finalizer while the operator still runs, so the namespace can go.
        crds.kubectl("delete", "inferencedeployment", "chat", "--timeout=60s", namespace=namespace)
    finally:
        stop_process_group(process)
    assert process.returncode == 0, log_path.read_text()
    with container.mounted() as root:
        return files_written_since(
            root, marker, allowed=("tmp", "proc", "sys", "dev", "run"), mount_points=(KUBECONFIG_INSIDE,)
        )
