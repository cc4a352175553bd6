"""Giving freed memory back (realtime_cms/heap.py): the arena cap and the trimmer's pacing."""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import Callable

import pytest

from realtime_cms.heap import HeapTrimmer, cap_arenas, trim

GLIBC = hasattr(ctypes.CDLL(None), "malloc_trim")


def test_the_environment_wins_over_the_arena_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert cap_arenas() is False


@pytest.mark.skipif(not GLIBC, reason="mallopt and malloc_trim are glibc's")
def test_on_glibc_the_cap_is_set_and_the_heap_trims(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert cap_arenas() is True
    assert trim() is True


async def until(check: Callable[[], bool]) -> None:
    """Poll `check` (a generous bound on a hang, not a timing assertion)."""
    for _ in range(400):
        if check():
            return
        await asyncio.sleep(0.025)
    pytest.fail("not reached within 10 s")


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
async def test_a_trim_asked_for_within_the_interval_still_comes_after_it() -> None:
    """The last of a series of unloads is always followed by a trim, paced by the interval."""
    trimmer = HeapTrimmer(min_interval=0.3)
    trimmer.trim_soon()
    await until(lambda: trimmer.trims == 1)
    first = trimmer.last_at
    trimmer.trim_soon()  # within the interval: deferred, not dropped
    assert trimmer.trims == 1
    await until(lambda: trimmer.trims == 2)
    assert trimmer.last_at - first >= 0.3 - 1e-3  # (the loop may fire a timer a hair early)
    await trimmer.close()
