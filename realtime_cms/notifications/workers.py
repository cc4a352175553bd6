"""Worker notifications: batched to a worker's staff by the job `notifications.worker_batch`.

`create` stores a notification for a worker (`worker_notifications`) and enqueues the
worker's batch job, one pending per worker (a dedupe key). The job claims the worker's
pending notifications (no batch, not processed; highest priority first, 1 highest .. 5
lowest) into one `notification_batches` batch with a conditional UPDATE, so two runs never
share a notification; it tells the staff (the active users holding `workers.manage`) with
one summary through `notify`, so their preferences and mail apply, marks the notifications
processed and completes the batch, all in the job's transaction: exactly once.

A notification created while the worker's job runs must not wait for another one: `create`
and the job both take the worker's row lock first (FOR UPDATE on MariaDB; on SQLite the one
write lock, which the job takes with its first write), so either the running job sees the
new notification or it has committed, freeing its dedupe key, before `create` enqueues.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.errors import NotFound
from realtime_cms.jobs.alerts import staff
from realtime_cms.jobs.queue import enqueue
from realtime_cms.jobs.registry import JobContext, JobType
from realtime_cms.models.workers import NotificationBatch, Worker, WorkerNotification
from realtime_cms.notifications.producers import PRODUCER
from realtime_cms.notifications.service import notify, schedule_push
from realtime_cms.principal import Principal
from realtime_cms.rbac.authorize import authorize

PRIORITIES = range(1, 6)
# Notifications claimed per batch; a worker with more gets another job for the rest.
BATCH_MAX = 500
# Notifications listed in a summary; the rest are counted.
LISTED = 50
_PREVIEW = 500


class WorkerBatchPayload(BaseModel):
    """The payload of `notifications.worker_batch`: whose pending notifications to deliver."""

    model_config = {"extra": "forbid"}
    worker_id: str = Field(min_length=1, max_length=255)


@dataclass(frozen=True, slots=True)
class Delivered:
    batch_id: str
    notifications: list[WorkerNotification]
    staff: int


def _dedupe_key(worker_id: str) -> str:
    # Worker ids may be longer than a dedupe key.
    return "notifications.worker_batch:" + hashlib.sha256(worker_id.encode()).hexdigest()


async def _lock(db: AsyncSession, worker_id: str) -> bool:
    """Take the worker's row lock (see the module); False if there is no such worker."""
    found = await db.scalar(
        sa.select(Worker.worker_id).where(Worker.worker_id == worker_id).with_for_update()
    )
    return found is not None


async def create(
    db: AsyncSession,
    principal: Principal,
    *,
    worker_id: str,
    message: str,
    type: str = "info",
    priority: int = 3,
) -> WorkerNotification:
    """Queue a notification for a worker's staff (delivered by the worker's batch job)."""
    authorize(principal, "workers.manage")
    row = await add(db, worker_id, message, type=type, priority=priority)
    if row is None:
        raise NotFound("No such worker", code="worker_not_found")
    return row


async def add(
    db: AsyncSession, worker_id: str, message: str, *, type: str = "info", priority: int = 3
) -> WorkerNotification | None:
    """What the job system itself reports about one of its workers (a job failed for good,
    a process declared dead), in the caller's transaction; None if there is no such worker."""
    if not await _lock(db, worker_id):
        return None
    row = WorkerNotification(
        worker_id=worker_id,
        message=message,
        type=type,
        priority=min(max(priority, PRIORITIES.start), PRIORITIES.stop - 1),
    )
    db.add(row)
    await db.flush()
    payload = WorkerBatchPayload(worker_id=worker_id)
    await enqueue(db, WORKER_BATCH, payload, dedupe_key=_dedupe_key(worker_id))
    return row


