"""How notifications follow other domains' events: rows in their transaction, pushes after it.

The in-transaction subscribers (wired in `realtime_cms.subscriptions`) turn a content status
change, a mention and a document grant into notifications with the producers, so a
notification exists iff the change commits. `LivePushes` subscribes to the process' event
bus and pushes every committed `NotificationsCreated` live, whoever notified.
"""

from __future__ import annotations

import asyncio
import logging

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.background import EventTask
from realtime_cms.content.events import ContentStatusChanged, Mentioned
from realtime_cms.documents.events import DocumentGranted
from realtime_cms.events import EventBus
from realtime_cms.models.content import ContentItem
from realtime_cms.notifications import producers
from realtime_cms.notifications.service import Dispatcher, NotificationsCreated, NotifyResult
from realtime_cms.scheduling.events import ScheduleChanged

logger = logging.getLogger(__name__)


async def status_changed(db: AsyncSession, event: ContentStatusChanged) -> None:
    """The item's author hears of it (unless they made the change)."""
    await producers.status_changed(
        db,
        event.actor,
        author_id=event.author_id,
        title=event.title,
        old=event.old,
        new=event.new,
    )


async def mentioned(db: AsyncSession, event: Mentioned) -> None:
    """The mentioned users who can read the item hear of it (not its editors)."""
    await producers.mentioned(
        db,
        item_id=event.item_id,
        title=event.title,
        usernames=event.usernames,
        authors=event.editors,
    )


async def document_granted(db: AsyncSession, event: DocumentGranted) -> None:
    """The grantee hears of it (unless they granted it themselves)."""
    await producers.document_granted(
        db, event.actor, document_id=event.document_id, user_id=event.user_id, level=event.level
    )


async def schedule_changed(db: AsyncSession, event: ScheduleChanged) -> None:
    """A schedule that failed is its owner's to hear of (else its item's author's)."""
    if event.new != "failed":
        return
    owner = event.created_by
    if owner is None:
        owner = await db.scalar(
            sa.select(ContentItem.author_id).where(ContentItem.id == event.item_id)
        )
    await producers.schedule_failed(
        db, owner_id=owner, item_id=event.item_id, title=event.title, error=event.error
    )


class LivePushes(EventTask[NotificationsCreated]):
    """Pushes committed notifications live, in commit order, from one task of its own (a bus
    subscriber must not block the commit). Use as `async with`; starts once. Pushes still
    queued when it stops are dropped: clients catch up from the database."""

    name = "notification-pushes"

    def __init__(self, bus: EventBus, dispatcher: Dispatcher) -> None:
        super().__init__(bus, NotificationsCreated)
        self._dispatcher = dispatcher
        self._queue: asyncio.Queue[NotifyResult] = asyncio.Queue()

    def _changed(self, event: NotificationsCreated) -> None:
        if event.result.deliveries or event.result.counts:
            self._queue.put_nowait(event.result)

    async def _run(self) -> None:
        while True:
            result = await self._queue.get()
            try:
                await self._dispatcher.deliver(result)
            except Exception:
                logger.exception("pushing %s notifications failed", len(result.deliveries))
