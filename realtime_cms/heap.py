"""Giving freed memory back to the operating system (glibc; elsewhere both calls do nothing).

Documents live in pycrdt's Rust heap, which is the C library's malloc. glibc keeps freed
pages mapped for reuse and gives every allocating thread an arena of its own, so once rooms
unload the resident set stays up although nothing uses it: bench/soak measured +10 to
+15 MB after every room had unloaded (50 editors, 10 documents, 5 minutes), nearly all of
it returned by `malloc_trim(0)`. So a serving process caps its arenas at start
(`cap_arenas`; `MALLOC_ARENA_MAX` in the environment wins) and the room manager, after
unloading rooms, collects the cycles they leave and trims the heap (`HeapTrimmer`), at
most once per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import time
from typing import Any

logger = logging.getLogger(__name__)

# mallopt's parameter number for the arena cap (glibc's malloc.h).
_M_ARENA_MAX = -8
SERVER_ARENAS = 2


def _libc() -> Any:
    try:
        return ctypes.CDLL(None)
    except OSError:  # pragma: no cover - a platform without a C library to load
        return None


def cap_arenas(count: int = SERVER_ARENAS) -> bool:
    """Cap malloc's arenas (call before threads start); whether the cap was set."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    mallopt = getattr(_libc(), "mallopt", None)
    return mallopt is not None and bool(mallopt(_M_ARENA_MAX, count))


def trim() -> bool:
    """Return free heap pages to the system now; whether malloc_trim exists here."""
    malloc_trim = getattr(_libc(), "malloc_trim", None)
    if malloc_trim is None:
        return False
    malloc_trim(0)
    return True


class HeapTrimmer:
    """Trims the heap off the event loop: `trim_soon` asks for a trim, done at once or, if
    one ran less than `min_interval` seconds ago, once that interval has passed (so the last
    of a series of unloads is always followed by a trim)."""

    def __init__(self, min_interval: float = 30.0) -> None:
        self.min_interval = min_interval
        self.trims = 0
        self._last = float("-inf")
        self._task: asyncio.Task[None] | None = None

    @property
    def last_at(self) -> float:
        """When (time.monotonic) the latest trim started; -inf before the first."""
        return self._last

    def trim_soon(self) -> None:
        if self._task is not None and not self._task.done():
            return
        delay = max(0.0, self._last + self.min_interval - time.monotonic())
        self._task = asyncio.get_running_loop().create_task(self._trim_after(delay))

    async def _trim_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._last = time.monotonic()
        try:
            # Unloaded rooms are reference cycles (a Doc, its callbacks, its shadow): free
            # them now, not at the next full collection, so that the trim finds their pages.
            gc.collect()
            if await asyncio.to_thread(trim):
                self.trims += 1
        except Exception:  # noqa: BLE001 - a failed trim costs only memory
            logger.exception("trimming the heap failed")

    async def close(self) -> None:
        """Cancel a trim still waiting for its interval."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
