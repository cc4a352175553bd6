"""Notifications for background workers (`worker_notifications`), batched like digests.

A worker's pending notifications (no batch, not processed) are claimed into one
`notification_batches` batch with a conditional UPDATE, highest priority first (1 is the
highest, 5 the lowest), so two workers claiming at once never share a notification. Marking
them processed sets `processed_at`; a batch completes when all of its notifications are.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.errors import NotFound
from realtime_cms.models.base import utcnow
from realtime_cms.models.workers import NotificationBatch, Worker, WorkerNotification
from realtime_cms.principal import Principal
from realtime_cms.rbac.authorize import authorize

PRIORITIES = range(1, 6)


@dataclass(frozen=True, slots=True)
class Batch:
    batch_id: str
    notifications: list[WorkerNotification]


async def create(
    db: AsyncSession,
    principal: Principal,
    *,
    worker_id: str,
    message: str,
    type: str = "info",
    priority: int = 3,
) -> WorkerNotification:
    """Queue a notification for a worker."""
    authorize(principal, "workers.manage")
    if await db.get(Worker, worker_id) is None:
        raise NotFound("No such worker", code="worker_not_found")
    row = WorkerNotification(
        worker_id=worker_id,
        message=message,
        type=type,
        priority=min(max(priority, PRIORITIES.start), PRIORITIES.stop - 1),
    )
    db.add(row)
    await db.flush()
    return row


async def claim_batch(
    db: AsyncSession,
    principal: Principal,
    *,
    worker_id: str,
    limit: int = 100,
    now: datetime | None = None,
) -> Batch | None:
    """Claim up to `limit` of the worker's pending notifications into a new batch."""
    authorize(principal, "workers.manage")
    now = now or utcnow()
    pending = sa.and_(
        WorkerNotification.worker_id == worker_id,
        WorkerNotification.batch_id.is_(None),
        WorkerNotification.processed_at.is_(None),
    )
    candidates = list(
        await db.scalars(
            sa.select(WorkerNotification.id)
            .where(pending)
            .order_by(WorkerNotification.priority, WorkerNotification.id)
            .limit(limit)
        )
    )
    if not candidates:
        return None
    batch_id = str(uuid.uuid4())
    db.add(NotificationBatch(batch_id=batch_id, status="processing", started_at=now))
    await db.flush()
    claimed = await db.execute(
        sa.update(WorkerNotification)
        .where(pending, WorkerNotification.id.in_(candidates))
        .values(batch_id=batch_id)
        .execution_options(synchronize_session=False)
    )
    count = int(getattr(claimed, "rowcount", 0) or 0)
    batch = await db.get(NotificationBatch, batch_id)
    assert batch is not None
    if not count:
        await db.delete(batch)
        await db.flush()
        return None
    batch.notification_count = count
    rows = await db.scalars(
        sa.select(WorkerNotification)
        .where(WorkerNotification.batch_id == batch_id)
        .order_by(WorkerNotification.priority, WorkerNotification.id)
        .execution_options(populate_existing=True)
    )
    return Batch(batch_id, list(rows))


async def mark_processed(
    db: AsyncSession, principal: Principal, *, ids: Sequence[int], now: datetime | None = None
) -> int:
    """Mark notifications processed (and read); complete the batches left with none pending."""
    authorize(principal, "workers.manage")
    now = now or utcnow()
    wanted = sorted(set(ids))
    if not wanted:
        return 0
    batches = set(
        await db.scalars(
            sa.select(WorkerNotification.batch_id).where(
                WorkerNotification.id.in_(wanted), WorkerNotification.batch_id.is_not(None)
            )
        )
    )
    done = await db.execute(
        sa.update(WorkerNotification)
        .where(WorkerNotification.id.in_(wanted), WorkerNotification.processed_at.is_(None))
        .values(processed_at=now, read_at=sa.func.coalesce(WorkerNotification.read_at, now))
        .execution_options(synchronize_session=False)
    )
    for batch_id in batches:
        open_left = await db.scalar(
            sa.select(sa.func.count()).where(
                WorkerNotification.batch_id == batch_id, WorkerNotification.processed_at.is_(None)
            )
        )
        if not open_left:
            await db.execute(
                sa.update(NotificationBatch)
                .where(NotificationBatch.batch_id == batch_id)
                .values(status="completed", completed_at=now)
            )
    return int(getattr(done, "rowcount", 0) or 0)
