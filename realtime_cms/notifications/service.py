"""`notify`: the one way any part of the server notifies users.

For each recipient it resolves the preference for the category, renders the template (all
recipients first: one failure stores nothing), then per channel: `immediate` in-app
notifications are stored and returned for a live push, `immediate` mail becomes a
`mail.send` job, `hourly`/`daily` ones are held as digest items (`digests.py`), `off` drops
the channel.

Everything is written in the caller's transaction: the mail jobs exist iff the notification
commits, and the job system retries them until the mail server takes them. Only the live
push waits for the commit: `notify` returns a `NotifyResult` and emits it as a
`NotificationsCreated` event, which the process' `LivePushes` (`notifications.subscribers`)
pushes once the transaction commits (and forgets on rollback). A caller that pushes itself
takes the event back first (`take_staged`; `schedule_push` arranges the push).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.errors import Unprocessable
from realtime_cms.events import Event, emit, withdraw
from realtime_cms.jobs.queue import enqueue
from realtime_cms.mail import SEND, MailPayload
from realtime_cms.models.auth import User
from realtime_cms.models.base import utcnow
from realtime_cms.models.notifications import (
    Notification,
    NotificationCategory,
    NotificationDigestItem,
    NotificationTemplate,
)
from realtime_cms.notifications import preferences, templates
from realtime_cms.notifications.categories import require_category
from realtime_cms.notifications.reads import LiveHub, as_json, counts_of
from realtime_cms.notifications.schemas import CHANNELS, MAX_MESSAGE
from realtime_cms.principal import Principal
from realtime_cms.rbac.authorize import authorize


@dataclass(slots=True)
class NotifyResult:
    """What a notifying transaction did, and what to push once it has committed."""

    # (user id, notification JSON) for every immediate in-app notification stored.
    deliveries: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    # `mail.send` jobs enqueued (one per mail), committed with the notifications.
    emails: int = 0
    # Unread counts of the users in `deliveries`, as of the notifying transaction.
    counts: dict[int, dict[str, Any]] = field(default_factory=dict)
    recipients: int = 0
    queued: int = 0

    def merge(self, other: NotifyResult) -> None:
        self.deliveries.extend(other.deliveries)
        self.emails += other.emails
        self.counts.update(other.counts)
        self.recipients += other.recipients
        self.queued += other.queued


@dataclass(frozen=True, slots=True)
class NotificationsCreated(Event):
    """Notifications were stored (and mail queued): `result` says what to push once committed."""

    result: NotifyResult


def stage(db: AsyncSession, result: NotifyResult) -> None:
    """Have `result` pushed live once `db`'s transaction commits."""
    emit(db, NotificationsCreated(result))


def take_staged(db: AsyncSession) -> NotifyResult:
    """Everything staged in this transaction since the last take, which the caller now pushes
    itself (it is no longer pushed on commit)."""
    taken = NotifyResult()
    for created in withdraw(db, NotificationsCreated):
        taken.merge(created.result)
    return taken


def window_end(frequency: str, now: datetime) -> datetime:
    """When the digest window holding `now` closes: the next full hour, or next UTC midnight."""
    if frequency == "hourly":
        return now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)


@dataclass(frozen=True, slots=True)
class _Text:
    title: str
    message: str
    subject: str


async def _recipients(db: AsyncSession, users: Sequence[int]) -> list[User]:
    wanted = sorted(set(users))
    if not wanted:
        return []
    found = {user.id: user for user in await db.scalars(sa.select(User).where(User.id.in_(wanted)))}
    unknown = [uid for uid in wanted if uid not in found]
    if unknown:
        raise Unprocessable(
            f"No such users: {', '.join(map(str, unknown))}", code="unknown_recipients"
        )
    return [found[uid] for uid in wanted if found[uid].is_active]


async def _texts(
    template: NotificationTemplate | None,
    title: str | None,
    message: str | None,
    context: Mapping[str, Any],
    users: Sequence[User],
) -> dict[int, _Text]:
    """Every recipient's text, rendered (off the event loop) before anything is stored."""
    if template is None:
        assert title is not None and message is not None
        text = _Text(title[: templates.SUBJECT_MAX], message[:MAX_MESSAGE], title)
        return {user.id: text for user in users}
    recipients = [
        {
            "id": user.id,
            "username": user.username,
            "first_name": user.first_name,
            "last_name": user.last_name,
        }
        for user in users
    ]
    rendered = await templates.render_all(template, context, recipients)
    return {
        user.id: _Text(subject, body, subject)
        for user, (subject, body) in zip(users, rendered, strict=True)
    }


