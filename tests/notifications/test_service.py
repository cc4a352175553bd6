"""`notify`: per-frequency routing, channels, mail jobs, staging and what is pushed after commit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from handlers import keys
from realtime_cms.db import transaction
from realtime_cms.errors import Forbidden, Unprocessable
from realtime_cms.mail import LogMailSender
from realtime_cms.models.auth import User
from realtime_cms.models.notifications import (
    NotificationDigestItem,
    NotificationTemplate,
    UserNotificationPreference,
)
from realtime_cms.models.workers import WorkerJob
from realtime_cms.notifications.producers import PRODUCER
from realtime_cms.notifications.service import (
    notify,
    push_after_commit,
    take_staged,
    window_end,
)
from realtime_cms.principal import Principal
from tests.notifications.support import FakeHub, count, new_user, notifications_of, send, unique
from tests.support.harness import Harness
from tests.support.jobs import settle_jobs


async def _prefer(harness: Harness, user_id: int, channels: list[str], frequency: str) -> None:
    async with transaction(harness.app[keys.SESSIONS]) as db:
        db.add(UserNotificationPreference(user_id=user_id, channels=channels, frequency=frequency))


def _queued(user_id: int) -> sa.Select[Any]:
    return sa.select(NotificationDigestItem).where(NotificationDigestItem.user_id == user_id)


async def test_immediate_in_app_is_stored_and_returned_for_a_push(harness: Harness) -> None:
    user_id, _ = await new_user(harness, "viewer")
    result = await send(harness, [user_id], title="Deploy done", type="deploy")
    [row] = await notifications_of(harness, user_id)
    [(pushed_to, data)] = result.deliveries
    assert pushed_to == user_id and data["id"] == row.id and data["title"] == "Deploy done"
    assert data["type"] == "deploy" and data["is_read"] is False and data["category"] is None
    assert result.counts == {user_id: {"total": 1, "by_category": {"none": 1}}}
    hub = FakeHub()
    await push_after_commit(hub, result)
    assert [event for event, _, _ in hub.events] == ["notification", "unread"]


async def _email_of(harness: Harness, user_id: int) -> str:
    return str(await harness.scalar(sa.select(User.email).where(User.id == user_id)))


async def _mail_jobs(harness: Harness, to: str) -> list[dict[str, Any]]:
    async with transaction(harness.app[keys.SESSIONS]) as db:
        payloads = await db.scalars(
            sa.select(WorkerJob.payload)
            .where(WorkerJob.type == "mail.send")
            .order_by(WorkerJob.created_at)
        )
        return [payload for payload in payloads if payload["to"] == to]


async def test_immediate_email_is_a_mail_job_committed_with_the_notify(harness: Harness) -> None:
    user_id, _ = await new_user(harness, "viewer")
    await _prefer(harness, user_id, ["email"], "immediate")
    result = await send(harness, [user_id], title="Mail me", message="body text")
    assert await notifications_of(harness, user_id) == [] and result.emails == 1
    address = await _email_of(harness, user_id)
    assert await _mail_jobs(harness, address) == [
        {"to": address, "subject": "Mail me", "body": "body text"}
    ]
    await settle_jobs(harness.app[keys.SESSIONS], ["mail.send"])
    mailer = harness.app[keys.MAILER]
    assert isinstance(mailer, LogMailSender)
    [sent] = [m for m in mailer.outbox if m.to == address]
    assert (sent.subject, sent.body) == ("Mail me", "body text") and sent.message_id


async def test_a_rolled_back_notify_queues_no_mail(harness: Harness) -> None:
    user_id, _ = await new_user(harness, "viewer")
    await _prefer(harness, user_id, ["email"], "immediate")
    with pytest.raises(RuntimeError):
        async with transaction(harness.app[keys.SESSIONS]) as db:
            result = await notify(db, PRODUCER, users=[user_id], title="Never", message="m")
            assert result.emails == 1
            raise RuntimeError("the change fails after notifying")
    assert await _mail_jobs(harness, await _email_of(harness, user_id)) == []


@pytest.mark.parametrize("frequency", ["hourly", "daily"])
async def test_hourly_and_daily_are_held_for_a_digest(harness: Harness, frequency: str) -> None:
    user_id, _ = await new_user(harness, "viewer")
    await _prefer(harness, user_id, ["in_app", "email"], frequency)
    now = datetime(2026, 3, 4, 10, 30, 5, tzinfo=UTC)
    result = await send(harness, [user_id], now=now)
    assert result.deliveries == [] and result.emails == 0 and result.queued == 2
    assert await count(harness, _queued(user_id)) == 2
    assert await notifications_of(harness, user_id) == []


def test_windows_end_at_the_next_hour_or_utc_midnight() -> None:
    now = datetime(2026, 3, 4, 10, 30, 5, tzinfo=UTC)
    assert window_end("hourly", now) == datetime(2026, 3, 4, 11, tzinfo=UTC)
    assert window_end("daily", now) == datetime(2026, 3, 5, tzinfo=UTC)


async def test_off_sends_nothing_on_any_channel(harness: Harness) -> None:
    user_id, _ = await new_user(harness, "viewer")
    await _prefer(harness, user_id, ["in_app", "email"], "off")
    result = await send(harness, [user_id])
    assert result.deliveries == [] and result.emails == 0 and result.queued == 0
    assert await count(harness, _queued(user_id)) == 0


async def test_a_templates_channels_limit_the_users_channels(harness: Harness) -> None:
    user_id, _ = await new_user(harness, "viewer")
    await _prefer(harness, user_id, ["in_app", "email"], "immediate")
    async with transaction(harness.app[keys.SESSIONS]) as db:
        template = NotificationTemplate(
            name=unique("mail-only"),
            type="report",
            subject_template="Report",
            body_template="for {{ recipient.username }}",
            variables=[],
            channels=["email"],
        )
        db.add(template)
    result = await send(harness, [user_id], template=template.name, title=None, message=None)
    assert result.deliveries == [] and result.emails == 1


async def test_unknown_recipients_are_named(harness: Harness) -> None:
    with pytest.raises(Unprocessable) as raised:
        await send(harness, [2_000_000_000])
    assert raised.value.code == "unknown_recipients" and "2000000000" in raised.value.message


async def test_a_title_and_message_or_a_template_is_needed(harness: Harness) -> None:
    user_id, _ = await new_user(harness, "viewer")
    with pytest.raises(Unprocessable) as raised:
        await send(harness, [user_id], title=None)
    assert raised.value.code == "notification_text_required"


async def test_notifying_needs_the_send_permission(harness: Harness) -> None:
    user_id, _ = await new_user(harness, "viewer")
    nobody = Principal(user_id=user_id, username="x")
    async with transaction(harness.app[keys.SESSIONS]) as db:
        with pytest.raises(Forbidden):
            await notify(db, nobody, users=[user_id], title="t", message="m")


async def test_notify_stages_its_result_on_the_session_once(harness: Harness) -> None:
    user_id, _ = await new_user(harness, "viewer")
    principal = Principal(
        user_id=None, username="system", permissions=frozenset({"notifications.send"})
    )
    async with transaction(harness.app[keys.SESSIONS]) as db:
        await notify(db, principal, users=[user_id], title="one", message="m")
        await notify(db, principal, users=[user_id], title="two", message="m")
        staged = take_staged(db)
        assert take_staged(db).deliveries == []
    assert [data["title"] for _, data in staged.deliveries] == ["one", "two"]
    assert staged.counts[user_id]["total"] == 2
