"""Building berth's images from the checkout with scripts/build-images.sh, and running them with buildah.

Why: the images are what users run, so the tests run them too -- built by the same script users and CI
run, started with ``buildah run`` (no container daemon here: chroot isolation, the host's network),
read back from the OCI archive the script writes, the archive a user pushes with skopeo.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-images.sh"
_BUILT = re.compile(
    r"^(?P<name>berth-\w+) (?P<archive>\S+\.oci\.tar) (?P<megabytes>\d+) MB built in (?P<seconds>\d+) s"
)


def _buildah_argv() -> list[str]:
    """buildah with the storage driver scripts/build-images.sh used (BERTH_STORAGE_DRIVER, e.g. vfs)."""
    driver = os.environ.get("BERTH_STORAGE_DRIVER")
    return ["buildah", *([f"--storage-driver={driver}"] if driver else [])]


def buildah_missing() -> str | None:
    """Why the image tests cannot run here, or None (scripts/test.sh installs both in CI)."""
    missing = [tool for tool in ("buildah", "mmdebstrap") if shutil.which(tool) is None]
    return f"needs {' and '.join(missing)} (Debian: apt-get install {' '.join(missing)})" if missing else None


@dataclass(frozen=True)
class BuiltImage:
    """One image the script built: its local reference, archive and what it printed."""

    name: str
    reference: str
    archive: Path
    megabytes: int
    build_seconds: int

    def sibling(self, suffix: str) -> Path:
        """A file written beside the archive: ``.pip-freeze.txt``, ``.cdx.json``."""
        return self.archive.with_name(self.archive.name.removesuffix(".oci.tar") + suffix)


def build_images(output: Path, *images: str, smoke: bool = False, timeout: float = 3000) -> list[BuiltImage]:
    """Runs scripts/build-images.sh with buildah; the images it reports, or RuntimeError with its log."""
    command = ["bash", str(BUILD_SCRIPT), *images, "--output", str(output), *(["--smoke"] if smoke else [])]
    result = subprocess.run(
        command,
        env={**os.environ, "BERTH_IMAGE_TOOL": "buildah"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO_ROOT,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-8000:]}")
    built = []
    for line in result.stdout.splitlines():
        if match := _BUILT.match(line):
            version = Path(match["archive"]).name.removesuffix(".oci.tar").rsplit("-", 1)[1]
            built.append(
                BuiltImage(
                    name=match["name"],
                    reference=f"localhost/{match['name']}:{version}",
                    archive=Path(match["archive"]),
                    megabytes=int(match["megabytes"]),
                    build_seconds=int(match["seconds"]),
                )
            )
    return built


def oci_archive_manifest_and_config(archive: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The image manifest (annotations) and config (labels, user, entrypoint) inside an OCI archive."""
    with tarfile.open(archive) as tar:

        def blob(digest: str) -> dict[str, Any]:
            member = tar.extractfile(f"blobs/{digest.replace(':', '/')}")
            assert member is not None, f"{digest} is not in {archive}"
            return json.load(member)

        index_file = tar.extractfile("index.json")
        assert index_file is not None, f"{archive} has no index.json"
        (descriptor,) = json.load(index_file)["manifests"]
        manifest = blob(descriptor["digest"])
        return manifest, blob(manifest["config"]["digest"])


class Container:
    """A buildah working container of an image; removed by ``remove``."""

    def __init__(self, image: str) -> None:
        self.name = _buildah("from", "--quiet", image).strip()

    def command(
        self, argv: list[str], mounts: dict[Path, str] | None = None, env: dict[str, str] | None = None
    ) -> list[str]:
        """The ``buildah run`` command line that runs argv in this container."""
        options = [f"--volume={host}:{inside}:ro" for host, inside in (mounts or {}).items()]
        options += [f"--env={key}={value}" for key, value in (env or {}).items()]
        return [*_buildah_argv(), "run", "--isolation=chroot", *options, self.name, "--", *argv]

    def run(self, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(argv), capture_output=True, text=True, timeout=timeout, check=False
        )

    @contextmanager
    def mounted(self) -> Iterator[Path]:
        """The container's root filesystem on the host, for looking at what a run wrote."""
        yield Path(_buildah("mount", self.name).strip())
        _buildah("umount", self.name)

    def remove(self) -> None:
        _buildah("rm", self.name)


def _buildah(*args: str) -> str:
    result = subprocess.run(
        [*_buildah_argv(), *args], capture_output=True, text=True, timeout=300, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"buildah {' '.join(args)} failed: {result.stderr}")
    return result.stdout


def _descendants(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return [grandchild for child in children for grandchild in (child, *_descendants(child))]


def stop_process_group(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Stops what ``buildah run`` started (in its own session) as a kubelet would: SIGTERM to the
    program inside (buildah answers its own SIGTERM by killing its child), SIGKILL to the group if slow."""
    if process.poll() is not None:
        return
    descendants = _descendants(process.pid)
    os.kill(descendants[-1] if descendants else process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)


def files_written_since(
    root: Path, marker: Path, allowed: tuple[str, ...], mount_points: tuple[str, ...]
) -> list[str]:
    """Paths under root (one filesystem) changed after marker, outside the allowed top-level folders
    and other than the bind-mount points ``buildah run`` made (and their parent folders)."""
    since = marker.stat().st_mtime
    expected = {"/", *(f"/{folder}" for folder in allowed)}
    for mount_point in mount_points:
        expected |= {str(path) for path in (Path(mount_point), *Path(mount_point).parents)}
    written = []
    for directory, folders, files in os.walk(root):
        relative = Path(directory).relative_to(root)
        if relative.parts and relative.parts[0] in allowed:
            folders.clear()
            continue
        for entry in (*files, *folders):
            inside = str(Path("/") / relative / entry)
            if inside not in expected and (Path(directory) / entry).lstat().st_mtime > since:
                written.append(inside)
    return written
