"""Operating background work: jobs (list, read, enqueue, retry, cancel, discard), job types,
queue depth and the worker processes' health. Every function authorizes its caller.

An operator's change is a compare-and-set UPDATE (or DELETE) on the job's status: it applies
only from the states its rule names, so an operator racing a worker (a job being claimed as
it is cancelled) or another operator changes nothing and gets 409. Each change is audited
and emits `JobChanged` (the live feed); a job queued again also wakes the workers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.audit import record
from realtime_cms.db import SessionFactory
from realtime_cms.errors import Conflict, NotFound, Unprocessable
from realtime_cms.events import EventBus, emit
from realtime_cms.jobs.batches import ItemEnded, items_ended
from realtime_cms.jobs.events import DISCARDED, JobChanged, JobFeed
from realtime_cms.jobs.leases import LIVE_PROCESS
from realtime_cms.jobs.queue import JobsEnqueued, enqueue
from realtime_cms.jobs.registry import JobType, Registry
from realtime_cms.jobs.schemas import (
    ActivityOut,
    JobDetailOut,
    JobEnqueue,
    JobOut,
    JobTypeOut,
    QueueDepthOut,
    WorkerDetailOut,
    WorkerOut,
)
from realtime_cms.listing import ListQuery, Page
from realtime_cms.models.auth import Permission, RolePermission, UserRole
from realtime_cms.models.base import utcnow
from realtime_cms.models.workers import Worker, WorkerActivityLog, WorkerJob, WorkerProcess
from realtime_cms.principal import Principal
from realtime_cms.rbac.authorize import authorize

if TYPE_CHECKING:
    from realtime_cms.runtime import Emitter

VIEW, MANAGE, WORKERS_VIEW = "jobs.view", "jobs.manage", "workers.view"
ENDED = ("completed", "failed", "cancelled")
RETRYABLE = ("failed", "cancelled")
# What queue depth counts: ended jobs can be millions of rows, waiting ones are few.
WAITING = ("queued", "processing", "failed")
ACTIVITY_LIMIT = 50
MAX_AHEAD = timedelta(days=366)


# --- jobs ---------------------------------------------------------------------------------


async def list_jobs(db: AsyncSession, principal: Principal, query: ListQuery) -> Page[WorkerJob]:
    authorize(principal, VIEW)
    return await query.fetch(db, sa.select(WorkerJob))


async def _job(db: AsyncSession, job_id: str) -> WorkerJob:
    """The job as stored now (after this transaction's own UPDATEs), or NotFound."""
    job = await db.scalar(
        sa.select(WorkerJob).where(WorkerJob.id == job_id).execution_options(populate_existing=True)
    )
    if job is None:
        raise NotFound(f"No job {job_id}", code="job_not_found")
    return job


def secret_fields(job_type: JobType[Any]) -> set[str]:
    """Payload fields the job type's model marks `writeOnly` (e.g. a mail body with a link
    carrying a token): stored for the handler, never shown."""
    return {
        name
        for name, info in job_type.payload.model_fields.items()
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("writeOnly")
    }


def detail(job: WorkerJob, registry: Registry) -> JobDetailOut:
    payload: dict[str, Any] | None = None
    redacted: list[str] = []
    if job.type in registry and isinstance(job.payload, dict):
        secret = secret_fields(registry.get(job.type))
        payload = {name: None if name in secret else value for name, value in job.payload.items()}
        redacted = sorted(secret & job.payload.keys())
    late = job.started_at - job.run_at if job.started_at is not None else None
    return JobDetailOut(
        **JobOut.model_validate(job).model_dump(),
        payload=payload,
        redacted_fields=redacted,
        output=job.output,
        lateness_seconds=late.total_seconds() if late is not None else None,
    )


async def get_job(
    db: AsyncSession, principal: Principal, registry: Registry, job_id: str
) -> JobDetailOut:
    authorize(principal, VIEW)
    return detail(await _job(db, job_id), registry)


def _run_at(value: datetime | None, now: datetime) -> datetime | None:
    if value is None:
        return None
    value = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if value > now + MAX_AHEAD:
        raise Unprocessable(
            "run_at is more than a year ahead",
            code="invalid_run_at",
            errors=[{"field": "run_at", "message": "at most 366 days from now"}],
        )
    return max(value, now)


def operator_type(registry: Registry, name: str, field: str = "type") -> JobType[Any]:
    """The job type `name` if operators may enqueue it, or Unprocessable naming `field`."""
    job_type = registry.get(name, field=field)
    if not job_type.operator:
        raise Unprocessable(
            f"Job type {name} is not one operators enqueue",
            code="job_type_not_operator",
            errors=[{"field": field, "message": "not an operator job type"}],
        )
    return job_type


async def enqueue_job(
    db: AsyncSession, principal: Principal, registry: Registry, body: JobEnqueue
) -> JobDetailOut:
    """Queue a job of an operator job type (422 naming `type` for any other, `payload.<field>`
    for a payload its model refuses; 409 `job_duplicate` when the dedupe key is taken)."""
    authorize(principal, MANAGE)
    job_type = operator_type(registry, body.type)
    job_id = await enqueue(
        db,
        job_type,
        body.payload,
        run_at=_run_at(body.run_at, utcnow()),
        dedupe_key=body.dedupe_key,
        priority=body.priority,
    )
    if job_id is None:
        raise Conflict("A job with this dedupe key is queued or running", code="job_duplicate")
    emit(db, JobChanged(job_id, "queued", job_type.name, job_type.queue))
    details = {"job_id": job_id, "type": job_type.name}
    await record(db, principal, "job.enqueue", "job", None, details)
    return detail(await _job(db, job_id), registry)


async def _changed(
    db: AsyncSession, principal: Principal, job: WorkerJob, action: str, status: str
) -> None:
    emit(db, JobChanged(job.id, status, job.type, job.queue))
    await record(db, principal, action, "job", None, {"job_id": job.id, "type": job.type})


async def retry_job(
    db: AsyncSession, principal: Principal, registry: Registry, job_id: str
) -> JobDetailOut:
    """A failed or cancelled job queued again now, its attempts from zero (its last error
    kept until it completes); 409 `job_not_retryable` in any other state."""
    authorize(principal, MANAGE)
    result = await db.execute(
        sa.update(WorkerJob)
        .where(WorkerJob.id == job_id, WorkerJob.status.in_(RETRYABLE))
        .values(
            status="queued",
            attempts=0,
            run_at=utcnow(),
            started_at=None,
            completed_at=None,
            process_id=None,
        )
    )
    job = await _job(db, job_id)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(
            f"The job is {job.status}: only a failed or cancelled job is retried",
            code="job_not_retryable",
        )
    await _changed(db, principal, job, "job.retry", "queued")
    emit(db, JobsEnqueued(job.queue))
    return detail(job, registry)


async def cancel_job(
    db: AsyncSession, principal: Principal, registry: Registry, job_id: str
) -> JobDetailOut:
    """A queued job cancelled (it never runs; its dedupe key is free again). A running job
    cannot be stopped (409 `job_running`), an ended one is left as it is (409 `job_ended`)."""
    authorize(principal, MANAGE)
    result = await db.execute(
        sa.update(WorkerJob)
        .where(WorkerJob.id == job_id, WorkerJob.status == "queued")
        .values(status="cancelled", completed_at=utcnow(), dedupe_key=None, process_id=None)
    )
    job = await _job(db, job_id)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        if job.status == "processing":
            raise Conflict("The job is running and cannot be cancelled", code="job_running")
        raise Conflict(f"The job already ended ({job.status})", code="job_ended")
    if job.batch_job_id is not None:
        # A cancelled item ends as failed: its batch still ends, and its callback fires.
        ended = ItemEnded(job.batch_job_id, job.id, "failed", {"error": "cancelled"})
        await items_ended(db, [ended], utcnow())
    await _changed(db, principal, job, "job.cancel", "cancelled")
    return detail(job, registry)


async def discard_job(db: AsyncSession, principal: Principal, job_id: str) -> None:
    """Delete an ended job (completed, failed or cancelled); 409 `job_not_ended` otherwise."""
    authorize(principal, MANAGE)
    job = await _job(db, job_id)
    result = await db.execute(
        sa.delete(WorkerJob).where(WorkerJob.id == job_id, WorkerJob.status.in_(ENDED))
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(
            f"The job is {job.status}: only an ended job is discarded", code="job_not_ended"
        )
    await _changed(db, principal, job, "job.discard", DISCARDED)


# --- job types and queues -------------------------------------------------------------------


def job_type_out(job_type: JobType[Any]) -> JobTypeOut:
    return JobTypeOut(
        name=job_type.name,
        queue=job_type.queue,
        description=job_type.description,
        operator=job_type.operator,
        priority=job_type.priority,
        max_attempts=job_type.max_attempts,
        timeout_seconds=job_type.timeout_seconds,
        payload_schema=job_type.payload.model_json_schema(),
    )


def job_types(principal: Principal, registry: Registry) -> list[JobTypeOut]:
    """The job types this process knows, by name."""
    authorize(principal, VIEW)
    return [job_type_out(job_type) for job_type in registry]


async def depth(db: AsyncSession, queues: Iterable[str], now: datetime) -> list[QueueDepthOut]:
    """Waiting work per queue: every queue in `queues` and any other a job is waiting on."""
    is_due = sa.and_(WorkerJob.status == "queued", WorkerJob.run_at <= now)
    due_run_at = sa.type_coerce(sa.case((is_due, WorkerJob.run_at)), WorkerJob.run_at.type)
    rows = await db.execute(
        sa.select(
            WorkerJob.queue,
            WorkerJob.status,
            sa.func.count(),
            sa.func.sum(sa.case((is_due, 1), else_=0)),
            sa.type_coerce(sa.func.min(due_run_at), WorkerJob.run_at.type),
        )
        .where(WorkerJob.status.in_(WAITING))
        .group_by(WorkerJob.queue, WorkerJob.status)
    )
    registered = set(queues)
    found: dict[str, dict[str, Any]] = {
        name: {"queued": 0, "due": 0, "processing": 0, "failed": 0, "oldest_due_at": None}
        for name in registered
    }
    for queue, status, count, due, oldest in rows:
        counts = found.setdefault(
            queue, {"queued": 0, "due": 0, "processing": 0, "failed": 0, "oldest_due_at": None}
        )
        counts[status] = int(count)
        if status == "queued":
            counts["due"], counts["oldest_due_at"] = int(due or 0), oldest
    return [
        QueueDepthOut(queue=name, registered=name in registered, **counts)
        for name, counts in sorted(found.items())
    ]


async def queue_depth(
    db: AsyncSession, principal: Principal, registry: Registry
) -> list[QueueDepthOut]:
    authorize(principal, VIEW)
    return await depth(db, registry.queues(), utcnow())


def feed(bus: EventBus, emitter: Emitter, sessions: SessionFactory, registry: Registry) -> JobFeed:
    """The process' live feed of job changes, with queue depth read fresh for each push."""

    async def snapshot() -> list[dict[str, Any]]:
        async with sessions() as db:
            found = await depth(db, registry.queues(), utcnow())
        return [item.model_dump(mode="json") for item in found]

    return JobFeed(bus, emitter, snapshot)


async def job_viewers(db: AsyncSession, user_ids: Iterable[int]) -> set[int]:
    """Which of these users' roles grant `jobs.view` (an API token may hold less)."""
    ids = set(user_ids)
    if not ids:
        return set()
    rows = await db.scalars(
        sa.select(UserRole.user_id)
        .join(RolePermission, RolePermission.role_id == UserRole.role_id)
        .join(Permission, Permission.id == RolePermission.permission_id)
        .where(Permission.name == VIEW, UserRole.user_id.in_(ids))
        .distinct()
    )
    return set(rows)


# --- worker processes -----------------------------------------------------------------------


def processes() -> sa.Select[Any]:
    """Worker processes with their `workers` row joined (listing fields use both)."""
    return sa.select(WorkerProcess).outerjoin(Worker, Worker.worker_id == WorkerProcess.id)


def _worker_out(
    process: WorkerProcess, health: Worker | None, now: datetime, stale_after: float
) -> dict[str, Any]:
    beat = process.last_heartbeat
    age = (now - beat).total_seconds() if beat is not None else None
    return {
        "id": process.id,
        "kind": process.type,
        "status": process.status,
        "alive": process.status in LIVE_PROCESS and age is not None and age <= stale_after,
        "pid": process.pid,
        "hostname": health.hostname if health else None,
        "memory_mb": process.current_memory,
        "memory_limit_mb": process.memory_limit,
        "last_heartbeat": beat,
        "heartbeat_age_seconds": age,
        "current_workload": health.current_workload if health else None,
        "max_workload": health.max_workload if health else None,
        "health_score": health.health_score if health else None,
        "failure_count": health.failure_count if health else None,
        "last_failure_time": health.last_failure_time if health else None,
        "last_job_id": process.last_job_id,
        "created_at": process.created_at,
    }


async def _health(db: AsyncSession, ids: Sequence[str]) -> dict[str, Worker]:
    if not ids:
        return {}
    rows = await db.scalars(sa.select(Worker).where(Worker.worker_id.in_(ids)))
    return {row.worker_id: row for row in rows}


async def list_workers(
    db: AsyncSession, principal: Principal, query: ListQuery, *, stale_after: float
) -> Page[WorkerOut]:
    authorize(principal, WORKERS_VIEW)
    page = await query.fetch(db, processes())
    health = await _health(db, [process.id for process in page.items])
    now = datetime.now(UTC)
    items = [
        WorkerOut(**_worker_out(process, health.get(process.id), now, stale_after))
        for process in page.items
    ]
    return Page(items=items, total=page.total, limit=page.limit, offset=page.offset)


def _details(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        return {"text": text}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


async def get_worker(
    db: AsyncSession, principal: Principal, process_id: str, *, stale_after: float
) -> WorkerDetailOut:
    """A worker process and its latest ACTIVITY_LIMIT lifecycle events, newest first."""
    authorize(principal, WORKERS_VIEW)
    process = await db.get(WorkerProcess, process_id)
    if process is None:
        raise NotFound(f"No worker process {process_id}", code="worker_not_found")
    health = await _health(db, [process_id])
    logs = await db.scalars(
        sa.select(WorkerActivityLog)
        .where(WorkerActivityLog.worker_id == process_id)
        .order_by(WorkerActivityLog.log_id.desc())
        .limit(ACTIVITY_LIMIT)
    )
    activity = [
        ActivityOut(
            id=log.log_id,
            action=log.action_type,
            details=_details(log.details),
            timestamp=log.timestamp,
        )
        for log in logs
    ]
    out = _worker_out(process, health.get(process_id), datetime.now(UTC), stale_after)
    return WorkerDetailOut(**out, activity=activity)
