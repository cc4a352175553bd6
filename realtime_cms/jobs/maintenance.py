"""The job system's own housekeeping: ended jobs and long-gone processes are pruned."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from realtime_cms.jobs.registry import JobContext, JobType, NoPayload
from realtime_cms.models.workers import Worker, WorkerJob, WorkerProcess

ENDED = ("completed", "failed", "cancelled")
CHUNK = 1000


async def _prune(context: JobContext, payload: NoPayload) -> str:
    """Delete ended jobs and stopped or failed processes older than the retention.

    The newest job of each type stays whatever its age: it holds the latest slot of a
    periodic schedule, which must not run again because its row was pruned.
    """
    db = context.db
    cutoff = context.started_at - timedelta(days=context.runtime.settings.job_retention_days)
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
    return f"pruned {len(doomed)} jobs and {len(gone)} processes"


PRUNE = JobType(
    "jobs.prune",
    NoPayload,
    _prune,
    queue="maintenance",
    max_attempts=3,
    operator=True,
    description="Delete ended jobs and gone processes older than RCMS_JOB_RETENTION_DAYS",
)
JOB_TYPES = (PRUNE,)
