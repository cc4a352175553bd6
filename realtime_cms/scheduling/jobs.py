"""The schedules' transitions, as jobs: `scheduling.publish` and `scheduling.expire`.

Each is enqueued in the transaction that makes it due (a create or reschedule; a publish
enqueues its expire and a recurring schedule's next occurrence), with `run_at` = the due time,
so nothing waits for traffic; after downtime it is simply overdue and runs on start, its
lateness recorded. The payload names the due time: a job whose schedule has since moved,
been cancelled or already run completes as a no-op saying why, so stale jobs are harmless.

Exactly once: the row moves by compare-and-set (`... WHERE id = :id AND status = :expected
AND publish_time = :due`, one row or none) in the job's transaction, which commits with the
job's fenced completion; then the item moves as the scheduling user. When that user may no
longer do it or the lifecycle refuses, the schedule becomes `failed` with `last_error` (its
owner is notified through `ScheduleChanged`) and the job completes: retrying cannot help.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.content.queries import load_item
from realtime_cms.errors import CMSError, Forbidden
from realtime_cms.jobs.queue import enqueue
from realtime_cms.jobs.registry import JobContext, JobType
from realtime_cms.models.auth import User
from realtime_cms.models.base import utcnow
from realtime_cms.models.workers import WorkerAssignment
from realtime_cms.models.workflows import ScheduledContent
from realtime_cms.principal import Principal
from realtime_cms.rbac.service import principal_of
from realtime_cms.scheduling import recurrence
from realtime_cms.scheduling.state import (
    PENDING,
    Movers,
    move_item,
    pending_publish_times,
    record,
    rule_of,
)


class TransitionPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schedule_id: int = Field(ge=1)
    # The time the enqueuer meant: a row due at another time is not this job's any more.
    due: AwareDatetime


def _key(kind: str, schedule_id: int, due: datetime) -> str:
    return f"scheduling.{kind}:{schedule_id}:{int(due.timestamp())}"


async def _enqueue(
    db: AsyncSession, job_type: JobType[Any], row: ScheduledContent, due: datetime
) -> None:
    kind = job_type.name.removeprefix("scheduling.")
    await enqueue(
        db,
        job_type,
        TransitionPayload(schedule_id=row.id, due=due),
        run_at=due,
        dedupe_key=_key(kind, row.id, due),
        # Higher schedule priority runs first among jobs due together.
        priority=-(row.priority or 0),
    )


async def enqueue_publish(db: AsyncSession, row: ScheduledContent) -> None:
    """Queue the publish of `row` at its publish time."""
    await _enqueue(db, PUBLISH, row, row.publish_time)


async def enqueue_expire(db: AsyncSession, row: ScheduledContent) -> None:
    """Queue the expiry of published `row` at its expire time."""
    assert row.expire_time is not None
    await _enqueue(db, EXPIRE, row, row.expire_time)


def _claim(expected: str, column: Any, schedule_id: int, due: datetime, **values: Any) -> Any:
    return (
        sa.update(ScheduledContent)
        .where(
            ScheduledContent.id == schedule_id, ScheduledContent.status == expected, column == due
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def _acting(db: AsyncSession, row: ScheduledContent) -> Principal:
    """The scheduling user as a principal, now; Forbidden when they are gone or inactive."""
    user = None if row.created_by is None else await db.get(User, row.created_by)
    if user is None or not user.is_active:
        raise Forbidden("The user who scheduled this no longer exists or is inactive")
    return await principal_of(db, user)


async def _assign(context: JobContext, row: ScheduledContent) -> None:
    """Record which worker process ran the transition (`assigned_worker_id`, an assignment)."""
    worker_id = context.process_id
    if worker_id is None:
        return
    row.assigned_worker_id = worker_id
    context.db.add(
        WorkerAssignment(
            worker_id=worker_id,
            event_id=row.id,
            assigned_at=context.started_at,
            completed_at=context.started_at,
            status="completed",
        )
    )


async def _fail(db: AsyncSession, row: ScheduledContent, old: str, error: CMSError) -> str:
    message = f"{error.code}: {error.message}"
    row.status, row.last_error = "failed", message[:10_000]
    await db.flush()
    await record(
        db, row, old=old, new="failed", by=row.created_by or await _author(db, row), error=message
    )
    return f"failed: {message}"


async def _author(db: AsyncSession, row: ScheduledContent) -> int | None:
    return (await load_item(db, row.content_id)).author_id


def _movers(context: JobContext) -> Movers:
    return Movers(context.runtime.content, context.runtime.passwords)


async def _publish_item(
    db: AsyncSession, principal: Principal, movers: Movers, row: ScheduledContent
) -> None:
    """Move the item to published at the due time: an expired one (a recurring occurrence)
    back through draft first, as the lifecycle requires; already published stays so."""
    item = await load_item(db, row.content_id)
    if item.status == "published":
        return
    if item.status == "expired":
        await move_item(db, principal, movers, item.id, status="draft")
    await move_item(
        db, principal, movers, item.id, status="published", published_at=row.publish_time
    )


async def _publish(context: JobContext, payload: TransitionPayload) -> str:
    db = context.db
    row = await db.get(ScheduledContent, payload.schedule_id, populate_existing=True)
    if row is None:
        return "no-op: the schedule no longer exists"
    if row.status != PENDING:
        return f"no-op: the schedule is {row.status}"
    if row.publish_time != payload.due:
        return f"no-op: rescheduled to {row.publish_time.isoformat()}"
    lateness = max(0.0, (context.started_at - payload.due).total_seconds())
    claimed = await db.execute(
        _claim(
            PENDING,
            ScheduledContent.publish_time,
            row.id,
            payload.due,
            status="published",
            published_at=context.started_at,
            lateness_seconds=lateness,
            last_error=None,
        )
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return "no-op: another run published it"
    await db.refresh(row)
    try:
        principal = await _acting(db, row)
        await _publish_item(db, principal, _movers(context), row)
    except CMSError as exc:
        return await _fail(db, row, PENDING, exc)
    await _assign(context, row)
    await db.flush()
    notes = f"published {lateness:.3f} s after the due time"
    await record(db, row, old=PENDING, new="published", by=principal.user_id, notes=notes)
    if row.expire_time is not None:
        await enqueue_expire(db, row)
    following = await _next_occurrence(db, principal, _movers(context), row)
    return notes + (f"; next occurrence {following}" if following else "")


async def _root(db: AsyncSession, row: ScheduledContent) -> ScheduledContent | None:
    if row.is_recurring:
        return row
    if row.parent_event_id is None:
        return None
    return await db.get(ScheduledContent, row.parent_event_id)


async def _next_occurrence(
    db: AsyncSession, principal: Principal, movers: Movers, row: ScheduledContent
) -> int | None:
    """For a recurring schedule's occurrence: the next one, as a child row with its jobs."""
    root = await _root(db, row)
    rule = None if root is None else rule_of(root)
    if root is None or rule is None or root.status in ("cancelled", "failed"):
        return None
    tz = recurrence.zone(root.timezone)
    first = recurrence.to_local(root.publish_time, tz)
    due = recurrence.next_after(first, tz, rule, row.publish_time)
    if due is None:
        return None
    duration = None if root.expire_time is None else root.expire_time - root.publish_time
    child = ScheduledContent(
        site_id=root.site_id,
        content_id=root.content_id,
        publish_time=due,
        expire_time=None if duration is None else due + duration,
        priority=root.priority,
        status=PENDING,
        parent_event_id=root.id,
        is_recurring=False,
        timezone=root.timezone,
        created_by=root.created_by,
    )
    db.add(child)
    await db.flush()
    await record(db, child, old=None, new=PENDING, by=principal.user_id, notes="next occurrence")
    await enqueue_publish(db, child)
    return child.id


