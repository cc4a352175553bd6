"""Claiming jobs and ending them, every step fenced on the lease holder.

A claimed job is `processing` with `process_id` set to the claiming process; that process'
heartbeat is the lease. Every later step (complete, retry, fail, release) is an UPDATE
`WHERE id = ? AND process_id = ? AND status = 'processing'`: a process whose lease was taken
(it stopped heartbeating and another process reclaimed its jobs) changes nothing, and the
job's own database writes, made in the completion's transaction, roll back with it.

Claims: on MariaDB `SELECT ... FOR UPDATE SKIP LOCKED` then an UPDATE of the rows found, so
concurrent claimers take disjoint rows without waiting; on SQLite one `UPDATE ... WHERE id
IN (SELECT ...) AND status = 'queued' RETURNING`, the first statement of its transaction, so
it takes SQLite's single write lock before reading (what BEGIN IMMEDIATE guarantees): a
compare-and-set no other writer can interleave with.

A job that is an item of a batch (`batch_job_id`) is counted in its batch in the transaction
that ends it: the fenced completion, the last failed attempt, or the reclaim failing it
(realtime_cms/jobs/batches.py). Claims and completions of other jobs pay nothing for it;
a reclaim, one more read of the processing jobs.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.db import SessionFactory, read_committed, transaction
from realtime_cms.events import emit
from realtime_cms.jobs import batches
from realtime_cms.jobs.batches import ItemEnded
from realtime_cms.jobs.events import JobChanged
from realtime_cms.models.workers import CLAIM_INDEX, WorkerJob, WorkerProcess

# Retry pauses: base * 2^(attempt-1), capped, with full jitter on the upper half.
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 3600.0
ERROR_MAX = 4000
LIVE_PROCESS = ("idle", "working")


@dataclass(frozen=True, slots=True)
class Claimed:
    """A job this process holds the lease on."""

    id: str
    type: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    queue: str
    run_at: datetime
    batch_job_id: int | None


# Every statement of the hot path (claim, complete, retry, fail) is built once, here, on the
# table with bind parameters: executed with a dict, it is plain Core, found in SQLAlchemy's
# compiled cache by its memoized key. Built per job with literal values, ORM-enabled, its
# coercion, cache key and ORM evaluation cost more than running it (docs/benchmarks.md,
# "Jobs"). Parameter names differ from column names: those would be taken as SET values.
_JOBS = cast(sa.Table, WorkerJob.__table__)
_COLUMNS = (
    _JOBS.c.id,
    _JOBS.c.type,
    _JOBS.c.payload,
    _JOBS.c.attempts,
    _JOBS.c.max_attempts,
    _JOBS.c.queue,
    _JOBS.c.run_at,
    _JOBS.c.batch_job_id,
)
_READY = sa.and_(
    _JOBS.c.status == "queued",
    _JOBS.c.queue.in_(sa.bindparam("queues", expanding=True)),
    _JOBS.c.run_at <= sa.bindparam("due_by"),
)
_ORDER = (_JOBS.c.priority, _JOBS.c.run_at)
_CLAIMED = {
    "status": "processing",
    "process_id": sa.bindparam("holder"),
    "attempts": _JOBS.c.attempts + 1,
    "started_at": sa.bindparam("started"),
}
# SQLite: one compare-and-set, the first statement of its transaction (it takes the write
# lock before reading).
_CLAIM_SQLITE = (
    sa.update(_JOBS)
    .where(
        _JOBS.c.id.in_(
            sa.select(_JOBS.c.id)
            .where(_READY)
            .order_by(*_ORDER)
            .limit(sa.bindparam("limit"))
            .scalar_subquery()
        ),
        _JOBS.c.status == "queued",
    )
    .values(_CLAIMED)
    .returning(*_COLUMNS)
)
# MariaDB: the claim index read in order stops at the LIMIT, so a claimer locks only what it
# takes and the others skip only those (docs/schema.md).
_CLAIM_FIND = (
    sa.select(*_COLUMNS)
    .with_hint(_JOBS, f"FORCE INDEX ({CLAIM_INDEX})")
    .where(_READY)
    .order_by(*_ORDER)
    .limit(sa.bindparam("limit"))
    .with_for_update(skip_locked=True)
)
_CLAIM_TAKE = (
    sa.update(_JOBS).where(_JOBS.c.id.in_(sa.bindparam("ids", expanding=True))).values(_CLAIMED)
)
# The earliest not-before time of a queued job of these queues still to come: an idle
# worker sleeps until then (or its poll, whichever is first), so a job due in 300 ms starts
# then, not at the next poll.
_NEXT_DUE = sa.select(sa.func.min(_JOBS.c.run_at)).where(
    _JOBS.c.status == "queued",
    _JOBS.c.queue.in_(sa.bindparam("queues", expanding=True)),
    _JOBS.c.run_at > sa.bindparam("after"),
)
# The fence of every later step: this job, held by this process, still processing.
_HELD = sa.and_(
    _JOBS.c.id == sa.bindparam("job_id"),
    _JOBS.c.process_id == sa.bindparam("holder"),
    _JOBS.c.status == "processing",
)
_COMPLETE = (
    sa.update(_JOBS)
    .where(_HELD)
    .values(
        status="completed",
        completed_at=sa.bindparam("ended"),
        output=sa.bindparam("job_output"),
        dedupe_key=None,
        last_error=None,
    )
)
_RETRY = (
    sa.update(_JOBS)
    .where(_HELD)
    .values(
        status="queued",
        process_id=None,
        run_at=sa.bindparam("retry_at"),
        last_error=sa.bindparam("error"),
    )
)
_FAIL = (
    sa.update(_JOBS)
    .where(_HELD)
    .values(
        status="failed",
        completed_at=sa.bindparam("ended"),
        last_error=sa.bindparam("error"),
        dedupe_key=None,
    )
)


def backoff(attempt: int, *, rng: random.Random | None = None) -> timedelta:
    """How long to wait before attempt `attempt + 1` (exponential, capped, jittered)."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempt - 1))
    return timedelta(seconds=ceiling / 2 + (rng or random).uniform(0, ceiling / 2))


