"""Where a worker's transactions run: on SQLite its jobs take turns on one connection of
their own, and its lease is renewed on another, however long a job holds that one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import pytest
import sqlalchemy as sa

from realtime_cms.config import Settings
from realtime_cms.jobs.queue import enqueue
from realtime_cms.models.workers import WorkerJob, WorkerProcess
from realtime_cms.runtime import Runtime, worker_options
from tests.jobs import probe
from tests.support.harness import create_schema, make_settings
from tests.support.jobs import settle_jobs

HEARTBEAT_SECONDS = 0.5


@pytest.fixture(scope="module")
async def settings(database_url: str, redis_url: str | None) -> Settings:
    await create_schema(database_url)
    return make_settings(
        database_url,
        redis_url,
        job_plugins=["tests.jobs.probe"],
        job_heartbeat_seconds=HEARTBEAT_SECONDS,
        job_poll_seconds=0.2,
    )


@asynccontextmanager
async def _worker_process(settings: Settings) -> AsyncIterator[Runtime]:
    """The core of `realtime-cms worker --queues probe --concurrency 4`."""
    options = worker_options(settings, ["probe"], concurrency=4)
    async with Runtime(settings, worker=options) as runtime:
        async with runtime.sessions() as db, db.begin():
            await db.execute(sa.delete(WorkerJob))
        yield runtime


async def _hold(runtime: Runtime, seconds: float, count: int) -> list[str]:
    """`count` jobs that each hold their connection `seconds`, run; their outputs."""
    async with runtime.sessions() as db, db.begin():
        ids = [
            await enqueue(db, probe.HOLD, {"key": f"hold-{n}", "sleep": seconds})
            for n in range(count)
        ]
    await settle_jobs(runtime.sessions, [probe.HOLD.name])
    async with runtime.sessions() as db:
        rows = await db.execute(
            sa.select(WorkerJob.status, WorkerJob.output).where(WorkerJob.id.in_(ids))
        )
        done = rows.all()
    assert [status for status, _ in done] == ["completed"] * count
    return [str(output) for _, output in done]


async def test_on_sqlite_a_workers_jobs_take_turns_on_one_connection(
    settings: Settings, backend: str
) -> None:
    async with _worker_process(settings) as runtime:
        outputs = await _hold(runtime, 0.2, 4)
    if backend == "sqlite":
        # In turn, in the process: not at SQLite's write lock, losers in its busy handler.
        assert len(set(outputs)) == 1
    else:
        # At once, on the pool: MariaDB locks rows, not the database.
        assert len(set(outputs)) > 1


async def _heartbeat(runtime: Runtime) -> datetime:
    assert runtime.worker is not None
    async with runtime.sessions() as db:
        beat = await db.scalar(
            sa.select(WorkerProcess.last_heartbeat).where(
                WorkerProcess.id == runtime.worker.process_id
            )
        )
    assert beat is not None
    return beat


async def test_heartbeats_go_on_while_a_job_holds_the_job_connection(settings: Settings) -> None:
    async with _worker_process(settings) as runtime:
        holding = asyncio.create_task(_hold(runtime, 6 * HEARTBEAT_SECONDS, 1))
        await asyncio.sleep(HEARTBEAT_SECONDS)
        beats = {await _heartbeat(runtime)}
        while not holding.done():
            await asyncio.sleep(HEARTBEAT_SECONDS / 2)
            beats.add(await _heartbeat(runtime))
        await holding
    # A heartbeat every half second while the job held its connection for six of them.
    assert len(beats) >= 4
