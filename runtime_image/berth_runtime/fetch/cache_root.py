"""`python -m berth_runtime.fetch.cache_root ROOT UID`: give a hostPath cache root to the fetch's user.

The kubelet creates a missing hostPath folder (type DirectoryOrCreate) owned by root with mode 0755,
and fsGroup does not apply to hostPath volumes, so the fetch container (uid 65532, non-root) could
not write it. The operator therefore runs this as a tiny first init container, as root with only
the CHOWN capability, which hands the root folder itself (not its content) to UID. It does nothing
when the folder already belongs to UID.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

USAGE = "usage: python -m berth_runtime.fetch.cache_root ROOT UID (an absolute folder, a numeric user id)"


def hand_over(root: Path, uid: int) -> bool:
    """Make `root` a folder owned by `uid` (group too) with mode 0755; True when something changed."""
    root.mkdir(parents=True, exist_ok=True)
    status = root.stat()
    if status.st_uid == uid and status.st_gid == uid:
        return False
    root.chmod(0o755)  # while root still owns it: after the chown this would need CAP_FOWNER
    os.chown(root, uid, uid)
    return True


def main(argv: Sequence[str]) -> int:
    if len(argv) != 2 or not argv[0].startswith("/") or not argv[1].isdigit():
        print(f"{USAGE}; got {list(argv)!r}", file=sys.stderr)
        return 2
    root, uid = Path(argv[0]), int(argv[1])
    try:
        changed = hand_over(root, uid)
    except OSError as error:
        print(f"model cache root {root}: cannot hand it to uid {uid}: {error.strerror}", file=sys.stderr)
        return 1
    print(f"model cache root {root}: {'now' if changed else 'already'} owned by uid {uid}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