async def claim(
    sessions: SessionFactory, process_id: str, queues: Sequence[str], limit: int, now: datetime
) -> list[Claimed]:
    """Take up to `limit` due jobs of `queues`, highest priority (lowest number) first."""
    if limit <= 0 or not queues:
        return []
    params = {
        "queues": list(queues),
        "due_by": now,
        "limit": limit,
        "holder": process_id,
        "started": now,
    }
    async with transaction(sessions) as db:
        sqlite = db.get_bind().dialect.name == "sqlite"
        if sqlite:
            rows = (await db.execute(_CLAIM_SQLITE, params)).all()
        else:
            # READ COMMITTED: record locks only, released for rows the WHERE refuses (under
            # REPEATABLE READ, next-key locks made concurrent claimers deadlock on the
            # UPDATE).
            await read_committed(db)
            rows = (await db.execute(_CLAIM_FIND, params)).all()
            if rows:
                await db.execute(_CLAIM_TAKE, {**params, "ids": [row.id for row in rows]})
        for row in rows:
            emit(db, JobChanged(row.id, "processing", row.type, row.queue))
        started = {row.batch_job_id for row in rows if row.batch_job_id is not None}
        if started:
            await batches.items_started(db, started, now)
    # RETURNING gives the new attempt count; the SELECT the old one.
    bump = 0 if sqlite else 1
    return [
        Claimed(
            id=row.id,
            type=row.type,
            payload=row.payload,
            attempts=row.attempts + bump,
            max_attempts=row.max_attempts,
            queue=row.queue,
            run_at=row.run_at,
            batch_job_id=row.batch_job_id,
        )
        for row in sorted(rows, key=lambda r: r.id)
    ]


async def next_due(
    sessions: SessionFactory, queues: Sequence[str], now: datetime
) -> datetime | None:
    """When the next queued job of `queues` that is not due by `now` becomes due (None: no
    such job)."""
    if not queues:
        return None
    async with sessions() as db:
        due = await db.scalar(_NEXT_DUE, {"queues": list(queues), "after": now})
    return due


async def _fenced(db: AsyncSession, stmt: sa.Update, params: dict[str, Any]) -> bool:
    result = await db.execute(stmt, params)
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def complete(
    db: AsyncSession,
    job_id: str,
    process_id: str,
    output: str | None,
    now: datetime,
    *,
    batch_job_id: int | None = None,
) -> bool:
    """Mark the job completed in `db`'s transaction (with the job's own writes, and the
    count of its batch if it is an item of one); False if this process no longer holds the
    lease (then the caller must roll back)."""
    # Dispatched only if this transaction commits (a lost lease rolls it back).
    emit(db, JobChanged(job_id, "completed"))
    params = {"job_id": job_id, "holder": process_id, "ended": now, "job_output": output}
    if not await _fenced(db, _COMPLETE, params):
        return False
    if batch_job_id is not None:
        ended = ItemEnded(batch_job_id, job_id, "completed", {"output": output})
        await batches.items_ended(db, [ended], now)
    return True


async def retry_or_fail(
    sessions: SessionFactory, job: Claimed, process_id: str, error: str, now: datetime
) -> str | None:
    """After a failed attempt: back to `queued` after a backoff while attempts remain, else
    `failed` (the dead state an operator can retry or discard). The new status, or None if
    the lease was lost (someone else owns the job now)."""
    error = error[:ERROR_MAX]
    params: dict[str, Any] = {"job_id": job.id, "holder": process_id, "error": error}
    if job.attempts < job.max_attempts:
        status, stmt = "queued", _RETRY
        params["retry_at"] = now + backoff(job.attempts)
    else:
        status, stmt = "failed", _FAIL
        params["ended"] = now
    async with transaction(sessions) as db:
        if not await _fenced(db, stmt, params):
            return None
        if status == "failed" and job.batch_job_id is not None:
            ended = ItemEnded(job.batch_job_id, job.id, "failed", {"error": error})
            await batches.items_ended(db, [ended], now)
        emit(db, JobChanged(job.id, status, job.type, job.queue))
        return status


