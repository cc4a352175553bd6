"""What the schedules' service and jobs share: times in a zone, a row's view, its recorded
state changes (`workflow_monitoring` and `ScheduleChanged`), and moves of the scheduled item.

An item moves only through `content.items.update_item`, as the acting user, so a schedule's
transitions pass the same lifecycle rules and permission checks as a manual publish and are
audited, kept in `version_history` and announced (`ContentStatusChanged`) the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.content.binding import ContentBinding
from realtime_cms.content.items import update_item
from realtime_cms.errors import NotFound, Unprocessable
from realtime_cms.events import publish
from realtime_cms.models.content import ContentItem
from realtime_cms.models.workflows import ScheduledContent, WorkflowMonitoring
from realtime_cms.principal import Principal
from realtime_cms.scheduling import recurrence
from realtime_cms.scheduling.events import ScheduleChanged
from realtime_cms.scheduling.recurrence import InvalidRecurrence, Recurrence
from realtime_cms.scheduling.schemas import NEXT_OCCURRENCES, RecurrenceOut, ScheduleOut
from realtime_cms.security.passwords import Passwords

# Statuses from which a schedule still does something.
PENDING = "scheduled"


@dataclass(frozen=True, slots=True)
class Movers:
    """What moving an item needs besides the session: its live document and passwords."""

    binding: ContentBinding
    passwords: Passwords


def refuse(field: str, message: str, kind: str = "invalid_schedule") -> Unprocessable:
    """A 422 naming the body field `field` (dotted for nested ones)."""
    loc = ["body", *field.split(".")]
    return Unprocessable(
        message, code=kind, errors=[{"loc": loc, "message": message, "type": kind}]
    )


def zone_of(name: str) -> ZoneInfo:
    try:
        return recurrence.zone(name)
    except InvalidRecurrence as exc:
        raise refuse(exc.field, exc.message, "unknown_timezone") from exc


def instant(value: datetime, tz: ZoneInfo) -> datetime:
    """An input time as aware UTC to the second: naive is wall-clock in `tz`, aware is itself."""
    value = value.replace(microsecond=0)
    if value.tzinfo is None:
        return recurrence.to_utc(value, tz)
    return value.astimezone(UTC)


def local(moment: datetime | None, tz: ZoneInfo) -> datetime | None:
    return None if moment is None else recurrence.to_local(moment, tz)


def rule_of(row: ScheduledContent) -> Recurrence | None:
    return Recurrence.from_columns(row) if row.is_recurring else None


def upcoming(row: ScheduledContent, count: int = NEXT_OCCURRENCES) -> list[datetime]:
    """A pending recurring schedule's next occurrences from its own, in UTC."""
    rule = rule_of(row)
    if rule is None or row.status != PENDING:
        return []
    tz = recurrence.zone(row.timezone)
    first = recurrence.to_local(row.publish_time, tz)
    after = row.publish_time - timedelta(seconds=1)
    return recurrence.occurrences(first, tz, rule, after=after, limit=count)


def view(row: ScheduledContent) -> ScheduleOut:
    tz = recurrence.zone(row.timezone)
    rule = rule_of(row)
    return ScheduleOut(
        id=row.id,
        content_id=row.content_id,
        site_id=row.site_id,
        status=row.status or PENDING,
        publish_at=row.publish_time,
        publish_at_local=recurrence.to_local(row.publish_time, tz),
        timezone=row.timezone,
        expire_at=row.expire_time,
        expire_at_local=local(row.expire_time, tz),
        priority=row.priority or 0,
        recurrence=None
        if rule is None
        else RecurrenceOut(
            pattern=rule.pattern,
            interval=rule.interval,
            by_day=list(rule.by_day),
            by_month_day=rule.by_month_day,
            until=rule.until,
        ),
        parent_id=row.parent_event_id,
        created_by=row.created_by,
        published_at=row.published_at,
        expired_at=row.expired_at,
        lateness_seconds=row.lateness_seconds,
        last_error=row.last_error,
        next_occurrences=upcoming(row),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def load(db: AsyncSession, schedule_id: int) -> ScheduledContent:
    row = await db.get(ScheduledContent, schedule_id, populate_existing=True)
    if row is None:
        raise NotFound("No such schedule", code="schedule_not_found")
    return row


async def record(
    db: AsyncSession,
    row: ScheduledContent,
    *,
    old: str | None,
    new: str,
    by: int | None,
    notes: str | None = None,
    error: str | None = None,
) -> None:
    """One state change of `row` (or of its times, `old == new`): a `workflow_monitoring`
    row when someone can be named (`changed_by` is NOT NULL), and `ScheduleChanged`."""
    title = await db.scalar(sa.select(ContentItem.title).where(ContentItem.id == row.content_id))
    if by is not None:
        db.add(
            WorkflowMonitoring(
                event_id=row.id,
                from_state=old or "new",
                to_state=new,
                changed_by=by,
                notes=notes,
            )
        )
        await db.flush()
    changed = ScheduleChanged(
        schedule_id=row.id,
        item_id=row.content_id,
        title=title or f"content item {row.content_id}",
        old=old,
        new=new,
        actor_id=by,
        created_by=row.created_by,
        error=error,
    )
    await publish(db, changed)


async def pending_publish_times(
    db: AsyncSession, item_id: int, *, besides: int | None = None
) -> list[datetime]:
    """The publish times of the item's pending schedules (except `besides`), earliest first."""
    stmt = sa.select(ScheduledContent.publish_time).where(
        ScheduledContent.content_id == item_id, ScheduledContent.status == PENDING
    )
    if besides is not None:
        stmt = stmt.where(ScheduledContent.id != besides)
    return sorted(await db.scalars(stmt))


async def move_item(
    db: AsyncSession,
    principal: Principal,
    movers: Movers,
    item_id: int,
    *,
    status: str | None = None,
    published_at: datetime | None = None,
) -> dict[str, Any]:
    """Change the item's status and/or `published_at` as `principal` (a manual change's path)."""
    changes: dict[str, Any] = {}
    if status is not None:
        changes["status"] = status
    if published_at is not None:
        changes["published_at"] = published_at
    return await update_item(
        db,
        principal,
        binding=movers.binding,
        passwords=movers.passwords,
        item_id=item_id,
        changes=changes,
    )
