"""Outages of what the job system leans on, with real worker processes on both backends.

Redis down: wake-ups are hints, so `realtime-cms worker` processes keep running jobs by
polling, enqueueing still commits, and once Redis is back the workers subscribe again.

The database down for 30 s: on MariaDB a private server (its commits survive a SIGKILL) is
killed and started again 30 s later; on SQLite, which has no server to lose, a writer holds
the database's write lock for 40 s (longer than the 30 s busy timeout, so that statements
fail rather than only wait). Workers back off, keep running, resume, and every job's effect
exists exactly once.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from realtime_cms import migrate
from realtime_cms.db import SessionFactory, create_engine, session_factory
from realtime_cms.jobs.queue import enqueue
from realtime_cms.models.workers import WorkerJob, WorkerProcess
from realtime_cms.runtime import Runtime
from tests.faults.support import DurableMariaDB
from tests.jobs import probe
from tests.jobs.workers import WorkerProcess as Child
from tests.jobs.workers import worker_env
from tests.support.harness import make_settings
from tests.support.servers import RedisServer, require_binaries

OUTAGE_SECONDS = 30.0
SQLITE_LOCK_SECONDS = 40.0
# Generous bounds that only stop a hang; every wait ends as soon as its condition holds.
SETTLE_SECONDS = 120.0


async def _prepared(url: str) -> tuple[SessionFactory, AsyncEngine]:
    await asyncio.to_thread(migrate.upgrade, url)
    engine = create_engine(url)
    await probe.create_table(engine)
    return session_factory(engine), engine


@contextmanager
def _workers(env: dict[str, str], log: Path, count: int) -> Iterator[list[Child]]:
    with log.open("ab") as out:
        children = [Child(env, out) for _ in range(count)]
        try:
            for child in children:
                child.start()
            yield children
        finally:
            for child in children:
                if child.proc is not None and child.proc.poll() is None:
                    child.proc.kill()
                    child.proc.wait()


async def _count(sessions: SessionFactory, stmt: sa.Select[Any]) -> int:
    """The count, or -1 while the database cannot answer (this test is causing that)."""
    try:
        async with sessions() as db:
            return int(await db.scalar(stmt) or 0)
    except (sa.exc.DBAPIError, OSError):
        return -1


def _completed(prefix: str) -> sa.Select[Any]:
    return sa.select(sa.func.count()).where(
        WorkerJob.type == "probe.insert",
        WorkerJob.status == "completed",
        WorkerJob.payload["key"].as_string().like(f"{prefix}%"),
    )


async def _wait_for(holds: Callable[[], Awaitable[bool]]) -> None:
    """Poll until `holds()`; the bound only stops a hang."""
    async with asyncio.timeout(SETTLE_SECONDS):
        while True:
            if await holds():
                return
            await asyncio.sleep(0.1)


async def _until(sessions: SessionFactory, stmt: sa.Select[Any], at_least: int) -> None:
    async def reached() -> bool:
        return await _count(sessions, stmt) >= at_least

    await _wait_for(reached)


async def _live_processes(sessions: SessionFactory) -> int:
    return await _count(
        sessions,
        sa.select(sa.func.count()).where(WorkerProcess.status.in_(("idle", "working"))),
    )


async def _effects(sessions: SessionFactory, prefix: str) -> list[str]:
    async with sessions() as db:
        return list(
            await db.scalars(
                sa.select(probe.EFFECTS.c.key).where(probe.EFFECTS.c.key.like(f"{prefix}%"))
            )
        )


async def _statuses(sessions: SessionFactory, prefix: str) -> dict[str, int]:
    async with sessions() as db:
        rows = await db.execute(
            sa.select(WorkerJob.status, sa.func.count())
            .where(
                WorkerJob.type == "probe.insert",
                WorkerJob.payload["key"].as_string().like(f"{prefix}%"),
            )
            .group_by(WorkerJob.status)
        )
        return {status: int(count) for status, count in rows.all()}


# --- Redis down ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_redis() -> Iterator[RedisServer]:
    """A Redis of this module's own: the test kills it."""
    require_binaries(*RedisServer.BINARIES)
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
async def database(database_url: str) -> AsyncIterator[SessionFactory]:
    sessions, engine = await _prepared(database_url)
    try:
        yield sessions
    finally:
        await engine.dispose()


async def _subscribers(redis_url: str, channel: str) -> int:
    client = Redis.from_url(redis_url)
    try:
        [(_, count)] = await client.pubsub_numsub(channel)
        return int(count)
    finally:
        await client.aclose()


