"""`python -m berth_runtime.fetch.hold_entry LINK -- COMMAND...`: serve while holding the cache entry.

A shared cache's eviction must never take the entry a running server loads from. The server does
not know about the cache, so the operator starts it through this wrapper: it follows LINK (the
link the fetch left, /models/model) to its entry, takes a shared flock(2) on the entry's users lock
(`locks/<key>.users`) and then replaces itself with COMMAND. A flock belongs to the open file, which
exec keeps open, so the server holds the lock for exactly as long as it runs, and the kernel lets
go of it when the process ends, however it ends. Eviction only removes an entry whose users lock it
can take exclusively, without waiting. The lock file only needs to be readable: the runtime
container mounts the cache read-only.

When LINK is not a link into a cache, COMMAND runs as it is.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from berth_runtime.fetch.cache_layout import CacheLayout

USAGE = "usage: python -m berth_runtime.fetch.hold_entry LINK -- COMMAND [ARGUMENT...]"


def users_lock_of(link: Path) -> Path | None:
    """The users lock of the entry `link` points at; None when it points at no cache entry."""
    if not link.is_symlink():
        return None
    entry = Path(os.path.realpath(link))
    if entry.parent.name != "entries":
        return None
    return CacheLayout(entry.parent.parent).users_lock_file(entry.name)


def main(argv: Sequence[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print(f"{USAGE}; got {list(argv)!r}", file=sys.stderr)
        return 2
    link, command = Path(argv[0]), list(argv[2:])
    lock_file = users_lock_of(link)
    if lock_file is not None:
        gone = (
            f"{link} -> {os.path.realpath(link)}: the cache entry was evicted; delete the pod so that its "
            "fetch runs again"
        )
        try:
            descriptor = os.open(lock_file, os.O_RDONLY)
        except OSError as error:
            print(f"{gone} (its users lock {lock_file}: {error.strerror})", file=sys.stderr)
            return 1
        fcntl.flock(descriptor, fcntl.LOCK_SH)
        if not link.is_dir():  # evicted between the fetch and this start
            print(gone, file=sys.stderr)
            return 1
        os.set_inheritable(descriptor, True)
    try:
        os.execvp(command[0], command)
    except OSError as error:
        print(f"cannot run {command[0]!r}: {error.strerror}", file=sys.stderr)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
