"""A job due later starts at its time, not at the next poll: an idle worker sleeps until the
next queued job is due, and a job enqueued for later wakes it to look.

The workers here poll every 30 s, so a job that waited for a poll would start up to 30 s
late; the bound asserted (10 s) leaves a slow machine room and still tells the two apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
import sqlalchemy as sa

from realtime_cms.config import Settings
from realtime_cms.jobs.queue import enqueue
from realtime_cms.models.base import utcnow
from realtime_cms.models.workers import WorkerJob
from realtime_cms.runtime import Runtime, worker_options
from tests.jobs import probe
from tests.support.harness import create_schema, make_settings

POLL_SECONDS = 30.0
LATE_BOUND = 10.0


@pytest.fixture(scope="module")
async def settings(database_url: str, redis_url: str | None) -> Settings:
    await create_schema(database_url)
    return make_settings(
        database_url, redis_url, job_plugins=["tests.jobs.probe"], job_poll_seconds=POLL_SECONDS
    )


@asynccontextmanager
async def _runtime(settings: Settings, *, worker: bool) -> AsyncIterator[Runtime]:
    options = worker_options(settings, ["probe"], concurrency=2) if worker else None
    async with Runtime(settings, worker=options) as runtime:
        yield runtime


async def _clear(runtime: Runtime) -> None:
    await probe.create_table(runtime.engine)
    async with runtime.sessions() as db, db.begin():
        await db.execute(sa.delete(WorkerJob))
        await db.execute(probe.EFFECTS.delete())


async def _tick_in(runtime: Runtime, seconds: int) -> None:
    """Enqueue a tick due `seconds` from now, on a whole second (run_at keeps seconds)."""
    due = utcnow().replace(microsecond=0) + timedelta(seconds=seconds)
    async with runtime.sessions() as db, db.begin():
        await enqueue(db, probe.TICK, run_at=due)


async def _lateness(runtime: Runtime) -> float:
    """The tick's start minus its due time, once it ran (well before a poll, or it fails)."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + POLL_SECONDS - 5
    while True:
        async with runtime.sessions() as db:
            found = list(await db.scalars(sa.select(probe.EFFECTS.c.lateness)))
        if found:
            return float(found[0])
        assert loop.time() < give_up, "the job waited for a poll"
        await asyncio.sleep(0.05)


async def test_a_job_queued_for_later_starts_at_its_time_not_at_the_next_poll(
    settings: Settings,
) -> None:
    async with _runtime(settings, worker=False) as enqueuer:
        await _clear(enqueuer)
        await _tick_in(enqueuer, 3)
    # The worker starts with the job already queued: it claims nothing, then sleeps until due.
    async with _runtime(settings, worker=True) as runtime:
        assert await _lateness(runtime) < LATE_BOUND


async def test_a_job_enqueued_for_later_wakes_an_idle_worker_to_sleep_until_it_is_due(
    settings: Settings,
) -> None:
    async with _runtime(settings, worker=True) as runtime:
        await _clear(runtime)
        await _tick_in(runtime, 2)
        assert await _lateness(runtime) < LATE_BOUND
