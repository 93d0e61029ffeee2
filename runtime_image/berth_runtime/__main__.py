"""`python -m berth_runtime` — the container's entrypoint; see `cli` for the commands."""

import sys

from berth_runtime.cli import main

if __name__ == "__main__":
    sys.exit(main())
