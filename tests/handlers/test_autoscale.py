"""`worker --autoscale MIN:MAX`: bounds, and children following the desired count."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from handlers import autoscale
from realtime_cms.config import Settings
from tests.support.harness import make_settings


def test_bounds_are_min_colon_max() -> None:
    assert autoscale.parse_bounds("1:4") == (1, 4)
    assert autoscale.parse_bounds("0:1") == (0, 1)
    for bad in ("4", "4:1", "0:0", "a:b", "1:65", "-1:2"):
        with pytest.raises(ValueError):
            autoscale.parse_bounds(bad)


class SleepingSupervisor(autoscale.Supervisor):
    """Children are `sleep` processes: what is under test is how many run, not what they do."""

    async def _start(self) -> None:
        self.children.append(await asyncio.create_subprocess_exec("sleep", "60"))


@pytest.fixture
async def supervisor() -> AsyncIterator[SleepingSupervisor]:
    settings: Settings = make_settings("sqlite+aiosqlite:///unused.sqlite3", job_grace_seconds=0)
    sup = SleepingSupervisor(settings, (1, 3), [])
    try:
        yield sup
    finally:
        await sup._stop_all()


async def test_children_follow_the_desired_count_within_the_bounds(
    supervisor: SleepingSupervisor,
) -> None:
    await supervisor.follow(0)
    assert len(supervisor.children) == 1  # never below MIN
    await supervisor.follow(9)
    assert len(supervisor.children) == 3  # never above MAX, started at once
    for _ in range(autoscale.COOLDOWN_ROUNDS - 1):
        await supervisor.follow(1)
    assert len(supervisor.children) == 3  # fewer only after the cooldown
    await supervisor.follow(1)
    assert len(supervisor.children) == 1


async def test_a_child_that_died_is_replaced(supervisor: SleepingSupervisor) -> None:
    await supervisor.follow(2)
    dead = supervisor.children[0]
    dead.kill()
    await dead.wait()
    await supervisor.follow(2)
    assert len(supervisor.children) == 2 and dead not in supervisor.children
