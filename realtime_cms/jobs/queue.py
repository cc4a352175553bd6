"""Enqueueing: an INSERT in the caller's transaction, so a job exists iff the change commits.

After the commit, `JobsEnqueued` wakes idle workers (realtime_cms/jobs/wakeup.py); a job
enqueued in a transaction that rolls back never existed and wakes nobody.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.events import Event, emit
from realtime_cms.jobs.registry import JobType
from realtime_cms.models.base import utcnow
from realtime_cms.models.workers import WorkerJob

DEDUPE_MAX = 191


@dataclass(frozen=True, slots=True)
class JobsEnqueued(Event):
    """Jobs were committed on `queue`: idle workers wake, claim what is due and sleep until
    the next job is (one due later included, so it starts at its time)."""

    queue: str


# Built once on the table, executed with the row as parameters: plain Core, compiled once
# (an ORM-enabled INSERT with literal values cost more to build than to run).
_JOBS = cast(sa.Table, WorkerJob.__table__)
_INSERT = sa.insert(_JOBS)
# Inserts that add nothing when the id or the dedupe key is taken (rowcount 0). On MariaDB
# not ON DUPLICATE KEY UPDATE: with the FOUND_ROWS flag SQLAlchemy sets, its rowcount is 1
# either way. IGNORE also turns other errors into warnings, so `enqueue` checks that a
# conflicting row really exists when nothing was inserted.
_INSERT_UNLESS_TAKEN_SQLITE = sqlite.insert(_JOBS).on_conflict_do_nothing()
_INSERT_UNLESS_TAKEN_MYSQL = mysql.insert(_JOBS).prefix_with("IGNORE")


async def enqueue(
    db: AsyncSession,
    job_type: JobType[Any],
    payload: Any = None,
    *,
    run_at: datetime | None = None,
    delay: timedelta | None = None,
    dedupe_key: str | None = None,
    job_id: str | None = None,
    priority: int | None = None,
    max_attempts: int | None = None,
    batch_job_id: int | None = None,
) -> str | None:
    """Queue a job in `db`'s transaction; its id, or None if `job_id` or `dedupe_key` is taken.

    `dedupe_key` is unique among queued and processing jobs (cleared when a job ends), so a
    second enqueue with it while the first is pending adds nothing. `job_id` lets a caller
    choose a deterministic id (periodic slots): a second insert of it is ignored.
    """
    if dedupe_key is not None and not 0 < len(dedupe_key) <= DEDUPE_MAX:
        raise ValueError(f"a dedupe key is 1-{DEDUPE_MAX} characters")
    now = utcnow()
    due = run_at if run_at is not None else now + (delay or timedelta())
    values = {
        "id": job_id or str(uuid.uuid4()),
        "type": job_type.name,
        "payload": job_type.validate(payload if payload is not None else {}),
        "queue": job_type.queue,
        "priority": job_type.priority if priority is None else priority,
        "max_attempts": job_type.max_attempts if max_attempts is None else max_attempts,
        "run_at": due,
        "dedupe_key": dedupe_key,
        "batch_job_id": batch_job_id,
        "status": "queued",
        "attempts": 0,
        "created_at": now,
    }
    if dedupe_key is None and job_id is None:
        await db.execute(_INSERT, values)
    else:
        sqlite_db = db.get_bind().dialect.name == "sqlite"
        stmt = _INSERT_UNLESS_TAKEN_SQLITE if sqlite_db else _INSERT_UNLESS_TAKEN_MYSQL
        result = await db.execute(stmt, values)
        if result.rowcount != 1:  # type: ignore[attr-defined]
            await _require_conflict(db, values)
            return None
    emit(db, JobsEnqueued(job_type.queue))
    return str(values["id"])


async def _require_conflict(db: AsyncSession, values: dict[str, Any]) -> None:
    """Nothing was inserted: a job with this id or dedupe key must exist, else it failed."""
    taken = WorkerJob.id == values["id"]
    if values["dedupe_key"] is not None:
        taken = sa.or_(taken, WorkerJob.dedupe_key == values["dedupe_key"])
    # A locking read: on MariaDB a plain one would use this transaction's older snapshot and
    # miss the conflicting job another transaction has just committed.
    found = sa.select(sa.func.count()).where(taken).with_for_update(read=True)
    if await db.scalar(found) == 0:
        raise RuntimeError(f"job {values['id']} ({values['type']}) could not be inserted")


async def make_due(db: AsyncSession, dedupe_key: str, payload: dict[str, Any], queue: str) -> bool:
    """Make the queued job holding `dedupe_key` due now with `payload` (workers are woken
    after the commit); whether there was one."""
    result = await db.execute(
        sa.update(WorkerJob)
        .where(WorkerJob.dedupe_key == dedupe_key, WorkerJob.status == "queued")
        .values(run_at=utcnow(), payload=payload)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    emit(db, JobsEnqueued(queue))
    return True
