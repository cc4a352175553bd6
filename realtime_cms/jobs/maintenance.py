"""The job system's own housekeeping: what ended or was recorded before the retention
(`RCMS_JOB_RETENTION_DAYS`) is pruned, so that no table of the job system grows without end."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.jobs.registry import JobContext, JobType, NoPayload
from realtime_cms.models.base import Base
from realtime_cms.models.workers import (
    BatchJob,
    NotificationBatch,
    Worker,
    WorkerActivityLog,
    WorkerJob,
    WorkerMetric,
    WorkerNotification,
    WorkerProcess,
)

ENDED = ("completed", "failed", "cancelled")
# A batch and a notification batch end `completed` or `failed`.
BATCH_ENDED = ("completed", "failed")
CHUNK = 1000


async def _prune(context: JobContext, payload: NoPayload) -> str:
    """Delete what ended before the retention: jobs, batches (their items with them),
    stopped or failed processes, and worker metrics, activity logs, delivered worker
    notifications and ended notification batches recorded before it.

    The newest job of each type stays whatever its age: it holds the latest slot of a
    periodic schedule, which must not run again because its row was pruned.
    """
    db = context.db
    cutoff = context.started_at - timedelta(days=context.runtime.settings.job_retention_days)
    jobs = await _prune_jobs(db, cutoff)
    pruned = {
        "batches": await _delete(
            db,
            BatchJob,
            BatchJob.status.in_(BATCH_ENDED),
            BatchJob.completed_at < cutoff,
            # An item an operator retried since is running again: its batch stays.
            ~sa.exists().where(
                WorkerJob.batch_job_id == BatchJob.id, WorkerJob.status.not_in(ENDED)
            ),
        ),
        "processes": await _prune_processes(db, cutoff),
        "metrics": await _delete(db, WorkerMetric, WorkerMetric.timestamp < cutoff),
        "activity logs": await _delete(db, WorkerActivityLog, WorkerActivityLog.timestamp < cutoff),
        "worker notifications": await _delete(
            db, WorkerNotification, WorkerNotification.processed_at < cutoff
        ),
        "notification batches": await _delete(
            db,
            NotificationBatch,
            NotificationBatch.status.in_(BATCH_ENDED),
            NotificationBatch.completed_at < cutoff,
        ),
    }
    return f"pruned {jobs} jobs, " + ", ".join(f"{n} {what}" for what, n in pruned.items())


async def _delete(db: AsyncSession, model: type[Base], *where: sa.ColumnElement[bool]) -> int:
    result = await db.execute(sa.delete(model).where(*where))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def _prune_jobs(db: AsyncSession, cutoff: datetime) -> int:
    """Ended jobs older than `cutoff` (up to ten chunks a run), the newest of each type kept."""
    newest = (
        sa.select(WorkerJob.type, sa.func.max(WorkerJob.run_at).label("run_at"))
        .group_by(WorkerJob.type)
        .subquery()
    )
    keep = set(
        await db.scalars(
            sa.select(WorkerJob.id).join(
                newest,
                sa.and_(WorkerJob.type == newest.c.type, WorkerJob.run_at == newest.c.run_at),
            )
        )
    )
    doomed = [
        job_id
        for job_id in await db.scalars(
            sa.select(WorkerJob.id)
            .where(WorkerJob.status.in_(ENDED), WorkerJob.completed_at < cutoff)
            .limit(CHUNK * 10)
        )
        if job_id not in keep
    ]
    for start in range(0, len(doomed), CHUNK):
        await db.execute(
            sa.delete(WorkerJob).where(WorkerJob.id.in_(doomed[start : start + CHUNK]))
        )
    return len(doomed)


async def _prune_processes(db: AsyncSession, cutoff: datetime) -> int:
    """Processes stopped or failed before `cutoff`, with their `workers` rows (and so their
    metrics, activity logs, alerts and notifications)."""
    gone = list(
        await db.scalars(
            sa.select(WorkerProcess.id).where(
                WorkerProcess.status.in_(("stopped", "failed")), WorkerProcess.updated_at < cutoff
            )
        )
    )
    if gone:
        await db.execute(sa.delete(WorkerProcess).where(WorkerProcess.id.in_(gone)))
        await db.execute(sa.delete(Worker).where(Worker.worker_id.in_(gone)))
    return len(gone)


PRUNE = JobType(
    "jobs.prune",
    NoPayload,
    _prune,
    queue="maintenance",
    max_attempts=3,
    operator=True,
    description=(
        "Delete ended jobs and batches, gone processes, worker metrics, activity logs and "
        "delivered worker notifications older than RCMS_JOB_RETENTION_DAYS"
    ),
)
JOB_TYPES = (PRUNE,)
