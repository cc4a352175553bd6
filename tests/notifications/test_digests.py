"""Digests: ten daily notifications become one batch and one digest per channel, exactly once,
even when two processes (each with its own engine) run the same jobs at once; the digest
schedule makes one job per slot however many schedulers tick."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.db import SessionFactory, create_engine, session_factory, transaction
from realtime_cms.jobs.registry import JobType
from realtime_cms.jobs.schedules import Scheduler
from realtime_cms.models.auth import User
from realtime_cms.models.notifications import (
    Notification,
    NotificationDigestItem,
    UserNotificationPreference,
)
from realtime_cms.models.workers import NotificationBatch, WorkerJob
from realtime_cms.notifications import digests, jobs
from realtime_cms.notifications.producers import PRODUCER
from realtime_cms.notifications.service import notify
from tests.notifications.support import FakeHub, run_job, unique
from tests.support.harness import create_schema, make_settings

DAY = datetime(2031, 1, 1, tzinfo=UTC)


@dataclass
class Process:
    """One simulated server process: its own engine, sessions and live hub."""

    sessions: SessionFactory
    hub: FakeHub

    async def run(self, job_type: JobType[Any], payload: dict[str, Any], at: datetime) -> str:
        return await run_job(self.sessions, job_type, payload, at, self.hub)


@pytest.fixture(scope="module")
async def schema(database_url: str) -> str:
    await create_schema(database_url)
    return database_url


@pytest.fixture
async def processes(schema: str) -> AsyncIterator[list[Process]]:
    engines = [create_engine(schema) for _ in range(2)]
    made = [Process(session_factory(engine), FakeHub()) for engine in engines]
    async with transaction(made[0].sessions) as db:
        await db.execute(sa.delete(WorkerJob))
    try:
        yield made
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


async def _queued(sessions: SessionFactory, job_type: JobType[Any]) -> list[dict[str, Any]]:
    async with transaction(sessions) as db:
        stmt = sa.select(WorkerJob.payload).where(
            WorkerJob.type == job_type.name, WorkerJob.status == "queued"
        )
        return list(await db.scalars(stmt.order_by(WorkerJob.created_at)))


async def _scan_and_deliver(processes: list[Process], at: datetime) -> list[dict[str, Any]]:
    """Both processes scan, then both run every queued digest job at once."""
    for process in processes:
        await process.run(jobs.DIGESTS, {}, at)
    queued = await _queued(processes[0].sessions, jobs.DIGEST)
    for payload in queued:
        await asyncio.gather(*(p.run(jobs.DIGEST, payload, at) for p in processes))
    return queued


async def _mail(sessions: SessionFactory) -> list[dict[str, Any]]:
    async with transaction(sessions) as db:
        stmt = sa.select(WorkerJob.payload).where(WorkerJob.type == "mail.send")
        return list(await db.scalars(stmt))


async def test_ten_daily_notifications_make_one_batch_and_one_digest_per_channel_once(
    processes: list[Process],
) -> None:
    first, second = processes
    users = [await _user(first.sessions, ["in_app", "email"], "daily") for _ in range(3)]
    for user_id in users:
        await _notify_ten(first.sessions, user_id, DAY + timedelta(hours=9))
    assert await _scan_and_deliver(processes, DAY + timedelta(hours=23, minutes=59)) == []

    queued = await _scan_and_deliver(processes, DAY + timedelta(days=1, seconds=5))
    assert sorted(p["user_id"] for p in queued) == users
    assert {p["frequency"] for p in queued} == {"daily"}
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
    pushed = [e for p in processes for e in p.hub.events if e[0] == "notification"]
    mailed = await _mail(first.sessions)
    assert sorted(user_id for _, user_id, _ in pushed) == users
    assert len(mailed) == len(users)
    assert all(m["subject"] == "Your daily digest: 10 notifications" for m in mailed)
    assert all("event 9" in m["body"] for m in mailed)
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

    later = DAY + timedelta(days=1, minutes=1)
    assert await first.run(jobs.DIGESTS, {}, later) == "due: 0, queued: 0"
    for payload in queued:
        assert await second.run(jobs.DIGEST, payload, later) == "nothing due: already delivered"


async def test_hourly_windows_close_on_the_hour(processes: list[Process]) -> None:
    first, _ = processes
    user_id = await _user(first.sessions, ["in_app"], "hourly")
    start = DAY + timedelta(days=3, hours=14, minutes=10)
    await _notify_ten(first.sessions, user_id, start)
    assert await _scan_and_deliver(processes, start.replace(minute=59)) == []
    on_the_hour = start.replace(minute=0) + timedelta(hours=1)
    assert await _scan_and_deliver(processes, on_the_hour) == [
        {"user_id": user_id, "frequency": "hourly"}
    ]
    [(_, pushed_to, data)] = [e for p in processes for e in p.hub.events if e[0] == "notification"]
    assert pushed_to == user_id and data["title"] == "Your hourly digest: 10 notifications"
    assert await _mail(first.sessions) == []


async def test_two_scans_at_once_queue_each_due_digest_once(
    processes: list[Process], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = processes
    user_id = await _user(first.sessions, ["email"], "daily")
    await _notify_ten(first.sessions, user_id, DAY + timedelta(days=5))
    # Both scans have read the due digests before either queues one.
    read, both_read = digests.due_groups, asyncio.Barrier(2)

    async def due_groups(db: AsyncSession, now: datetime) -> list[digests.Group]:
        groups = await read(db, now)
        await both_read.wait()
        return groups

    monkeypatch.setattr(digests, "due_groups", due_groups)
    at = DAY + timedelta(days=6, minutes=1)
    outputs = await asyncio.gather(
        first.run(jobs.DIGESTS, {}, at), second.run(jobs.DIGESTS, {}, at)
    )
    assert sorted(outputs) == ["due: 1, queued: 0", "due: 1, queued: 1"]
    assert await _queued(first.sessions, jobs.DIGEST) == [
        {"user_id": user_id, "frequency": "daily"}
    ]


async def test_a_digest_slot_is_one_job_however_many_schedulers_tick(
    processes: list[Process],
) -> None:
    settings = make_settings("sqlite+aiosqlite:///unused.db")
    [schedule] = jobs.schedules(settings)
    assert (schedule.job_type, schedule.every_seconds) == (jobs.DIGESTS, 60.0)
    schedulers = [Scheduler(p.sessions, [schedule]) for p in processes]
    at = DAY + timedelta(days=7, seconds=30)
    inserted = await asyncio.gather(*(s.tick(at) for s in schedulers))
    assert sorted(inserted) == [0, 1]
    assert await Scheduler(processes[0].sessions, [schedule]).tick(at) == 0
    slot = DAY + timedelta(days=7)
    async with transaction(processes[0].sessions) as db:
        slots = list(await db.execute(sa.select(WorkerJob.id, WorkerJob.run_at, WorkerJob.type)))
    assert [tuple(row) for row in slots] == [(schedule.job_id(slot), slot, jobs.DIGESTS.name)]
