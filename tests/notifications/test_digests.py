"""Digests: ten daily notifications become one batch and one digest per channel, exactly once,
even when two processes (two runners, each with its own engine) handle the same window."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from realtime_cms.db import SessionFactory, create_engine, session_factory, transaction
from realtime_cms.mail import LogMailSender
from realtime_cms.models.auth import User
from realtime_cms.models.notifications import (
    Notification,
    NotificationDigestItem,
    UserNotificationPreference,
)
from realtime_cms.models.workers import NotificationBatch
from realtime_cms.notifications.digests import DigestRunner
from realtime_cms.notifications.producers import PRODUCER
from realtime_cms.notifications.service import Dispatcher, notify
from tests.notifications.support import FakeHub, unique
from tests.support.harness import create_schema

DAY = datetime(2031, 1, 1, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Process:
    """One simulated server process: its own engine, sessions, hub, mailer and runner."""

    sessions: SessionFactory
    hub: FakeHub
    mailer: LogMailSender
    runner: DigestRunner


@pytest.fixture(scope="module")
async def schema(database_url: str) -> str:
    await create_schema(database_url)
    return database_url


@pytest.fixture
async def processes(schema: str) -> AsyncIterator[tuple[FakeClock, list[Process]]]:
    clock = FakeClock(DAY)
    engines = [create_engine(schema) for _ in range(2)]
    made = []
    for engine in engines:
        hub, mailer = FakeHub(), LogMailSender()
        sessions = session_factory(engine)
        runner = DigestRunner(sessions, Dispatcher(hub, mailer), clock=clock)
        made.append(Process(sessions, hub, mailer, runner))
    try:
        yield clock, made
    finally:
        for engine in engines:
            await engine.dispose()


async def _user(sessions: SessionFactory, channels: list[str], frequency: str) -> int:
    async with transaction(sessions) as db:
        name = unique("digest").replace("-", "_")
        user = User(username=name, email=f"{name}@example.com", password="x")
        db.add(user)
        await db.flush()
        db.add(UserNotificationPreference(user_id=user.id, channels=channels, frequency=frequency))
    return user.id


async def _notify_ten(sessions: SessionFactory, user_id: int, start: datetime) -> None:
    for minute in range(10):
        async with transaction(sessions) as db:
            await notify(
                db,
                PRODUCER,
                users=[user_id],
                title=f"event {minute}",
                message=f"details of event {minute}",
                now=start + timedelta(minutes=minute),
            )


async def _scalar(sessions: SessionFactory, stmt: sa.Select[Any]) -> int:
    async with transaction(sessions) as db:
        return int(await db.scalar(stmt) or 0)


async def test_ten_daily_notifications_make_one_batch_and_one_digest_per_channel_once(
    processes: tuple[FakeClock, list[Process]],
) -> None:
    clock, (first, second) = processes
    users = [await _user(first.sessions, ["in_app", "email"], "daily") for _ in range(3)]
    for user_id in users:
        await _notify_ten(first.sessions, user_id, DAY + timedelta(hours=9))
    clock.now = DAY + timedelta(hours=23, minutes=59)
    assert await first.runner.deliver_due() == 0

    clock.now = DAY + timedelta(days=1, seconds=5)
    made = await asyncio.gather(first.runner.deliver_due(), second.runner.deliver_due())
    assert sum(made) == len(users)

    items = NotificationDigestItem
    for user_id in users:
        batches = await _scalar(
            first.sessions,
            sa.select(sa.func.count(sa.distinct(items.batch_id))).where(items.user_id == user_id),
        )
        unclaimed = await _scalar(
            first.sessions,
            sa.select(sa.func.count()).where(items.user_id == user_id, items.batch_id.is_(None)),
        )
        digests = await _scalar(
            first.sessions,
            sa.select(sa.func.count()).where(
                Notification.user_id == user_id, Notification.type == "digest"
            ),
        )
        assert (batches, unclaimed, digests) == (1, 0, 1)
    pushed = [e for p in (first, second) for e in p.hub.events if e[0] == "notification"]
    mailed = [m for p in (first, second) for m in p.mailer.outbox]
    assert sorted(user_id for _, user_id, _ in pushed) == sorted(users)
    assert len(mailed) == len(users)
    assert all(m.subject == "Your daily digest: 10 notifications" for m in mailed)
    assert all("event 9" in m.body for m in mailed)
    assert "- event 0: details of event 0" in pushed[0][2]["message"]

    async with transaction(first.sessions) as db:
        batch_rows = list(
            await db.scalars(
                sa.select(NotificationBatch).where(
                    NotificationBatch.batch_id.in_(
                        sa.select(items.batch_id).where(items.user_id.in_(users))
                    )
                )
            )
        )
    assert len(batch_rows) == len(users)
    assert {(b.status, b.notification_count) for b in batch_rows} == {("completed", 20)}

    assert await first.runner.deliver_due() == 0 and await second.runner.deliver_due() == 0


async def test_hourly_windows_close_on_the_hour(
    processes: tuple[FakeClock, list[Process]],
) -> None:
    clock, (first, _) = processes
    user_id = await _user(first.sessions, ["in_app"], "hourly")
    start = DAY + timedelta(days=3, hours=14, minutes=10)
    await _notify_ten(first.sessions, user_id, start)
    clock.now = start.replace(minute=59)
    assert await first.runner.deliver_due() == 0
    clock.now = start.replace(minute=0) + timedelta(hours=1)
    assert await first.runner.deliver_due() == 1
    [(_, pushed_to, data)] = [e for e in first.hub.events if e[0] == "notification"]
    assert pushed_to == user_id and data["title"] == "Your hourly digest: 10 notifications"
    assert first.mailer.outbox == type(first.mailer.outbox)()


async def test_the_runner_works_without_traffic_and_stops_cleanly(
    processes: tuple[FakeClock, list[Process]],
) -> None:
    clock, (first, _) = processes
    user_id = await _user(first.sessions, ["email"], "daily")
    await _notify_ten(first.sessions, user_id, DAY + timedelta(days=5))
    clock.now = DAY + timedelta(days=6, minutes=1)
    runner = DigestRunner(
        first.sessions, Dispatcher(None, first.mailer), interval_seconds=0.01, clock=clock
    )
    async with runner:
        deadline = asyncio.get_running_loop().time() + 15
        while not first.mailer.outbox:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
    with pytest.raises(RuntimeError):
        async with runner:
            pass
    assert [m.to for m in first.mailer.outbox] == [f"{await _name(first, user_id)}@example.com"]


async def _name(process: Process, user_id: int) -> str:
    async with transaction(process.sessions) as db:
        return str(await db.scalar(sa.select(User.username).where(User.id == user_id)))
