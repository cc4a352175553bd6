"""The job benchmark's plugin: a no-op job type, one that stamps when its handler began, and
one that sleeps (a job still running when its worker is killed).

Loaded into `realtime-cms worker` processes as any plugin is, with
`RCMS_JOB_PLUGINS=bench.jobs.plugin` (and the repository root on PYTHONPATH): its
`register(registry)` adds the three types, on the queue `bench`. `bench_requests` is the table
the "request-like" transactions of the enqueue measurement write a row to.

With `BENCH_JOBS_SQL_COUNTS=<folder>` set, a process also counts the SQL statements it sends
(by their first word) and the commits, and writes them to `<folder>/sql-<pid>.json` when it
exits: what one job costs in round trips, measured in the worker itself. With
`BENCH_JOBS_PATCH=<name>[,...]`, the process runs with a change from `PATCHES` (for an A/B
run, `run.py --patch`: a candidate change, or the product as it was before one; never what
it does now).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from realtime_cms.jobs.registry import JobContext, JobType, NoPayload, Registry

QUEUE = "bench"
SQL_COUNTS_ENV = "BENCH_JOBS_SQL_COUNTS"
PATCH_ENV = "BENCH_JOBS_PATCH"
_done: set[str] = set()

METADATA = sa.MetaData()
REQUESTS = sa.Table(
    "bench_requests",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("note", sa.String(100), nullable=False),
)


async def _noop(context: JobContext, payload: NoPayload) -> None:
    return None


async def _stamp(context: JobContext, payload: NoPayload) -> str:
    """The wall-clock time the handler began (the enqueuer compares it with its commit)."""
    return f"{time.time():.6f}"


SLEEP_SECONDS = 0.5


async def _sleep(context: JobContext, payload: NoPayload) -> None:
    """Half a second of waiting: a worker holds its jobs for a while (the kill -9 runs)."""
    await asyncio.sleep(SLEEP_SECONDS)


# Attempts as real job types have: a job taken back from a late worker runs again, and only
# a job that never completes is lost.
NOOP = JobType("bench.noop", NoPayload, _noop, queue=QUEUE, max_attempts=5)
STAMP = JobType("bench.stamp", NoPayload, _stamp, queue=QUEUE, max_attempts=5)
# Taken back from a killed worker again and again in a kill -9 run: more attempts, so that
# only a job the reclaim never returns counts as lost, not one killed five times.
SLEEP = JobType("bench.sleep", NoPayload, _sleep, queue=QUEUE, max_attempts=50)
TYPES = (NOOP.name, STAMP.name, SLEEP.name)


def register(registry: Registry) -> None:
    registry.add(NOOP)
    registry.add(STAMP)
    registry.add(SLEEP)
    # Once per process, however many registries it builds.
    folder = os.environ.get(SQL_COUNTS_ENV)
    if folder and "counting" not in _done:
        _done.add("counting")
        _count_sql(Path(folder))
    for name in filter(None, os.environ.get(PATCH_ENV, "").split(",")):
        if name not in _done:
            _done.add(name)
            PATCHES[name]()


async def create_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(METADATA.create_all)


def _count_sql(folder: Path) -> None:
    """Count every statement (and the wall time it took, lock waits included) and commit of
    this process' engines; written at exit."""
    counts: Counter[str] = Counter()
    seconds: Counter[str] = Counter()

    def kind(sql: str) -> str:
        return sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "?"

    def before(conn: Any, _cursor: Any, _sql: str, *_args: Any) -> None:
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def after(conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        counts[kind(sql)] += 1
        seconds[kind(sql)] += time.perf_counter() - conn.info["bench_started"].pop()

    def commit(_conn: Any) -> None:
        counts["(commit)"] += 1

    def rollback(_conn: Any) -> None:
        counts["(rollback)"] += 1

    event.listen(Engine, "before_cursor_execute", before)
    event.listen(Engine, "after_cursor_execute", after)
    event.listen(Engine, "commit", commit)
    event.listen(Engine, "rollback", rollback)

    def write() -> None:
        record = {"count": dict(counts), "seconds": dict(seconds)}
        (folder / f"sql-{os.getpid()}.json").write_text(json.dumps(record))

    atexit.register(write)


def _sqlite_shared_pool() -> None:
    """Experiment (BENCH_JOBS_PATCH=sqlite-shared-pool), the product before 2026-12-07: on
    SQLite, the worker's claims and job transactions go through the process' pool (up to 15
    connections) instead of one connection of their own, so they meet at SQLite's write
    lock, where each loser sleeps in the busy handler before it tries again."""
    from realtime_cms.db import SessionFactory
    from realtime_cms.runtime import Runtime

    def shared(runtime: Runtime, _stack: contextlib.AsyncExitStack) -> SessionFactory:
        return runtime.sessions

    Runtime._job_sessions = shared  # type: ignore[method-assign, assignment]


PATCHES = {"sqlite-shared-pool": _sqlite_shared_pool}