def _pending(worker_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(
        WorkerNotification.worker_id == worker_id,
        WorkerNotification.batch_id.is_(None),
        WorkerNotification.processed_at.is_(None),
    )


async def _claim(
    db: AsyncSession, batch_id: str, worker_id: str, limit: int
) -> list[WorkerNotification]:
    """Move up to `limit` pending notifications into the batch; those it got, by priority."""
    order = (WorkerNotification.priority, WorkerNotification.id)
    # FOR UPDATE: read the latest rows, not a snapshot older than the worker's lock.
    candidates = list(
        await db.scalars(
            sa.select(WorkerNotification.id)
            .where(_pending(worker_id))
            .order_by(*order)
            .limit(limit)
            .with_for_update()
        )
    )
    if not candidates:
        return []
    await db.execute(
        sa.update(WorkerNotification)
        .where(_pending(worker_id), WorkerNotification.id.in_(candidates))
        .values(batch_id=batch_id)
        .execution_options(synchronize_session=False)
    )
    rows = await db.scalars(
        sa.select(WorkerNotification)
        .where(WorkerNotification.batch_id == batch_id)
        .order_by(*order)
        .execution_options(populate_existing=True)
    )
    return list(rows)


def _summary(worker_id: str, rows: Sequence[WorkerNotification]) -> tuple[str, str]:
    """The staff notification's title and message."""
    noun = "notification" if len(rows) == 1 else "notifications"
    title = f"Worker {worker_id}: {len(rows)} {noun}"[:255]
    lines = []
    for row in rows[:LISTED]:
        text = " ".join(row.message.split())[:_PREVIEW]
        lines.append(f"- [priority {row.priority}] {row.type}: {text}")
    if len(rows) > LISTED:
        lines.append(f"... and {len(rows) - LISTED} more")
    return title, "\n".join(lines)


async def _follow_up(db: AsyncSession, worker_id: str) -> None:
    """More than a batch was pending: another job takes the rest (no dedupe key: this job
    holds the worker's until it commits)."""
    left = await db.scalar(sa.select(sa.func.count()).where(_pending(worker_id)))
    if left:
        await enqueue(db, WORKER_BATCH, WorkerBatchPayload(worker_id=worker_id))


async def deliver_batch(
    db: AsyncSession, worker_id: str, now: datetime, *, limit: int = BATCH_MAX
) -> Delivered | None:
    """Claim, deliver and complete one batch of the worker's pending notifications (see the
    module); None when it has none pending (or is gone)."""
    batch_id = str(uuid.uuid4())
    # The batch row first: on SQLite this write takes the lock before anything is read.
    batch = NotificationBatch(
        batch_id=batch_id, status="processing", started_at=now, created_at=now
    )
    db.add(batch)
    await db.flush()
    rows = await _claim(db, batch_id, worker_id, limit) if await _lock(db, worker_id) else []
    if not rows:
        await db.delete(batch)
        await db.flush()
        return None
    people = [user.id for user in await staff(db)]
    if people:
        title, message = _summary(worker_id, rows)
        await notify(
            db, PRODUCER, users=people, title=title, message=message, type="worker_notification"
        )
    await db.execute(
        sa.update(WorkerNotification)
        .where(WorkerNotification.batch_id == batch_id)
        .values(processed_at=now)
        .execution_options(synchronize_session=False)
    )
    batch.status, batch.completed_at, batch.notification_count = "completed", now, len(rows)
    if len(rows) == limit:
        await _follow_up(db, worker_id)
    await db.flush()
    return Delivered(batch_id, rows, len(people))


async def _run(context: JobContext, payload: WorkerBatchPayload) -> str:
    now = context.started_at.replace(microsecond=0)
    delivered = await deliver_batch(context.db, payload.worker_id, now)
    if delivered is None:
        return "nothing pending"
    schedule_push(context.db, context.runtime.notifier, context.after_commit)
    count = len(delivered.notifications)
    return f"batch {delivered.batch_id}: {count} notifications to {delivered.staff} staff"


WORKER_BATCH = JobType(
    "notifications.worker_batch",
    WorkerBatchPayload,
    _run,
    description="Deliver a worker's pending notifications to its staff as one batch",
)
