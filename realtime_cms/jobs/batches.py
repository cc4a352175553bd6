"""Batches: many jobs of one type run as one unit, with progress counters and a callback job.

`create_batch` inserts, in the caller's transaction (a batch exists iff it commits), one
`batch_jobs` row, one `worker_jobs` row per item (`batch_job_id` set) and one
`batch_job_items` row per item (`item_id` = that job's id). Workers run the items as any
other job; whatever ends an item's job records the end in the same transaction
(`items_ended`, called from realtime_cms/jobs/leases.py: the fenced completion, the last
failed attempt, the reclaim of a dead process' exhausted job):

1. the item row moves from `pending` to `completed` or `failed` by a conditional UPDATE, so
   an item is counted once, by its first end (a failed item retried by an operator later
   runs again, but the batch keeps counting it failed);
2. `completed` or `failed` of the batch row goes up by one in an atomic UPDATE, which locks
   the row until the commit: ends of the same batch's items are counted one after another;
3. a conditional UPDATE ends the batch when `completed + failed = total` and it is still
   open. Only the transaction counting the last item sees that sum, and the status check
   lets it match once, so exactly one transaction (rowcount 1) enqueues the callback job
   (its dedupe key `batch:<id>:callback` makes a second insert fail loudly, not run twice).

A batch is `pending` until its first item is claimed, `processing` until its last ends,
then `completed`, or `failed` if any item failed; the callback runs either way.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.errors import Unprocessable
from realtime_cms.events import emit
from realtime_cms.jobs.batch_feed import BatchChanged
from realtime_cms.jobs.events import JobChanged
from realtime_cms.jobs.queue import JobsEnqueued
from realtime_cms.jobs.registry import JobType
from realtime_cms.models.base import utcnow
from realtime_cms.models.workers import BatchJob, BatchJobItem, WorkerJob

MAX_ITEMS = 10_000
# A batch still running; an item whose end is not counted yet.
OPEN = ("pending", "processing")
# Item errors reported in one answer: enough to fix a generator, small enough to read.
MAX_ERRORS = 50


@dataclass(frozen=True, slots=True)
class Callback:
    """The job enqueued once every item of a batch has ended."""

    job_type: JobType[Any]
    payload: Any = None


@dataclass(frozen=True, slots=True)
class ItemEnded:
    """The job `job_id`, an item of batch `batch_id`, ended `completed` or `failed`."""

    batch_id: int
    job_id: str
    status: Literal["completed", "failed"]
    result: dict[str, Any]


def _validated(job_type: JobType[Any], payload: Any, where: str) -> dict[str, Any]:
    """The payload as stored, or Unprocessable naming its fields under `where`."""
    try:
        return job_type.validate(payload if payload is not None else {})
    except Unprocessable as exc:
        for error in exc.errors:
            error["field"] = where + str(error["field"]).removeprefix("payload")
        raise


def _items(job_type: JobType[Any], items: Sequence[Any]) -> list[dict[str, Any]]:
    if not 0 < len(items) <= MAX_ITEMS:
        raise Unprocessable(
            f"A batch has 1 to {MAX_ITEMS} items",
            code="invalid_batch",
            errors=[{"field": "items", "message": f"1 to {MAX_ITEMS} items"}],
        )
    payloads, errors = [], []
    for index, item in enumerate(items):
        try:
            payloads.append(_validated(job_type, item, f"items.{index}"))
        except Unprocessable as exc:
            errors.extend(exc.errors)
    if errors:
        raise Unprocessable(
            f"Invalid items for job type {job_type.name}",
            code="invalid_payload",
            errors=errors[:MAX_ERRORS],
        )
    return payloads


def _callback(callback: Callback | None) -> dict[str, Any] | None:
    """What the callback job will be, resolved now: firing it needs no registry."""
    if callback is None:
        return None
    job_type = callback.job_type
    return {
        "type": job_type.name,
        "payload": _validated(job_type, callback.payload, "callback.payload"),
        "queue": job_type.queue,
        "priority": job_type.priority,
        "max_attempts": job_type.max_attempts,
    }


def _job_row(
    spec: dict[str, Any], payload: dict[str, Any], now: datetime, **extra: Any
) -> dict[str, Any]:
    """A queued `worker_jobs` row of `spec` (type, queue, priority, max_attempts), due now."""
    return {
        "id": str(uuid.uuid4()),
        "type": spec["type"],
        "payload": payload,
        "queue": spec["queue"],
        "priority": spec["priority"],
        "max_attempts": spec["max_attempts"],
        "run_at": now,
        "status": "queued",
        "attempts": 0,
        "created_at": now,
        **extra,
    }


async def create_batch(
    db: AsyncSession,
    job_type: JobType[Any],
    items: Sequence[Any],
    *,
    callback: Callback | None = None,
    queue: str | None = None,
    priority: int | None = None,
) -> int:
    """Queue a batch of `job_type` jobs, one per item payload, in `db`'s transaction; its id.

    Every payload is validated first (Unprocessable naming `items.<index>.<field>`, or
    `callback.payload.<field>`); `queue` and `priority` default to the job type's.
    """
    payloads = _items(job_type, items)
    then = _callback(callback)
    now = utcnow()
    batch = BatchJob(
        type=job_type.name,
        status="pending",
        payload={"callback": then} if then is not None else None,
        total=len(payloads),
        created_at=now,
    )
    db.add(batch)
    await db.flush()
    queue = queue or job_type.queue
    spec = {
        "type": job_type.name,
        "queue": queue,
        "priority": job_type.priority if priority is None else priority,
        "max_attempts": job_type.max_attempts,
    }
    jobs = [_job_row(spec, payload, now, batch_job_id=batch.id) for payload in payloads]
    await db.execute(sa.insert(WorkerJob), jobs)
    await db.execute(
        sa.insert(BatchJobItem),
        [{"job_id": batch.id, "item_id": job["id"], "status": "pending"} for job in jobs],
    )
    emit(db, JobsEnqueued(queue))
    emit(db, BatchChanged(batch.id))
    return batch.id


async def items_started(db: AsyncSession, batch_ids: Iterable[int], now: datetime) -> None:
    """Items of these batches were claimed: a batch still pending is processing from now."""
    # Read first: once a batch is processing (nearly always), a claim takes no lock on it.
    pending = list(
        await db.scalars(
            sa.select(BatchJob.id).where(
                BatchJob.id.in_(sorted(set(batch_ids))), BatchJob.status == "pending"
            )
        )
    )
    if not pending:
        return
    await db.execute(
        sa.update(BatchJob)
        .where(BatchJob.id.in_(pending), BatchJob.status == "pending")
        .values(status="processing", started_at=now)
        .execution_options(synchronize_session=False)
    )
    for batch_id in pending:
        emit(db, BatchChanged(batch_id))


async def items_ended(db: AsyncSession, ended: Iterable[ItemEnded], now: datetime) -> None:
    """Count each item's end once, in the transaction of its job's end, and end a batch
    whose last item this was (enqueueing its callback)."""
    # In batch order: two transactions ending items of the same batches lock them alike.
    for item in sorted(ended, key=lambda end: (end.batch_id, end.job_id)):
        if not await _settle(db, item, now):
            continue
        # `completed` or `failed`: both outcomes are the names of their counters.
        counter = getattr(BatchJob, item.status)
        await db.execute(
            sa.update(BatchJob)
            .where(BatchJob.id == item.batch_id)
            .values({item.status: counter + 1})
            .execution_options(synchronize_session=False)
        )
        await _finish(db, item.batch_id, now)
        emit(db, BatchChanged(item.batch_id))


async def _settle(db: AsyncSession, item: ItemEnded, now: datetime) -> bool:
    """The item row takes its outcome unless it has one already; whether it did."""
    result = await db.execute(
        sa.update(BatchJobItem)
        .where(
            BatchJobItem.item_id == item.job_id,
            BatchJobItem.job_id == item.batch_id,
            BatchJobItem.status.in_(OPEN),
        )
        .values(status=item.status, result=item.result, processed_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def _finish(db: AsyncSession, batch_id: int, now: datetime) -> None:
    """End the batch if every item has ended and it is still open; the callback with it."""
    ended = await db.execute(
        sa.update(BatchJob)
        .where(
            BatchJob.id == batch_id,
            BatchJob.status.in_(OPEN),
            BatchJob.completed + BatchJob.failed >= BatchJob.total,
        )
        .values(
            status=sa.case((BatchJob.failed > 0, "failed"), else_="completed"), completed_at=now
        )
        .execution_options(synchronize_session=False)
    )
    if ended.rowcount != 1:  # type: ignore[attr-defined]
        return
    payload = await db.scalar(sa.select(BatchJob.payload).where(BatchJob.id == batch_id))
    then = (payload or {}).get("callback")
    if then is None:
        return
    job = _job_row(then, then["payload"], now, dedupe_key=f"batch:{batch_id}:callback")
    await db.execute(sa.insert(WorkerJob).values(job))
    await db.execute(
        sa.update(BatchJob)
        .where(BatchJob.id == batch_id)
        .values(callback_job_id=job["id"])
        .execution_options(synchronize_session=False)
    )
    emit(db, JobsEnqueued(then["queue"]))
    emit(db, JobChanged(job["id"], "queued", then["type"], then["queue"]))
