"""Operating batches: list, read, create and list their items. Every function authorizes.

Reading needs `jobs.view`, creating `jobs.manage`, as for single jobs
(realtime_cms/jobs/service.py): a batch is many jobs enqueued at once, so its item type and
its callback type must be operator types, as `POST /api/v1/jobs` requires.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.audit import record
from realtime_cms.errors import NotFound
from realtime_cms.jobs.batches import Callback, create_batch
from realtime_cms.jobs.registry import Registry
from realtime_cms.jobs.schemas import BatchCallbackOut, BatchCreate, BatchItemOut, BatchOut
from realtime_cms.jobs.service import MANAGE, VIEW, operator_type
from realtime_cms.listing import ListQuery, Page
from realtime_cms.models.workers import BatchJob, BatchJobItem
from realtime_cms.principal import Principal
from realtime_cms.rbac.authorize import authorize


def batch_out(batch: BatchJob) -> BatchOut:
    then = (batch.payload or {}).get("callback")
    callback = BatchCallbackOut(type=then["type"], job_id=batch.callback_job_id) if then else None
    return BatchOut(
        id=batch.id,
        type=batch.type,
        status=batch.status,
        total=batch.total,
        completed=batch.completed,
        failed=batch.failed,
        pending=batch.total - batch.completed - batch.failed,
        callback=callback,
        created_at=batch.created_at,
        started_at=batch.started_at,
        completed_at=batch.completed_at,
    )


async def _batch(db: AsyncSession, batch_id: int) -> BatchJob:
    """The batch as stored now, or NotFound."""
    batch = await db.scalar(
        sa.select(BatchJob).where(BatchJob.id == batch_id).execution_options(populate_existing=True)
    )
    if batch is None:
        raise NotFound(f"No batch {batch_id}", code="batch_not_found")
    return batch


async def list_batches(db: AsyncSession, principal: Principal, query: ListQuery) -> Page[BatchOut]:
    authorize(principal, VIEW)
    page = await query.fetch(db, sa.select(BatchJob))
    items = [batch_out(batch) for batch in page.items]
    return Page(items=items, total=page.total, limit=page.limit, offset=page.offset)


async def get_batch(db: AsyncSession, principal: Principal, batch_id: int) -> BatchOut:
    authorize(principal, VIEW)
    return batch_out(await _batch(db, batch_id))


async def list_items(
    db: AsyncSession, principal: Principal, batch_id: int, query: ListQuery
) -> Page[BatchItemOut]:
    authorize(principal, VIEW)
    await _batch(db, batch_id)
    page = await query.fetch(db, sa.select(BatchJobItem), BatchJobItem.job_id == batch_id)
    items = [
        BatchItemOut(
            id=item.id,
            job_id=item.item_id,
            status=item.status,
            result=item.result,
            processed_at=item.processed_at,
        )
        for item in page.items
    ]
    return Page(items=items, total=page.total, limit=page.limit, offset=page.offset)


async def create(
    db: AsyncSession, principal: Principal, registry: Registry, body: BatchCreate
) -> BatchOut:
    """Queue a batch of an operator job type (422 naming `type`, `callback.type`,
    `items.<index>.<field>` or `callback.payload.<field>` for what is refused)."""
    authorize(principal, MANAGE)
    job_type = operator_type(registry, body.type, "type")
    callback = None
    if body.callback is not None:
        then = operator_type(registry, body.callback.type, "callback.type")
        callback = Callback(then, body.callback.payload)
    batch_id = await create_batch(
        db, job_type, body.items, callback=callback, queue=body.queue, priority=body.priority
    )
    details = {"batch_id": batch_id, "type": job_type.name, "items": len(body.items)}
    await record(db, principal, "batch.create", "batch", batch_id, details)
    return batch_out(await _batch(db, batch_id))
