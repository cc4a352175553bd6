"""Background jobs in tests: waiting until none is due or running; running a handler directly."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.db import SessionFactory
from realtime_cms.jobs.registry import JobContext, JobType
from realtime_cms.models.base import utcnow
from realtime_cms.models.workers import WorkerJob
from realtime_cms.runtime import Runtime

POLL_SECONDS = 0.05


async def pending_jobs(sessions: SessionFactory, types: Iterable[str] | None = None) -> int:
    """Jobs (of `types`, default any) that are queued and due, or processing."""
    active = sa.or_(
        sa.and_(WorkerJob.status == "queued", WorkerJob.run_at <= utcnow()),
        WorkerJob.status == "processing",
    )
    stmt = sa.select(sa.func.count()).select_from(WorkerJob).where(active)
    if types is not None:
        stmt = stmt.where(WorkerJob.type.in_(list(types)))
    async with sessions() as db:
        return int(await db.scalar(stmt) or 0)


async def settle_jobs(
    sessions: SessionFactory, types: Iterable[str] | None = None, *, seconds: float = 30.0
) -> None:
    """Return once no job of `types` is due or running (a worker must be running them)."""
    wanted = None if types is None else list(types)
    async with asyncio.timeout(seconds):
        while True:
            left = await pending_jobs(sessions, wanted)
            if left == 0:
                return
            await asyncio.sleep(POLL_SECONDS)


def job_context(
    db: AsyncSession,
    job_type: JobType[Any],
    runtime: Runtime,
    *,
    at: datetime | None = None,
    job_id: str | None = None,
) -> JobContext:
    """What a worker hands a job's handler when it starts it at `at` (default: now)."""
    started = at or utcnow()
    return JobContext(
        job_id=job_id or f"direct-{uuid.uuid4().hex[:12]}",
        type=job_type.name,
        attempt=1,
        max_attempts=1,
        db=db,
        run_at=started,
        started_at=started,
        runtime=runtime,
    )


async def run_job(
    sessions: SessionFactory,
    job_type: JobType[Any],
    payload: dict[str, Any],
    runtime: Runtime,
    *,
    at: datetime | None = None,
) -> str | None:
    """Run a job's handler as a worker would: in one transaction, its after-commit effects
    once that committed (no lease: what is under test is the handler)."""
    async with sessions() as db, db.begin():
        context = job_context(db, job_type, runtime, at=at)
        output = await job_type.run(context, payload)
    for effect in context.after_commit:
        await effect()
    return output
