"""Schedules of content items: create, read, list, change and cancel them.

A schedule takes what a manual publish takes: `content.publish`, and `content.update` on the
item (`.own` for its author). Creating one on a draft makes the item `scheduled` for the
publish time; cancelling the last pending one makes a `scheduled` item a draft again; both
through the item's own lifecycle (`state.move_item`). Every change is recorded by
`state.record`; every (re)schedule enqueues its job in the same transaction (`jobs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.content.items import Authored
from realtime_cms.content.queries import load_item
from realtime_cms.errors import Conflict
from realtime_cms.models.base import utcnow
from realtime_cms.models.content import ContentItem
from realtime_cms.models.workflows import ScheduledContent
from realtime_cms.principal import Principal
from realtime_cms.rbac.authorize import authorize
from realtime_cms.scheduling import recurrence
from realtime_cms.scheduling.jobs import enqueue_publish
from realtime_cms.scheduling.recurrence import InvalidRecurrence, Recurrence
from realtime_cms.scheduling.schemas import RecurrenceIn, ScheduleCreate, ScheduleUpdate
from realtime_cms.scheduling.state import (
    PENDING,
    Movers,
    instant,
    load,
    move_item,
    pending_publish_times,
    record,
    refuse,
    zone_of,
)

_RECURRENCE_COLUMNS = (
    "recurrence_pattern",
    "recurrence_interval",
    "recurrence_byday",
    "recurrence_bymonthday",
    "recurrence_end_date",
)


@dataclass(frozen=True, slots=True)
class Plan:
    """A schedule's checked times and rule."""

    timezone: str
    publish: datetime
    expire: datetime | None
    rule: Recurrence | None


def authorize_publish(principal: Principal, item: ContentItem) -> None:
    """What a manual publish of `item` needs."""
    authorize(principal, "content.update", Authored(item.author_id or 0))
    authorize(principal, "content.publish")


def rule_from(data: RecurrenceIn | None) -> Recurrence | None:
    if data is None:
        return None
    return Recurrence(
        pattern=data.pattern,
        interval=data.interval,
        by_day=tuple(data.by_day),
        by_month_day=data.by_month_day,
        until=data.until,
    )


def check_rule(publish: datetime, tz: ZoneInfo, rule: Recurrence | None) -> None:
    if rule is None:
        return
    try:
        recurrence.check(recurrence.to_local(publish, tz), tz, rule)
    except InvalidRecurrence as exc:
        raise refuse(exc.field, exc.message, "invalid_recurrence") from exc


def plan(
    *,
    timezone: str,
    publish_at: datetime,
    expire_at: datetime | None,
    rule: Recurrence | None,
    now: datetime,
) -> Plan:
    """The times as UTC instants, checked: in the future, expiry after publish, a rule that
    fires. Unprocessable names the field."""
    tz = zone_of(timezone)
    publish = instant(publish_at, tz)
    if publish <= now:
        raise refuse("publish_at", "must be in the future", "schedule_in_past")
    expire = None if expire_at is None else instant(expire_at, tz)
    if expire is not None and expire <= publish:
        raise refuse("expire_at", "must be after publish_at", "expire_before_publish")
    check_rule(publish, tz, rule)
    return Plan(timezone, publish, expire, rule)


def _apply(row: ScheduledContent, planned: Plan, priority: int | None) -> None:
    row.timezone = planned.timezone
    row.publish_time = planned.publish
    row.expire_time = planned.expire
    if priority is not None:
        row.priority = priority
    if planned.rule is None:
        for name in _RECURRENCE_COLUMNS:
            setattr(row, name, None)
        row.is_recurring = False
    else:
        for name, value in planned.rule.columns().items():
            setattr(row, name, value)


async def _schedule_item(
    db: AsyncSession, principal: Principal, movers: Movers, item_id: int, *, besides: int | None
) -> None:
    """Keep the item's status in step with its pending schedules: a draft with one becomes
    `scheduled` for the earliest; a `scheduled` item follows the earliest, or with none left
    becomes a draft again."""
    item = await load_item(db, item_id)
    times = await pending_publish_times(db, item_id, besides=besides)
    if item.status == "draft" and times:
        await move_item(db, principal, movers, item_id, status="scheduled", published_at=times[0])
    elif item.status == "scheduled" and not times:
        await move_item(db, principal, movers, item_id, status="draft")
    elif item.status == "scheduled" and times[0] != item.published_at:
        await move_item(db, principal, movers, item_id, published_at=times[0])


