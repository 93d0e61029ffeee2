"""Builds the local control plane's binaries once and caches them outside the work tree.

Why: there is no Docker here, so berth's integration tests run a real Kubernetes control plane
compiled from the Kubernetes Go modules (tests/cluster/main.go) plus KWOK. Compiling Kubernetes
takes many minutes on a small machine, so the result is cached under
``${XDG_CACHE_HOME:-~/.cache}/berth/cluster/<k8s-version>-<hash>/bin``, keyed by the Kubernetes
release and a hash of go.mod, go.sum, main.go and the KWOK version: an unchanged tree reuses the
binaries and a second start costs seconds. Go's own module and build caches stay in their default
places (also outside the tree). The build's output goes to stderr so it shows in CI logs.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

KWOK_MODULE = "sigs.k8s.io/kwok"
KWOK_VERSION = "v0.8.0"
MODULE_DIR = Path(__file__).resolve().parent
MULTI_CALL_BINARY = "berth-cluster"
TOOLS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
_GO_BUILD_FLAGS = ("-trimpath", "-ldflags=-s -w")
_VERSION_PACKAGES = ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
_KEYED_FILES = ("go.mod", "go.sum", "main.go")


class BuildError(RuntimeError):
    """The Go toolchain is missing or a build failed; the message says which and how to fix it."""


@dataclass(frozen=True)
class Binaries:
    """Paths of the built tools. ``bin_dir`` holds every tool by name (put it on PATH)."""

    bin_dir: Path

    def tool(self, name: str) -> Path:
        """The path of one tool: a name from TOOLS, or "kwok"."""
        return self.bin_dir / name

    @property
    def kubectl(self) -> Path:
        return self.tool("kubectl")


def kubernetes_version() -> str:
    """The k8s.io/kubernetes release pinned in tests/cluster/go.mod, e.g. "v1.35.4"."""
    go_mod = (MODULE_DIR / "go.mod").read_text()
    match = re.search(r"^\s*k8s\.io/kubernetes\s+(v\S+)", go_mod, re.MULTILINE)
    if match is None:
        raise BuildError(f"{MODULE_DIR / 'go.mod'} does not require k8s.io/kubernetes at a version")
    return match.group(1)


def _version_ldflags() -> str:
    """Stamps the release into the binaries, as Kubernetes' own build does (``kubectl version``)."""
    version = kubernetes_version()
    major, minor = version.lstrip("v").split(".")[:2]
    stamps = {"gitVersion": version, "gitMajor": major, "gitMinor": minor, "gitTreeState": "clean"}
    return " ".join(
        f"-X {package}.{name}={value}" for package in _VERSION_PACKAGES for name, value in stamps.items()
    )


def cache_root() -> Path:
    """The berth cache folder: $BERTH_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/berth."""
    explicit = os.environ.get("BERTH_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "berth"


def build_key() -> str:
    """``<k8s-version>-<hash>``: changes whenever anything that goes into the binaries changes."""
    digest = hashlib.sha256(KWOK_VERSION.encode())
    for name in _KEYED_FILES:
        digest.update(name.encode())
        digest.update((MODULE_DIR / name).read_bytes())
    return f"{kubernetes_version()}-{digest.hexdigest()[:12]}"


def binaries_dir() -> Path:
    return cache_root() / "cluster" / build_key() / "bin"


def find_binaries() -> Binaries | None:
    """The cached binaries when complete, else None (nothing is built)."""
    bin_dir = binaries_dir()
    if (bin_dir / ".complete").is_file():
        return Binaries(bin_dir)
    return None


def ensure_binaries() -> Binaries:
    """Returns the cached binaries, building them first when missing (minutes, once)."""
    found = find_binaries()
    if found is not None:
        return found
    bin_dir = binaries_dir()
    bin_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(bin_dir.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second builder waits, then finds the result
        found = find_binaries()
        if found is not None:
            return found
        _build_into(bin_dir)
    return Binaries(bin_dir)


def _go() -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        raise BuildError(
            "the Go toolchain is needed to build the local control plane (tests/cluster): "
            "install Go >= 1.25 (e.g. `apt-get install golang-go` or the go.dev tarball) and put it on PATH"
        )
    return go


def _run_go(args: list[str], env: dict[str, str], what: str) -> None:
    started = time.monotonic()
    _log(f"building {what}: go {' '.join(args)}")
    result = subprocess.run([_go(), *args], cwd=MODULE_DIR, env=env, stdout=sys.stderr, stderr=sys.stderr)
    if result.returncode != 0:
        raise BuildError(f"building {what} failed (go exited {result.returncode}); see the output above")
    _log(f"built {what} in {time.monotonic() - started:.0f} s")


def _build_into(bin_dir: Path) -> None:
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=bin_dir.parent))
    try:
        env = dict(os.environ)
        env["GOFLAGS"] = f"{env.get('GOFLAGS', '')} -buildvcs=false -p={os.cpu_count() or 2}".strip()
        _run_go(
            [
                "build",
                "-trimpath",
                f"-ldflags=-s -w {_version_ldflags()}",
                "-o",
                str(staging / MULTI_CALL_BINARY),
                ".",
            ],
            env,
            f"the control plane (k8s.io/kubernetes {kubernetes_version()}; about 12 min cold on 2 cores)",
        )
        _run_go(
            ["install", *_GO_BUILD_FLAGS, f"{KWOK_MODULE}/cmd/kwok@{KWOK_VERSION}"],
            {**env, "GOBIN": str(staging)},
            f"kwok {KWOK_VERSION}",
        )
        for tool in TOOLS:
            (staging / tool).symlink_to(MULTI_CALL_BINARY)
        (staging / ".complete").write_text(build_key() + "\n")
        if bin_dir.exists():
            shutil.rmtree(bin_dir)
        staging.rename(bin_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _log(message: str) -> None:
    print(f"[berth cluster build] {message}", file=sys.stderr, flush=True)
