"""Worker notifications: one pending batch job per worker, batches claimed by priority exactly
once (two runs at once take disjoint notifications), delivered to the staff, and none left
behind when one is created while the worker's batch runs. No server: jobs run by hand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from realtime_cms.db import SessionFactory, create_engine, session_factory, transaction
from realtime_cms.errors import Forbidden, NotFound
from realtime_cms.jobs import leases, processes
from realtime_cms.models.auth import User, UserRole
from realtime_cms.models.notifications import Notification
from realtime_cms.models.workers import NotificationBatch, Worker, WorkerJob, WorkerNotification
from realtime_cms.notifications import workers
from realtime_cms.notifications.producers import PRODUCER
from realtime_cms.principal import system
from realtime_cms.rbac.service import role_id_by_name
from tests.notifications.support import FakeHub, job_context, run_job, unique
from tests.support.harness import create_schema

ADMIN = system(frozenset({"workers.manage"}))
NOW = datetime(2031, 6, 1, 12, 0, tzinfo=UTC)


@dataclass
class World:
    engines: list[Any]
    sessions: list[SessionFactory]
    hub: FakeHub
    staff: int
    viewer: int


@pytest.fixture(scope="module")
async def world(database_url: str) -> AsyncIterator[World]:
    await create_schema(database_url)
    engines = [create_engine(database_url) for _ in range(2)]
    sessions = [session_factory(engine) for engine in engines]
    ids = []
    async with transaction(sessions[0]) as db:
        for name, role in (("ops", "admin"), ("reader", "viewer")):
            user = User(username=name, email=f"{name}@example.com", password="x")
            db.add(user)
            await db.flush()
            db.add(UserRole(user_id=user.id, role_id=await role_id_by_name(db, role)))
            ids.append(user.id)
    try:
        yield World(engines, sessions, FakeHub(), *ids)
    finally:
        for engine in engines:
            await engine.dispose()


async def _worker(sessions: SessionFactory) -> str:
    worker_id = unique("worker")
    async with transaction(sessions) as db:
        db.add(Worker(worker_id=worker_id, type="general", hostname="host", pid=1))
    return worker_id


async def _create(sessions: SessionFactory, worker_id: str, *priorities: int) -> list[int]:
    ids = []
    for priority in priorities:
        async with transaction(sessions) as db:
            row = await workers.create(
                db, ADMIN, worker_id=worker_id, message=f"p{priority}", priority=priority
            )
            ids.append(row.id)
    return ids


async def _run(world: World, sessions: SessionFactory, worker_id: str) -> str:
    payload = {"worker_id": worker_id}
    return await run_job(sessions, workers.WORKER_BATCH, payload, NOW, world.hub)


async def _batch_jobs(sessions: SessionFactory, worker_id: str) -> list[WorkerJob]:
    async with transaction(sessions) as db:
        found = await db.scalars(
            sa.select(WorkerJob).where(
                WorkerJob.type == workers.WORKER_BATCH.name, WorkerJob.status == "queued"
            )
        )
        return [job for job in found if job.payload == {"worker_id": worker_id}]


async def _rows(sessions: SessionFactory, ids: list[int]) -> list[WorkerNotification]:
    async with transaction(sessions) as db:
        stmt = sa.select(WorkerNotification).where(WorkerNotification.id.in_(ids))
        return list(await db.scalars(stmt.order_by(WorkerNotification.id)))


async def _summaries(sessions: SessionFactory, user_id: int, worker_id: str) -> list[str]:
    async with transaction(sessions) as db:
        stmt = sa.select(Notification.message).where(
            Notification.user_id == user_id,
            Notification.type == "worker_notification",
            Notification.title.startswith(f"Worker {worker_id}:"),
        )
        return list(await db.scalars(stmt.order_by(Notification.id)))


async def test_creating_notifications_queues_one_batch_job_per_worker(world: World) -> None:
    worker_id, other = await _worker(world.sessions[0]), await _worker(world.sessions[0])
    await _create(world.sessions[0], worker_id, 3, 3, 1)
    await _create(world.sessions[0], other, 2)
    assert len(await _batch_jobs(world.sessions[0], worker_id)) == 1
    assert len(await _batch_jobs(world.sessions[0], other)) == 1


async def test_a_batch_goes_to_the_staff_by_priority_once(world: World) -> None:
    sessions = world.sessions[0]
    worker_id = await _worker(sessions)
    ids = await _create(sessions, worker_id, 5, 1, 3)
    output = await _run(world, sessions, worker_id)
    assert output.endswith(": 3 notifications to 1 staff")
    [summary] = await _summaries(sessions, world.staff, worker_id)
    assert summary.splitlines() == [
        "- [priority 1] info: p1",
        "- [priority 3] info: p3",
        "- [priority 5] info: p5",
    ]
    assert await _summaries(sessions, world.viewer, worker_id) == []
    rows = await _rows(sessions, ids)
    assert {row.processed_at for row in rows} == {NOW} and len({r.batch_id for r in rows}) == 1
    async with transaction(sessions) as db:
        batch = await db.get(NotificationBatch, rows[0].batch_id)
        assert batch is not None and (batch.status, batch.notification_count) == ("completed", 3)
    pushed = [e for e in world.hub.events if e[0] == "notification" and e[1] == world.staff]
    assert pushed[-1][2]["message"] == summary
    assert await _run(world, world.sessions[1], worker_id) == "nothing pending"


async def test_two_runs_at_once_claim_disjoint_batches(world: World) -> None:
    worker_id = await _worker(world.sessions[0])
    ids = await _create(world.sessions[0], worker_id, 5, 1, 3)

    async def deliver(sessions: SessionFactory) -> list[str]:
        async with transaction(sessions) as db:
            delivered = await workers.deliver_batch(db, worker_id, NOW, limit=2)
        return [] if delivered is None else [row.message for row in delivered.notifications]

    batches = await asyncio.gather(*(deliver(sessions) for sessions in world.sessions))
    assert sorted(batches) == [["p1", "p3"], ["p5"]]
    rows = await _rows(world.sessions[0], ids)
    assert all(row.processed_at == NOW for row in rows) and len({r.batch_id for r in rows}) == 2
    assert len(await _summaries(world.sessions[0], world.staff, worker_id)) == 2


async def test_more_than_a_batch_queues_a_job_for_the_rest(world: World) -> None:
    sessions = world.sessions[0]
    worker_id = await _worker(sessions)
    await _create(sessions, worker_id, 1, 2, 3)
    async with transaction(sessions) as db:
        await workers.deliver_batch(db, worker_id, NOW, limit=2)
    jobs = await _batch_jobs(sessions, worker_id)
    assert sorted(job.dedupe_key is None for job in jobs) == [False, True]


async def test_a_notification_created_while_the_batch_runs_is_not_left_behind(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = world.sessions
    worker_id = await _worker(first)
    await _create(first, worker_id, 3)
    [job] = await _batch_jobs(first, worker_id)
    process_id = await processes.register(
        first, kind="worker", concurrency=1, queues=["default"], now=NOW
    )
    async with transaction(first) as db:
        await db.execute(
            sa.update(WorkerJob)
            .where(WorkerJob.id == job.id)
            .values(status="processing", process_id=process_id, attempts=1)
        )
    claimed, finish = asyncio.Event(), asyncio.Event()
    find_staff = workers.staff

    async def staff_once_claimed(db: Any) -> list[User]:
        claimed.set()
        await finish.wait()
        return await find_staff(db)

    monkeypatch.setattr(workers, "staff", staff_once_claimed)

    async def run_the_job() -> None:
        async with transaction(first) as db:
            context = job_context(db, workers.WORKER_BATCH, NOW, world.hub, job.id)
            output = await workers.WORKER_BATCH.run(context, job.payload)
            assert await leases.complete(db, job.id, process_id, output, NOW)

    running = asyncio.create_task(run_the_job())
    await claimed.wait()
    creating = asyncio.create_task(_create(second, worker_id, 1))
    # Let the create reach the worker's lock, which the running batch holds.
    await asyncio.sleep(0.5)
    finish.set()
    await running
    [late] = await _rows(first, await creating)
    assert late.batch_id is None and late.processed_at is None
    [pending] = await _batch_jobs(first, worker_id)
    assert pending.id != job.id


async def test_creating_needs_the_workers_permission(world: World) -> None:
    worker_id = await _worker(world.sessions[0])
    async with transaction(world.sessions[0]) as db:
        with pytest.raises(Forbidden):
            await workers.create(db, PRODUCER, worker_id=worker_id, message="x")


async def test_an_unknown_worker_is_not_found(world: World) -> None:
    async with transaction(world.sessions[0]) as db:
        with pytest.raises(NotFound) as raised:
            await workers.create(db, ADMIN, worker_id=unique("nobody"), message="x")
    assert raised.value.code == "worker_not_found"