async def test_jobs_run_by_polling_while_redis_is_down_and_wake_ups_resume_after(
    database: SessionFactory,
    database_url: str,
    private_redis: RedisServer,
    tmp_path: Path,
) -> None:
    prefix = f"rcms-outage-{time.monotonic_ns()}:"
    env = worker_env(
        database_url, private_redis.url, RCMS_REDIS_PREFIX=prefix, RCMS_JOB_POLL_SECONDS="1"
    )
    channel = f"{prefix}jobs"

    async def subscribed() -> bool:
        """Both workers listen for wake-ups."""
        return await _subscribers(private_redis.url, channel) >= 2

    # The enqueueing side is a web process' runtime: its commits publish the wake-ups.
    settings = make_settings(database_url, private_redis.url, redis_prefix=prefix)
    async with Runtime(settings) as web:

        async def burst(name: str) -> None:
            async with web.sessions() as db, db.begin():
                for i in range(20):
                    await enqueue(db, probe.INSERT, {"key": f"{name}-{i}"})

        with _workers(env, tmp_path / "workers.log", 2) as children:
            await _wait_for(subscribed)
            await burst("redis-up")
            await _until(database, _completed("redis-up"), 20)

            await asyncio.to_thread(private_redis.kill)
            # Enqueueing commits although no wake-up can be published; workers poll.
            await burst("redis-down")
            await _until(database, _completed("redis-down"), 20)
            assert [child.proc.poll() for child in children if child.proc] == [None, None]

            await asyncio.to_thread(private_redis.restart)
            await _wait_for(subscribed)
            await burst("redis-back")
            await _until(database, _completed("redis-back"), 20)
            assert [child.stop() for child in children] == [0, 0]

    for name in ("redis-up", "redis-down", "redis-back"):
        assert await _statuses(database, name) == {"completed": 20}
        assert sorted(await _effects(database, name)) == sorted(f"{name}-{i}" for i in range(20))


# --- the database down --------------------------------------------------------------------


@contextmanager
def _sqlite_write_lock(url: str) -> Iterator[None]:
    """Hold SQLite's write lock (BEGIN EXCLUSIVE) until the block ends."""
    path = make_url(url).database
    assert path
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        connection.execute("BEGIN EXCLUSIVE")
        yield
        connection.execute("ROLLBACK")
    finally:
        connection.close()


async def test_workers_back_off_through_a_30_s_database_outage_and_lose_or_double_nothing(
    backend: str, database_url: str, tmp_path: Path
) -> None:
    server: DurableMariaDB | None = None
    if backend == "mariadb":
        require_binaries(*DurableMariaDB.BINARIES)
        server = DurableMariaDB().start()
        url = server.create_database("rcms_outage")
    else:
        url = database_url
    try:
        sessions, engine = await _prepared(url)
        try:
            await _ride_out_an_outage(url, server, sessions, tmp_path)
        finally:
            await engine.dispose()
    finally:
        if server is not None:
            server.stop()


async def _ride_out_an_outage(
    url: str,
    server: DurableMariaDB | None,
    sessions: SessionFactory,
    tmp_path: Path,
) -> None:
    jobs = 300
    async with sessions() as db, db.begin():
        for i in range(jobs):
            await enqueue(db, probe.INSERT, {"key": f"outage-{i}", "sleep": 0.5})
    env = worker_env(url, None, RCMS_JOB_POLL_SECONDS="0.5")
    log = tmp_path / "workers.log"
    with _workers(env, log, 3) as children:
        # Jobs are running (some mid-flight) when the database goes.
        await _until(sessions, _completed("outage-"), jobs // 4)
        if server is not None:
            await asyncio.to_thread(server.kill)
            await asyncio.sleep(OUTAGE_SECONDS)
            await asyncio.to_thread(server.restart)
        else:
            with _sqlite_write_lock(url):
                await asyncio.sleep(SQLITE_LOCK_SECONDS)
        during = await _count(sessions, _completed("outage-"))
        assert 0 <= during < jobs, "the outage came too late to interrupt the run"
        assert [child.proc.poll() for child in children if child.proc] == [None, None, None]
        await _until(sessions, _completed("outage-"), jobs)
        # All three run again (one declared dead by a peer meanwhile registers anew).
        assert await _live_processes(sessions) == 3
        assert [child.stop() for child in children] == [0, 0, 0]
    assert await _statuses(sessions, "outage-") == {"completed": jobs}
    effects = await _effects(sessions, "outage-")
    assert len(effects) == jobs
    assert set(effects) == {f"outage-{i}" for i in range(jobs)}
    # The workers felt it (they did not merely wait it out).
    assert "jobs: heartbeat failed" in log.read_text(errors="replace")
