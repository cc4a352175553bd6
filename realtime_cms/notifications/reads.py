"""Reading one's notifications: JSON, catch-up, views, read receipts and unread counts.

Each function changes only the caller's own notifications and flushes; after the commit the
edge tells the user's other tabs with `push_read` (events `read` and `unread`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.errors import NotFound
from realtime_cms.models.base import utcnow
from realtime_cms.models.notifications import Notification, NotificationCategory, ReadReceipt
from realtime_cms.notifications.owner import require_user
from realtime_cms.notifications.schemas import NotificationOut
from realtime_cms.principal import Principal

UNREAD = Notification.is_read.is_not(True)
MAX_SINCE = 500


class LiveHub(Protocol):
    """What the live fan-out offers (`realtime_cms.notifications.hub.NotificationHub`)."""

    async def deliver(self, user_id: int, notification: dict[str, Any]) -> None: ...

    async def counts(self, user_id: int, unread: dict[str, Any]) -> None: ...

    async def read(self, user_id: int, ids: list[int] | None) -> None: ...


async def as_json(db: AsyncSession, rows: Sequence[Notification]) -> list[dict[str, Any]]:
    """Notifications as REST and the socket namespace show them, with their category."""
    wanted = {row.category_id for row in rows if row.category_id is not None}
    categories: dict[int, dict[str, Any]] = {}
    if wanted:
        found = await db.execute(
            sa.select(
                NotificationCategory.id, NotificationCategory.name, NotificationCategory.color_code
            ).where(NotificationCategory.id.in_(wanted))
        )
        categories = {row.id: dict(row._mapping) for row in found}
    return [
        NotificationOut(
            id=row.id,
            user_id=row.user_id,
            category_id=row.category_id,
            title=row.title,
            message=row.message,
            type=row.type,
            is_read=bool(row.is_read),
            view_count=row.view_count or 0,
            created_at=row.created_at,
            last_viewed_at=row.last_viewed_at,
            category=categories.get(row.category_id) if row.category_id else None,
        ).model_dump(mode="json")
        for row in rows
    ]


async def counts_of(db: AsyncSession, user_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Unread counts per user: `{"total": n, "by_category": {"<id>|none": n}}`."""
    result: dict[int, dict[str, Any]] = {
        uid: {"total": 0, "by_category": {}} for uid in set(user_ids)
    }
    if not result:
        return result
    rows = await db.execute(
        sa.select(Notification.user_id, Notification.category_id, sa.func.count())
        .where(Notification.user_id.in_(result), UNREAD)
        .group_by(Notification.user_id, Notification.category_id)
    )
    for user_id, category_id, count in rows:
        entry = result[user_id]
        key = "none" if category_id is None else str(category_id)
        entry["by_category"][key] = int(count)
        entry["total"] += int(count)
    return result


async def unread_counts(db: AsyncSession, principal: Principal) -> dict[str, Any]:
    """The caller's unread counts, in total and per category."""
    user_id = require_user(principal)
    return (await counts_of(db, [user_id]))[user_id]


async def list_since(
    db: AsyncSession, principal: Principal, *, after_id: int, limit: int
) -> list[dict[str, Any]]:
    """The caller's notifications with ids above `after_id`, oldest first (catch-up)."""
    user_id = require_user(principal)
    rows = await db.scalars(
        sa.select(Notification)
        .where(Notification.user_id == user_id, Notification.id > after_id)
        .order_by(Notification.id)
        .limit(max(1, min(limit, MAX_SINCE)))
    )
    return await as_json(db, list(rows))


async def view(
    db: AsyncSession, principal: Principal, notification_id: int, now: datetime | None = None
) -> dict[str, Any]:
    """One of the caller's notifications; counts the view (`view_count`, `last_viewed_at`)."""
    user_id = require_user(principal)
    counted = await db.execute(
        sa.update(Notification)
        .where(Notification.id == notification_id, Notification.user_id == user_id)
        .values(view_count=Notification.view_count + 1, last_viewed_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    if getattr(counted, "rowcount", 0) != 1:
        raise NotFound("No such notification", code="notification_not_found")
    row = await db.scalar(
        sa.select(Notification)
        .where(Notification.id == notification_id)
        .execution_options(populate_existing=True)
    )
    assert row is not None
    return (await as_json(db, [row]))[0]


async def _mark(db: AsyncSession, user_id: int, ids: Sequence[int], now: datetime) -> list[int]:
    """Set `is_read` on those of `ids` still unread and write their receipts; their ids."""
    if not ids:
        return []
    await db.execute(
        sa.update(Notification)
        .where(Notification.id.in_(ids), UNREAD)
        .values(is_read=True, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    db.add_all(ReadReceipt(notification_id=nid, user_id=user_id, read_at=now) for nid in ids)
    await db.flush()
    return sorted(ids)


async def _unread_ids(db: AsyncSession, user_id: int, ids: Sequence[int] | None) -> list[int]:
    # Locked on MariaDB, so two tabs marking the same ids write one receipt each, not two.
    stmt = sa.select(Notification.id).where(Notification.user_id == user_id, UNREAD)
    if ids is not None:
        stmt = stmt.where(Notification.id.in_(sorted(set(ids))))
    return list(await db.scalars(stmt.order_by(Notification.id).with_for_update()))


async def mark_read(
    db: AsyncSession, principal: Principal, *, ids: Sequence[int], now: datetime | None = None
) -> list[int]:
    """Mark the caller's notifications `ids` read; the ids that were unread until now.

    Ids that are not the caller's, or already read, are left alone.
    """
    user_id = require_user(principal)
    return await _mark(db, user_id, await _unread_ids(db, user_id, ids), now or utcnow())


async def mark_all_read(db: AsyncSession, principal: Principal, now: datetime | None = None) -> int:
    """Mark every unread notification of the caller read; how many there were."""
    user_id = require_user(principal)
    return len(await _mark(db, user_id, await _unread_ids(db, user_id, None), now or utcnow()))


async def push_read(
    hub: LiveHub, user_id: int, ids: list[int] | None, unread: dict[str, Any]
) -> None:
    """After commit: tell the user's connections what was read (None: all) and the counts."""
    if ids is None or ids:
        await hub.read(user_id, ids)
    await hub.counts(user_id, unread)
