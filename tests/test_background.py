"""`cancel_all`: a task that swallows a cancel (as redis-py may inside a publish or a pub/sub
read) is cancelled again until it ends, so a shutdown never waits on it forever."""

from __future__ import annotations

import asyncio

from realtime_cms.background import BackgroundTask, cancel_all


async def _swallowing_once(swallowed: list[int]) -> None:
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        swallowed.append(1)  # as redis-py: the cancel is consumed and the loop goes on
    await asyncio.sleep(3600)


async def test_a_task_that_swallowed_a_cancel_is_cancelled_again() -> None:
    swallowed: list[int] = []
    task = asyncio.create_task(_swallowing_once(swallowed))
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_all([task]), 10)
    assert task.cancelled() and swallowed == [1]


class _Swallowing(BackgroundTask):
    def __init__(self) -> None:
        super().__init__()
        self.swallowed: list[int] = []

    async def _run(self) -> None:
        await _swallowing_once(self.swallowed)


async def test_a_background_task_stops_even_if_its_work_swallowed_a_cancel() -> None:
    task = _Swallowing()
    async with asyncio.timeout(10), task:  # a single cancel would wait here forever
        await asyncio.sleep(0)
    assert task.swallowed == [1]