async def _source(
    db: AsyncSession,
    template: str | int | None,
    title: str | None,
    message: str | None,
    context: Mapping[str, Any],
) -> NotificationTemplate | None:
    if template is not None:
        found = await templates.find_template(db, template)
        templates.check_context(found, context)
        return found
    if not title or message is None:
        raise Unprocessable(
            "Give a template, or a title and a message", code="notification_text_required"
        )
    if context:
        raise Unprocessable("A context needs a template to fill", code="template_extra_variables")
    return None


async def notify(
    db: AsyncSession,
    principal: Principal,
    *,
    users: Sequence[int],
    template: str | int | None = None,
    title: str | None = None,
    message: str | None = None,
    context: Mapping[str, Any] | None = None,
    category_id: int | None = None,
    type: str = "info",
    now: datetime | None = None,
) -> NotifyResult:
    """Notify `users` (see the module); flushed, staged for the push on commit, and returned."""
    authorize(principal, "notifications.send")
    # Whole seconds: what MariaDB keeps, so the live push and later reads agree.
    now = (now or utcnow()).replace(microsecond=0)
    context = dict(context or {})
    source = await _source(db, template, title, message, context)
    category = await require_category(db, category_id) if category_id is not None else None
    recipients = await _recipients(db, users)
    texts = await _texts(source, title, message, context, recipients)
    chosen = await preferences.resolve(db, [user.id for user in recipients], category, now)
    allowed = set(source.channels or []) if source is not None else set(CHANNELS)
    kind = source.type if source is not None and type == "info" else type
    result = NotifyResult(recipients=len(recipients))
    stored: list[Notification] = []
    for user in recipients:
        preference = chosen[user.id]
        if preference.muted:
            continue
        text = texts[user.id]
        for channel in (c for c in preference.channels if c in allowed):
            if preference.frequency != "immediate":
                db.add(
                    _digest_item(user.id, category, channel, preference.frequency, text, kind, now)
                )
                result.queued += 1
            elif channel == "in_app":
                row = Notification(
                    user_id=user.id,
                    category_id=category.id if category else None,
                    title=text.title,
                    message=text.message,
                    type=kind,
                    is_read=False,
                    view_count=0,
                    created_at=now,
                )
                db.add(row)
                stored.append(row)
            else:
                mail = MailPayload(to=user.email, subject=text.subject, body=text.message)
                await enqueue(db, SEND, mail)
                result.emails += 1
    await db.flush()
    for row, data in zip(stored, await as_json(db, stored), strict=True):
        result.deliveries.append((row.user_id, data))
    result.counts = await counts_of(db, [row.user_id for row in stored])
    stage(db, result)
    return result


def _digest_item(
    user_id: int,
    category: NotificationCategory | None,
    channel: str,
    frequency: str,
    text: _Text,
    kind: str,
    now: datetime,
) -> NotificationDigestItem:
    return NotificationDigestItem(
        user_id=user_id,
        category_id=category.id if category else None,
        channel=channel,
        frequency=frequency,
        due_at=window_end(frequency, now),
        title=text.title,
        message=text.message,
        type=kind,
        created_at=now,
    )


async def user_ids_for(
    db: AsyncSession, user_ids: Sequence[int], usernames: Sequence[str]
) -> list[int]:
    """Recipients given by id and/or username; Unprocessable naming unknown usernames."""
    ids = set(user_ids)
    if usernames:
        rows = await db.execute(
            sa.select(User.username, User.id).where(User.username.in_(set(usernames)))
        )
        found = {name: uid for name, uid in rows}
        unknown = sorted(set(usernames) - set(found))
        if unknown:
            raise Unprocessable(f"No such users: {', '.join(unknown)}", code="unknown_recipients")
        ids.update(found.values())
    if not ids:
        raise Unprocessable("Name at least one recipient", code="no_recipients")
    return sorted(ids)


async def push_after_commit(hub: LiveHub, result: NotifyResult) -> None:
    """Push every delivered notification, then each recipient's unread counts."""
    for user_id, data in result.deliveries:
        await hub.deliver(user_id, data)
    for user_id, unread in result.counts.items():
        await hub.counts(user_id, unread)


class Dispatcher:
    """Pushes committed notifications live through the hub (their mail is already queued)."""

    def __init__(self, hub: LiveHub | None) -> None:
        self.hub = hub

    async def deliver(self, result: NotifyResult) -> None:
        """Push `result`'s notifications and unread counts (nothing without a hub)."""
        if self.hub is not None:
            await push_after_commit(self.hub, result)


def schedule_push(
    db: AsyncSession, dispatcher: Dispatcher, after_commit: list[Callable[[], Awaitable[None]]]
) -> None:
    """Add to `after_commit` (run once `db` commits) the push of what `notify` staged on it."""
    staged = take_staged(db)
    if staged.deliveries or staged.counts:
        after_commit.append(partial(dispatcher.deliver, staged))
