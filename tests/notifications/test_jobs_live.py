"""The notification jobs end to end, run by the server's embedded worker: a due digest goes
out by itself (schedule, digest job, mail job), and a worker notification reaches the staff
in the app and by mail and is listed processed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import sqlalchemy as sa

from handlers import keys
from realtime_cms.db import transaction
from realtime_cms.mail import LogMailSender, Message
from realtime_cms.models.auth import User
from realtime_cms.models.base import utcnow
from realtime_cms.models.notifications import UserNotificationPreference
from realtime_cms.models.workers import Worker
from realtime_cms.notifications import workers
from realtime_cms.principal import system
from tests.notifications.support import body, new_user, notifications_of, send, unique
from tests.support.harness import Harness, make_settings, start_harness
from tests.support.jobs import settle_jobs

ADMIN = system(frozenset({"workers.manage"}))


@pytest.fixture(scope="module")
async def harness(database_url: str, redis_url: str | None) -> AsyncIterator[Harness]:
    """The shared server's shape, with a digest scan every second."""
    settings = make_settings(database_url, redis_url, notification_digest_interval_seconds=1)
    h = await start_harness(settings)
    try:
        yield h
    finally:
        await h.client.close()


async def _prefer(harness: Harness, user_id: int, channels: list[str], frequency: str) -> None:
    async with transaction(harness.app[keys.SESSIONS]) as db:
        db.add(UserNotificationPreference(user_id=user_id, channels=channels, frequency=frequency))


async def _mail_to(harness: Harness, user_id: int) -> list[Message]:
    address = await harness.scalar(sa.select(User.email).where(User.id == user_id))
    mailer = harness.app[keys.MAILER]
    assert isinstance(mailer, LogMailSender)
    return [message for message in mailer.outbox if message.to == address]


async def test_a_due_digest_is_delivered_by_the_schedule(harness: Harness) -> None:
    user_id, _ = await new_user(harness, "viewer")
    await _prefer(harness, user_id, ["in_app", "email"], "daily")
    await send(harness, [user_id], title="Yesterday's news", now=utcnow() - timedelta(days=1))
    # The next scan (each second) finds it.
    async with asyncio.timeout(30):
        while True:
            digests = await notifications_of(harness, user_id, type="digest")
            if digests:
                break
            await asyncio.sleep(0.1)
    [digest] = digests
    assert digest.title == "Your daily digest: 1 notification"
    await settle_jobs(harness.app[keys.SESSIONS], ["notifications.digest", "mail.send"])
    [mail] = await _mail_to(harness, user_id)
    assert mail.subject == digest.title and "Yesterday's news" in mail.body


async def test_a_worker_notification_reaches_the_staff_and_is_listed_processed(
    harness: Harness,
) -> None:
    sessions = harness.app[keys.SESSIONS]
    worker_id = unique("worker")
    async with transaction(sessions) as db:
        db.add(Worker(worker_id=worker_id, type="human", hostname="desk", pid=None))
    staff_id, staff_token = await new_user(harness, "admin")
    await _prefer(harness, staff_id, ["in_app", "email"], "immediate")
    async with transaction(sessions) as db:
        created = await workers.create(
            db, ADMIN, worker_id=worker_id, message="disk full", type="alert", priority=1
        )
    await settle_jobs(sessions, ["notifications.worker_batch", "mail.send"])

    response = await harness.call(
        "GET", "/api/v1/notifications?filter[type]=worker_notification", token=staff_token
    )
    [summary] = (await body(response, 200))["data"]
    assert summary["title"] == f"Worker {worker_id}: 1 notification"
    assert summary["message"] == "- [priority 1] alert: disk full"
    [mail] = await _mail_to(harness, staff_id)
    assert (mail.subject, mail.body) == (summary["title"], summary["message"])
    viewer = harness.users["viewer"].id
    assert await notifications_of(harness, viewer, type="worker_notification") == []

    response = await harness.call(
        "GET", f"/api/v1/worker-notifications?filter[worker_id]={worker_id}", role="admin"
    )
    [row] = (await body(response, 200))["data"]
    assert row["id"] == created.id and row["type"] == "alert" and row["priority"] == 1
    assert row["processed_at"] is not None and row["batch_id"] is not None