async def create_schedule(
    db: AsyncSession, principal: Principal, movers: Movers, *, item_id: int, data: ScheduleCreate
) -> ScheduledContent:
    """A pending schedule on the item, created by (and later run as) the caller."""
    item = await load_item(db, item_id)
    authorize_publish(principal, item)
    planned = plan(
        timezone=data.timezone,
        publish_at=data.publish_at,
        expire_at=data.expire_at,
        rule=rule_from(data.recurrence),
        now=utcnow(),
    )
    row = ScheduledContent(
        site_id=item.site_id,
        content_id=item.id,
        status=PENDING,
        created_by=principal.user_id,
        priority=data.priority,
    )
    _apply(row, planned, data.priority)
    db.add(row)
    await db.flush()
    await _schedule_item(db, principal, movers, item.id, besides=None)
    await record(db, row, old=None, new=PENDING, by=principal.user_id, notes="created")
    await enqueue_publish(db, row)
    await db.refresh(row)
    return row


async def list_schedules(
    db: AsyncSession, principal: Principal, *, item_id: int
) -> list[ScheduledContent]:
    """The item's schedules, by publish time."""
    authorize(principal, "content.view")
    await load_item(db, item_id)
    rows = await db.scalars(
        sa.select(ScheduledContent)
        .where(ScheduledContent.content_id == item_id)
        .order_by(ScheduledContent.publish_time, ScheduledContent.id)
    )
    return list(rows)


async def get_schedule(db: AsyncSession, principal: Principal, schedule_id: int) -> Any:
    authorize(principal, "content.view")
    return await load(db, schedule_id)


async def _pending(db: AsyncSession, principal: Principal, schedule_id: int) -> ScheduledContent:
    row = await load(db, schedule_id)
    authorize_publish(principal, await load_item(db, row.content_id))
    if row.status != PENDING:
        raise Conflict(
            f"A {row.status} schedule cannot change", code="schedule_not_pending", status=409
        )
    return row


async def update_schedule(
    db: AsyncSession,
    principal: Principal,
    movers: Movers,
    *,
    schedule_id: int,
    data: ScheduleUpdate,
) -> ScheduledContent:
    """Move a pending schedule's times, zone, priority or rule; its new due time gets a job
    (the old job finds the row moved and does nothing)."""
    row = await _pending(db, principal, schedule_id)
    given = data.model_fields_set
    timezone = data.timezone or row.timezone
    # Not given: the stored instants, whatever the zone (they are aware, so kept as they are).
    publish_at = data.publish_at if data.publish_at is not None else row.publish_time
    expire_at = data.expire_at if "expire_at" in given else row.expire_time
    if "recurrence" in given:
        rule = rule_from(data.recurrence)
    else:
        rule = Recurrence.from_columns(row) if row.is_recurring else None
    planned = plan(
        timezone=timezone, publish_at=publish_at, expire_at=expire_at, rule=rule, now=utcnow()
    )
    moved = planned.publish != row.publish_time
    _apply(row, planned, data.priority)
    await db.flush()
    if moved:
        await _schedule_item(db, principal, movers, row.content_id, besides=None)
        await enqueue_publish(db, row)
    await record(db, row, old=PENDING, new=PENDING, by=principal.user_id, notes="changed")
    await db.refresh(row)
    return row


async def cancel_schedule(
    db: AsyncSession, principal: Principal, movers: Movers, *, schedule_id: int
) -> None:
    """Cancel a pending schedule (a recurring one with its pending occurrences); the item
    goes back to draft when it was waiting for no other schedule."""
    row = await _pending(db, principal, schedule_id)
    rows = [row]
    if row.is_recurring:
        children = await db.scalars(
            sa.select(ScheduledContent).where(
                ScheduledContent.parent_event_id == row.id, ScheduledContent.status == PENDING
            )
        )
        rows.extend(children)
    for each in rows:
        each.status = "cancelled"
    await db.flush()
    await _schedule_item(db, principal, movers, row.content_id, besides=None)
    for each in rows:
        await record(db, each, old=PENDING, new="cancelled", by=principal.user_id)
