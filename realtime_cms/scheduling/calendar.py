"""The publishing calendar over all schedules, and previews of a proposed schedule.

The calendar lists the schedule rows publishing in the window and, for every recurring
schedule still running, the occurrences its rule will add there (`projected`): each is
created as a row only when the one before it publishes. Projections are capped per rule and
in all (`truncated` says so).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.errors import Unprocessable
from realtime_cms.models.workflows import ScheduledContent
from realtime_cms.principal import Principal
from realtime_cms.rbac.authorize import authorize
from realtime_cms.scheduling import recurrence
from realtime_cms.scheduling.schemas import (
    CalendarEntry,
    CalendarOut,
    CalendarQuery,
    Occurrence,
    PreviewOut,
    PreviewRequest,
)
from realtime_cms.scheduling.service import check_rule, rule_from
from realtime_cms.scheduling.state import PENDING, instant, refuse, rule_of, zone_of

MAX_WINDOW = timedelta(days=366)
PER_RULE = 100
MAX_ENTRIES = 2000


def _entry(
    row: ScheduledContent, at: datetime | None = None, projected: bool = False
) -> CalendarEntry:
    tz = recurrence.zone(row.timezone)
    publish = row.publish_time if at is None else at
    expire = None
    if row.expire_time is not None:
        expire = publish + (row.expire_time - row.publish_time)
    return CalendarEntry(
        schedule_id=row.id,
        content_id=row.content_id,
        site_id=row.site_id,
        status=PENDING if projected else (row.status or PENDING),
        publish_at=publish,
        publish_at_local=recurrence.to_local(publish, tz),
        timezone=row.timezone,
        expire_at=expire,
        priority=row.priority or 0,
        projected=projected,
    )


async def calendar(db: AsyncSession, principal: Principal, query: CalendarQuery) -> CalendarOut:
    """Every schedule publishing in [from, to), with the projected recurring occurrences."""
    authorize(principal, "content.view")
    start, end = query.from_, query.to
    if start.tzinfo is None or end.tzinfo is None:
        field = "from" if start.tzinfo is None else "to"
        raise _query_error(field, "give an offset (or Z)")
    if end <= start:
        raise _query_error("to", "must be after from")
    if end - start > MAX_WINDOW:
        raise _query_error("to", "the window is at most 366 days")
    where = [ScheduledContent.publish_time >= start, ScheduledContent.publish_time < end]
    if query.site_id is not None:
        where.append(ScheduledContent.site_id == query.site_id)
    if query.status is not None:
        where.append(ScheduledContent.status == query.status)
    rows = await db.scalars(
        sa.select(ScheduledContent)
        .where(*where)
        .order_by(ScheduledContent.publish_time)
        .limit(MAX_ENTRIES + 1)
    )
    entries = [_entry(row) for row in rows]
    truncated = len(entries) > MAX_ENTRIES
    if query.status in (None, PENDING):
        projected, capped = await _projections(db, query, start, end)
        entries.extend(projected)
        truncated = truncated or capped
    entries.sort(key=lambda entry: (entry.publish_at, entry.schedule_id))
    return CalendarOut(entries=entries[:MAX_ENTRIES], truncated=truncated)


async def _projections(
    db: AsyncSession, query: CalendarQuery, start: datetime, end: datetime
) -> tuple[list[CalendarEntry], bool]:
    stmt = sa.select(ScheduledContent).where(
        ScheduledContent.is_recurring.is_(True),
        ScheduledContent.status.in_((PENDING, "published", "expired")),
    )
    if query.site_id is not None:
        stmt = stmt.where(ScheduledContent.site_id == query.site_id)
    found: list[CalendarEntry] = []
    capped = False
    for root in await db.scalars(stmt):
        latest = await _latest_occurrence(db, root)
        if latest is None:
            continue  # the series ended (an occurrence failed or was cancelled)
        rule = rule_of(root)
        tz = recurrence.zone(root.timezone)
        first = recurrence.to_local(root.publish_time, tz)
        after = max(latest, start - timedelta(seconds=1))
        until = end - timedelta(seconds=1)
        times = recurrence.occurrences(first, tz, rule, after=after, until=until, limit=PER_RULE)
        capped = capped or len(times) == PER_RULE
        found.extend(_entry(root, at, projected=True) for at in times)
    return found, capped


async def _latest_occurrence(db: AsyncSession, root: ScheduledContent) -> datetime | None:
    """The publish time of the series' newest row, or None when that row ended the series."""
    latest = await db.scalar(
        sa.select(ScheduledContent)
        .where(sa.or_(ScheduledContent.id == root.id, ScheduledContent.parent_event_id == root.id))
        .order_by(ScheduledContent.publish_time.desc(), ScheduledContent.id.desc())
        .limit(1)
    )
    if latest is None or latest.status in ("failed", "cancelled"):
        return None
    return latest.publish_time


def _query_error(field: str, message: str) -> Unprocessable:
    loc = ["query", field]
    return Unprocessable(
        message, code="invalid_window", errors=[{"loc": loc, "message": message, "type": "invalid"}]
    )


def preview(data: PreviewRequest) -> PreviewOut:
    """The next `count` occurrences of a proposed schedule, in UTC and in its zone (its own
    publish time first). Past times are allowed: a preview stores nothing."""
    tz = zone_of(data.timezone)
    publish = instant(data.publish_at, tz)
    rule = rule_from(data.recurrence)
    check_rule(publish, tz, rule)
    first = recurrence.to_local(publish, tz)
    times = recurrence.occurrences(
        first, tz, rule, after=publish - timedelta(seconds=1), limit=data.count
    )
    if not times:
        raise refuse("publish_at", "the schedule never occurs", "never_occurs")
    return PreviewOut(
        timezone=data.timezone,
        occurrences=[Occurrence(at=at, local=recurrence.to_local(at, tz)) for at in times],
    )
