"""Kopf's `stopped` flag for a daemon's loop under test: falsy until set, and waitable with a timeout
(on looptime's fake clock)."""

from __future__ import annotations

import asyncio
from typing import Any


class Stop:
    """Kopf's `stopped` flag, as the loops use it."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __bool__(self) -> bool:
        return self.event.is_set()

    async def _wait(self, timeout: float | None) -> None:
        try:
            await asyncio.wait_for(self.event.wait(), timeout)
        except TimeoutError:
            return

    def wait(self, timeout: float | None = None) -> Any:
        return self._wait(timeout)
