"""Digests: held hourly/daily notifications delivered as one summary per channel, exactly once.

Every server process runs a `DigestRunner`. Each round (every
`RCMS_NOTIFICATION_DIGEST_INTERVAL_SECONDS`, by an injectable clock) it finds users with due
digest items (`due_at` passed, no batch yet) and, per user and frequency, claims them in one
transaction: it inserts a `notification_batches` row and moves the items into it with a
conditional UPDATE (`batch_id IS NULL`). A second process doing the same waits on the same
rows and then matches none, so it rolls back and delivers nothing. The committing process
then delivers one digest per channel: an in-app summary notification (stored in the same
transaction, pushed live after the commit) and one mail.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.background import PeriodicTask
from realtime_cms.db import SessionFactory, transaction
from realtime_cms.mail import Message
from realtime_cms.models.auth import User
from realtime_cms.models.base import utcnow
from realtime_cms.models.notifications import Notification, NotificationDigestItem
from realtime_cms.models.workers import NotificationBatch
from realtime_cms.notifications.reads import as_json, counts_of
from realtime_cms.notifications.service import Dispatcher, NotifyResult
from realtime_cms.notifications.templates import SUBJECT_MAX

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# Groups handled per round; the rest wait for the next round.
MAX_GROUPS = 500
# Items listed in full in a digest; the rest are counted.
LISTED = 50
_MESSAGE_PREVIEW = 500


@dataclass(frozen=True, slots=True)
class Group:
    user_id: int
    frequency: str


class _NothingToClaim(Exception):
    """Another process claimed the group first: roll back the empty batch."""


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
    return NotifyResult(emails=[Message(to=user.email, subject=subject, body=body)])


@dataclass(frozen=True, slots=True)
class Claimed:
    batch_id: str
    result: NotifyResult


async def claim(db: AsyncSession, group: Group, now: datetime) -> Claimed:
    """Claim the group's due items into a new batch and build its digests (see the module).

    Raises `_NothingToClaim` (the caller rolls back) when another process got them first.
    """
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
        raise _NothingToClaim
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
    batch.status = "processing" if result.emails else "completed"
    batch.completed_at = None if result.emails else now
    await db.flush()
    return Claimed(batch_id, result)


async def _finish(sessions: SessionFactory, batch_id: str, status: str, now: datetime) -> None:
    async with transaction(sessions) as db:
        await db.execute(
            sa.update(NotificationBatch)
            .where(NotificationBatch.batch_id == batch_id)
            .values(status=status, completed_at=now)
        )


class DigestRunner(PeriodicTask):
    """Delivers due digests every `interval_seconds`; use as `async with` (starts once)."""

    name = "notification-digests"

    def __init__(
        self,
        sessions: SessionFactory,
        dispatcher: Dispatcher,
        *,
        interval_seconds: float = 60.0,
        clock: Clock = utcnow,
    ) -> None:
        super().__init__(interval_seconds=interval_seconds)
        self._sessions = sessions
        self._dispatcher = dispatcher
        self._clock = clock

    async def run_once(self) -> None:
        await self.deliver_due()

    async def deliver_due(self, now: datetime | None = None) -> int:
        """Deliver every digest due at `now` (default: the clock); how many batches it made."""
        now = (now or self._clock()).replace(microsecond=0)
        async with transaction(self._sessions) as db:
            groups = await due_groups(db, now)
        made = 0
        for group in groups:
            made += await self._deliver(group, now)
        return made

    async def _deliver(self, group: Group, now: datetime) -> int:
        try:
            async with transaction(self._sessions) as db:
                claimed = await claim(db, group, now)
        except _NothingToClaim:
            return 0
        except DBAPIError:
            # A deadlock or lock timeout with another process claiming: it has the items.
            log.info("digest claim for user %s lost a race; skipping", group.user_id, exc_info=True)
            return 0
        failed = await self._dispatcher.deliver(claimed.result)
        if claimed.result.emails:
            status = "failed" if failed else "completed"
            await _finish(self._sessions, claimed.batch_id, status, self._clock())
        return 1
