"""Digests: held hourly/daily notifications delivered as one summary per channel, exactly once.

The periodic job `notifications.digests` finds the users with due digest items (`due_at`
passed, no batch yet: `due_groups`) and enqueues one `notifications.digest` job per user and
frequency (realtime_cms/notifications/jobs.py). That job's transaction `claim`s the group: it
inserts a `notification_batches` row and moves the items into it with a conditional UPDATE
(`batch_id IS NULL`). Another run doing the same at once waits on the same rows and then
matches none, so it drops its empty batch and delivers nothing. The claiming run builds one
digest per channel in the same transaction: an in-app summary notification (pushed live
after the commit) and a `mail.send` job.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.jobs.queue import enqueue
from realtime_cms.mail import SEND, MailPayload
from realtime_cms.models.auth import User
from realtime_cms.models.notifications import Notification, NotificationDigestItem
from realtime_cms.models.workers import NotificationBatch
from realtime_cms.notifications.reads import as_json, counts_of
from realtime_cms.notifications.service import NotifyResult, stage
from realtime_cms.notifications.templates import SUBJECT_MAX

# Groups handled per run; the rest wait for the next run.
MAX_GROUPS = 500
# Items listed in full in a digest; the rest are counted.
LISTED = 50
_MESSAGE_PREVIEW = 500


@dataclass(frozen=True, slots=True)
class Group:
    user_id: int
    frequency: str


async def due_groups(db: AsyncSession, now: datetime) -> list[Group]:
    """The (user, frequency) pairs with due, unclaimed digest items."""
    rows = await db.execute(
        sa.select(NotificationDigestItem.user_id, NotificationDigestItem.frequency)
        .where(NotificationDigestItem.batch_id.is_(None), NotificationDigestItem.due_at <= now)
        .distinct()
        .order_by(NotificationDigestItem.user_id, NotificationDigestItem.frequency)
        .limit(MAX_GROUPS)
    )
    return [Group(user_id, frequency) for user_id, frequency in rows]


def _lines(items: Sequence[NotificationDigestItem]) -> str:
    lines = []
    for item in items[:LISTED]:
        preview = " ".join(item.message.split())[:_MESSAGE_PREVIEW]
        lines.append(f"- {item.title}: {preview}" if preview else f"- {item.title}")
    if len(items) > LISTED:
        lines.append(f"... and {len(items) - LISTED} more")
    return "\n".join(lines)


def _title(frequency: str, count: int) -> str:
    noun = "notification" if count == 1 else "notifications"
    return f"Your {frequency} digest: {count} {noun}"[:SUBJECT_MAX]


async def _in_app(
    db: AsyncSession, group: Group, items: Sequence[NotificationDigestItem], now: datetime
) -> NotifyResult:
    categories = {item.category_id for item in items}
    row = Notification(
        user_id=group.user_id,
        category_id=categories.pop() if len(categories) == 1 else None,
        title=_title(group.frequency, len(items)),
        message=_lines(items),
        type="digest",
        is_read=False,
        view_count=0,
        created_at=now,
    )
    db.add(row)
    await db.flush()
    data = (await as_json(db, [row]))[0]
    counts = await counts_of(db, [group.user_id])
    return NotifyResult(deliveries=[(group.user_id, data)], counts=counts)


async def _email(
    db: AsyncSession, group: Group, items: Sequence[NotificationDigestItem]
) -> NotifyResult:
    user = await db.get(User, group.user_id)
    if user is None or not user.is_active:
        return NotifyResult()
    body = "\n\n".join(f"{item.title}\n{item.message}" for item in items[:LISTED])
    if len(items) > LISTED:
        body += f"\n\n... and {len(items) - LISTED} more"
    subject = _title(group.frequency, len(items))
    await enqueue(db, SEND, MailPayload(to=user.email, subject=subject, body=body))
    return NotifyResult(emails=1)


async def claim(db: AsyncSession, group: Group, now: datetime) -> NotifyResult | None:
    """Claim the group's due items into a new batch and build its digests (see the module):
    staged on `db` for the push, and returned; None (and no batch) when another run got them
    first."""
    batch_id = str(uuid.uuid4())
    # The batch row first: on SQLite this write takes the lock before anything is read.
    batch = NotificationBatch(
        batch_id=batch_id, status="processing", started_at=now, created_at=now
    )
    db.add(batch)
    await db.flush()
    item = NotificationDigestItem
    claimed = await db.execute(
        sa.update(item)
        .where(
            item.user_id == group.user_id,
            item.frequency == group.frequency,
            item.batch_id.is_(None),
            item.due_at <= now,
        )
        .values(batch_id=batch_id)
        .execution_options(synchronize_session=False)
    )
    if not getattr(claimed, "rowcount", 0):
        await db.delete(batch)
        await db.flush()
        return None
    items = list(
        await db.scalars(sa.select(item).where(item.batch_id == batch_id).order_by(item.id))
    )
    result = NotifyResult(recipients=1)
    for channel in ("in_app", "email"):
        chosen = [row for row in items if row.channel == channel]
        if chosen:
            built = await (
                _in_app(db, group, chosen, now)
                if channel == "in_app"
                else _email(db, group, chosen)
            )
            result.merge(built)
    batch.notification_count = len(items)
    batch.status = "completed"
    batch.completed_at = now
    await db.flush()
    stage(db, result)
    return result
