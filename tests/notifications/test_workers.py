"""Worker notifications: queued, claimed into batches by priority once, processed, listed."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from realtime_cms import keys
from realtime_cms.db import transaction
from realtime_cms.errors import Forbidden
from realtime_cms.models.workers import NotificationBatch, Worker
from realtime_cms.notifications import workers
from realtime_cms.notifications.producers import PRODUCER
from realtime_cms.principal import system
from tests.notifications.support import body, unique
from tests.support.harness import Harness

ADMIN = system(frozenset({"workers.manage"}))


async def _worker(harness: Harness) -> str:
    worker_id = unique("worker")
    async with transaction(harness.app[keys.SESSIONS]) as db:
        db.add(Worker(worker_id=worker_id, type="general", hostname="host", pid=1))
    return worker_id


async def test_a_batch_takes_pending_notifications_by_priority_once(harness: Harness) -> None:
    worker_id = await _worker(harness)
    sessions = harness.app[keys.SESSIONS]
    async with transaction(sessions) as db:
        for priority in (5, 1, 3):
            await workers.create(
                db, ADMIN, worker_id=worker_id, message=f"p{priority}", priority=priority
            )
    async with transaction(sessions) as db:
        batch = await workers.claim_batch(db, ADMIN, worker_id=worker_id, limit=2)
    assert batch is not None
    assert [row.message for row in batch.notifications] == ["p1", "p3"]
    async with transaction(sessions) as db:
        rest = await workers.claim_batch(db, ADMIN, worker_id=worker_id, limit=10)
        assert rest is not None and [row.message for row in rest.notifications] == ["p5"]
        assert await workers.claim_batch(db, ADMIN, worker_id=worker_id) is None
    async with transaction(sessions) as db:
        done = await workers.mark_processed(db, ADMIN, ids=[r.id for r in batch.notifications])
        stored = await db.get(NotificationBatch, batch.batch_id)
        assert stored is not None
        await db.refresh(stored)
    assert done == 2 and stored.status == "completed" and stored.notification_count == 2


async def test_workers_need_the_workers_permission(harness: Harness) -> None:
    worker_id = await _worker(harness)
    async with transaction(harness.app[keys.SESSIONS]) as db:
        with pytest.raises(Forbidden):
            await workers.create(db, PRODUCER, worker_id=worker_id, message="x")


async def test_admins_list_worker_notifications(harness: Harness) -> None:
    worker_id = await _worker(harness)
    async with transaction(harness.app[keys.SESSIONS]) as db:
        created = await workers.create(
            db, ADMIN, worker_id=worker_id, message="disk full", type="alert"
        )
    response = await harness.call(
        "GET", f"/api/v1/worker-notifications?filter[worker_id]={worker_id}", role="admin"
    )
    [row] = (await body(response, 200))["data"]
    assert row["id"] == created.id and row["type"] == "alert" and row["processed_at"] is None
    response = await harness.call("GET", "/api/v1/worker-notifications", role="editor")
    assert (await body(response, 403))["code"] == "permission_denied"
    count = await harness.scalar(sa.select(sa.func.count()).select_from(Worker))
    assert count >= 1
