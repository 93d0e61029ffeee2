"""The two substitutions that let a container's command line run as a host process.

Why: a container has its own filesystem and network namespace; a local process shares the host's.
So the agent rewrites what the container would have resolved inside its namespaces:

1. Paths. Every argv element and env value that begins with a volume's ``mountPath`` (the whole
   word, or the value of ``--flag=value``) is rewritten to the host folder that backs the volume:
   ``--model /models/llama`` with ``/models`` backed by ``<state>/pods/<pod>/volumes/models``
   becomes ``--model <state>/pods/<pod>/volumes/models/llama``. The longest mountPath wins (nested
   mounts). Paths the process builds at run time (``os.path.join(MODEL_DIR, ...)`` from an env
   value) follow, because the env value itself was rewritten.
2. Bind addresses. A wildcard address (``0.0.0.0``, ``::``, ``[::]``, alone, as ``--flag=0.0.0.0`` or
   as ``0.0.0.0:8000``) and the value of ``--host`` become the pod's IP, so each pod listens on its
   own address and two replicas can use the same port. A process that binds every interface
   without saying so cannot be moved this way: give it ``0.0.0.0`` or ``--host``.

Only whole words are rewritten: a path inside a word (``python -c "open('/data/x')"``, a
``--a=x,/data``) is left alone and names the *host's* path, so pass paths as their own argument
or through env.

And the interpreter: an argv[0] of ``python``/``python3``/``python3.X`` becomes the agent's own
``sys.executable``, because the image is never pulled: the process runs from the project's
environment, where berth's packages are installed.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

WILDCARD_ADDRESSES = ("0.0.0.0", "::", "[::]")
HOST_FLAGS = ("--host",)
_PYTHON = re.compile(r"^python(3(\.\d+)?)?$")
_FLAG_VALUE = re.compile(r"^(--?[A-Za-z0-9][A-Za-z0-9_.-]*=)(.*)$", re.DOTALL)


@dataclass(frozen=True)
class Mount:
    """A container path backed by a host folder (a volumeMount after its volume was set up)."""

    mount_path: str
    host_path: Path


def _by_depth(mounts: Sequence[Mount]) -> list[Mount]:
    return sorted(mounts, key=lambda mount: len(mount.mount_path.rstrip("/")), reverse=True)


def rewrite_path(value: str, mounts: Sequence[Mount]) -> str:
    """``value`` with a leading mountPath replaced by its host folder; unchanged if none matches."""
    for mount in _by_depth(mounts):
        root = mount.mount_path.rstrip("/") or "/"
        if value == root:
            return str(mount.host_path)
        prefix = root if root.endswith("/") else root + "/"
        if value.startswith(prefix):
            return str(mount.host_path / value[len(prefix) :])
    return value


def _bind(value: str, pod_ip: str) -> str:
    if value in WILDCARD_ADDRESSES:
        return pod_ip
    for wildcard in WILDCARD_ADDRESSES:
        if value.startswith(wildcard + ":") and value[len(wildcard) + 1 :].isdigit():
            return f"{pod_ip}:{value[len(wildcard) + 1 :]}"
    return value


def _word(word: str, mounts: Sequence[Mount], pod_ip: str) -> str:
    flag = _FLAG_VALUE.match(word)
    if flag:
        name, value = flag.group(1), flag.group(2)
        if name[:-1] in HOST_FLAGS:
            return name + pod_ip
        return name + _bind(rewrite_path(value, mounts), pod_ip)
    return _bind(rewrite_path(word, mounts), pod_ip)


def rewrite_argv(argv: Sequence[str], mounts: Sequence[Mount], pod_ip: str) -> list[str]:
    """The command line as the host process gets it (both substitutions and the interpreter)."""
    rewritten: list[str] = []
    after_host_flag = False
    for index, word in enumerate(argv):
        if after_host_flag:
            rewritten.append(pod_ip)
        elif index == 0 and _PYTHON.match(word):
            rewritten.append(sys.executable)
        else:
            rewritten.append(_word(word, mounts, pod_ip))
        after_host_flag = word in HOST_FLAGS
    return rewritten


def rewrite_env(env: Mapping[str, str], mounts: Sequence[Mount], pod_ip: str) -> dict[str, str]:
    """Env values with both substitutions (a value is one word: path or address)."""
    return {name: _bind(rewrite_path(value, mounts), pod_ip) for name, value in env.items()}