async def release(sessions: SessionFactory, job_ids: Sequence[str], process_id: str) -> int:
    """Give jobs back unfinished (a graceful stop): queued again, the attempt not counted."""
    if not job_ids:
        return 0
    async with transaction(sessions) as db:
        result = await db.execute(
            sa.update(WorkerJob)
            .where(
                WorkerJob.id.in_(job_ids),
                WorkerJob.process_id == process_id,
                WorkerJob.status == "processing",
            )
            .values(status="queued", process_id=None, attempts=WorkerJob.attempts - 1)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Reclaimed:
    process_ids: list[str]
    requeued: int
    failed: int


async def reclaim_stale(
    sessions: SessionFactory, now: datetime, stale_after: float, *, by: str | None = None
) -> Reclaimed:
    """Declare processes (other than `by`, the caller) whose heartbeat is older than
    `stale_after` seconds failed, and take back every processing job not held by a live
    process (theirs, those of processes declared dead earlier that claimed before they knew,
    and those whose process row is gone): queued again while attempts remain, else failed."""
    cutoff = now - timedelta(seconds=stale_after)
    async with transaction(sessions) as db:
        # READ COMMITTED on MariaDB, as for claims: under REPEATABLE READ the UPDATEs below
        # lock every row and gap they scan, so a transaction inserting jobs meanwhile (a
        # batch, many enqueues) deadlocked with them; each is a compare-and-set on what is
        # committed.
        await read_committed(db)
        stale = sa.select(WorkerProcess.id).where(
            WorkerProcess.status.in_(LIVE_PROCESS), WorkerProcess.last_heartbeat < cutoff
        )
        if by is not None:
            # A late heartbeat of our own is not our death: only others may declare it.
            stale = stale.where(WorkerProcess.id != by)
        if db.get_bind().dialect.name != "sqlite":
            stale = stale.with_for_update(skip_locked=True)
        dead = list(await db.scalars(stale))
        if dead:
            await db.execute(
                sa.update(WorkerProcess)
                .where(WorkerProcess.id.in_(dead), WorkerProcess.status.in_(LIVE_PROCESS))
                .values(status="failed")
            )
        live = sa.select(WorkerProcess.id).where(WorkerProcess.status.in_(LIVE_PROCESS))
        orphaned = sa.and_(
            WorkerJob.status == "processing",
            sa.or_(WorkerJob.process_id.is_(None), WorkerJob.process_id.not_in(live)),
        )
        exhausted = WorkerJob.attempts >= WorkerJob.max_attempts
        reason = "lease lost: its worker process stopped heartbeating"
        values = {"status": "failed", "completed_at": now, "last_error": reason, "dedupe_key": None}
        failed = await db.execute(
            sa.update(WorkerJob)
            .where(orphaned, exhausted, WorkerJob.batch_job_id.is_(None))
            .values(values)
        )
        items_failed = await _fail_batch_items(db, sa.and_(orphaned, exhausted), values, now)
        requeued = await db.execute(
            sa.update(WorkerJob)
            .where(orphaned, sa.not_(exhausted))
            .values(status="queued", process_id=None, run_at=now, last_error=reason)
        )
    failures = int(failed.rowcount) + items_failed  # type: ignore[attr-defined]
    return Reclaimed(dead, int(requeued.rowcount), failures)  # type: ignore[attr-defined]


async def _fail_batch_items(
    db: AsyncSession, doomed: sa.ColumnElement[bool], values: dict[str, Any], now: datetime
) -> int:
    """Fail the batch items `doomed` selects one by one, each counted in its batch if this
    UPDATE is the one that failed it (another reclaimer may be racing); how many."""
    found = await db.execute(
        sa.select(WorkerJob.id, WorkerJob.batch_job_id).where(
            doomed, WorkerJob.batch_job_id.is_not(None)
        )
    )
    ended = []
    rows: list[tuple[str, int]] = [(row.id, row.batch_job_id) for row in found]
    for job_id, batch_id in rows:
        # Re-checked by the UPDATE itself: the read above took no lock.
        stmt = sa.update(WorkerJob).where(WorkerJob.id == job_id, doomed).values(values)
        result = await db.execute(stmt.execution_options(synchronize_session=False))
        if result.rowcount == 1:  # type: ignore[attr-defined]
            ended.append(ItemEnded(batch_id, job_id, "failed", {"error": values["last_error"]}))
    await batches.items_ended(db, ended, now)
    return len(ended)