async def _expire(context: JobContext, payload: TransitionPayload) -> str:
    db = context.db
    row = await db.get(ScheduledContent, payload.schedule_id, populate_existing=True)
    if row is None:
        return "no-op: the schedule no longer exists"
    if row.status != "published":
        return f"no-op: the schedule is {row.status}"
    if row.expire_time != payload.due:
        return "no-op: the expiry moved"
    claimed = await db.execute(
        _claim(
            "published",
            ScheduledContent.expire_time,
            row.id,
            payload.due,
            status="expired",
            expired_at=context.started_at,
        )
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return "no-op: another run expired it"
    await db.refresh(row)
    try:
        principal = await _acting(db, row)
        outcome = await _expire_item(db, principal, _movers(context), row)
    except CMSError as exc:
        return await _fail(db, row, "published", exc)
    await _assign(context, row)
    await db.flush()
    await record(db, row, old="published", new="expired", by=principal.user_id, notes=outcome)
    return outcome


async def _expire_item(
    db: AsyncSession, principal: Principal, movers: Movers, row: ScheduledContent
) -> str:
    """Expire the item unless a later occurrence of it is live; then, if another schedule of
    it is pending, set it up for that one (expired -> draft -> scheduled)."""
    later = await db.scalar(
        sa.select(sa.func.count())
        .select_from(ScheduledContent)
        .where(
            ScheduledContent.content_id == row.content_id,
            ScheduledContent.status == "published",
            ScheduledContent.id != row.id,
            ScheduledContent.publish_time > row.publish_time,
        )
    )
    item = await load_item(db, row.content_id)
    if later or item.status != "published":
        return f"the item stays {item.status}"
    await move_item(db, principal, movers, item.id, status="expired")
    pending = [t for t in await pending_publish_times(db, item.id) if t > utcnow()]
    if pending:
        await move_item(db, principal, movers, item.id, status="draft")
        await move_item(db, principal, movers, item.id, status="scheduled", published_at=pending[0])
        return f"expired the item; scheduled again for {pending[0].isoformat()}"
    return "expired the item"


PUBLISH = JobType(
    "scheduling.publish",
    TransitionPayload,
    _publish,
    max_attempts=3,
    timeout_seconds=120.0,
    description="Publish a scheduled content item at its due time (exactly once)",
)
EXPIRE = JobType(
    "scheduling.expire",
    TransitionPayload,
    _expire,
    max_attempts=3,
    timeout_seconds=120.0,
    description="Expire a published scheduled item at its expire time (exactly once)",
)
JOB_TYPES = (PUBLISH, EXPIRE)
