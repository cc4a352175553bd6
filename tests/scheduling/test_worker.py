"""Schedules run by the harness' embedded worker: on time, once, recorded against the worker."""

from __future__ import annotations

import asyncio
import statistics
from datetime import timedelta

import sqlalchemy as sa

from handlers import keys
from realtime_cms.db import transaction
from realtime_cms.models.base import utcnow
from realtime_cms.models.workers import WorkerAssignment
from realtime_cms.models.workflows import ScheduledContent, WorkflowMonitoring
from realtime_cms.principal import Principal
from realtime_cms.rbac.catalog import DEFAULT_ROLES
from realtime_cms.scheduling import service
from realtime_cms.scheduling.schemas import ScheduleCreate
from realtime_cms.scheduling.state import Movers
from tests.scheduling.conftest import World, iso, item_status, new_item, row, schedule
from tests.support.harness import Harness

COUNT = 200


async def until_status(harness: Harness, schedule_id: int, status: str, within: float) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while (await row(harness, schedule_id)).status != status:
        assert asyncio.get_running_loop().time() < deadline, f"not {status} in time"
        await asyncio.sleep(0.05)


async def test_the_worker_publishes_at_the_due_time_and_records_itself(
    harness: Harness, world: World
) -> None:
    item = await new_item(harness, world)
    # Times are kept to the second: 3 s ahead stays in the future once truncated and created.
    due = utcnow().replace(microsecond=0) + timedelta(seconds=3)
    created = await schedule(harness, item, publish_at=iso(due))
    await until_status(harness, created["id"], "published", within=20)
    assert await item_status(harness, item) == "published"
    done = await row(harness, created["id"])
    assert done.assigned_worker_id is not None and done.lateness_seconds is not None
    assignment = await harness.scalar(
        sa.select(WorkerAssignment).where(WorkerAssignment.event_id == created["id"])
    )
    assert assignment.worker_id == done.assigned_worker_id
    assert assignment.status == "completed" and assignment.completed_at is not None


async def test_two_hundred_schedules_publish_once_each_and_soon(
    harness: Harness, world: World
) -> None:
    editor = harness.users["editor"]
    principal = Principal(editor.id, editor.username, DEFAULT_ROLES["editor"][1])
    items = [await new_item(harness, world) for _ in range(COUNT)]
    # Creating them takes a while on a loaded machine: all are due after the last is made.
    start = utcnow() + timedelta(seconds=20)
    movers = Movers(harness.app[keys.CONTENT], harness.app[keys.PASSWORDS])
    ids = []
    async with transaction(harness.app[keys.SESSIONS]) as db:
        for index, item in enumerate(items):
            due = start + timedelta(seconds=index % 3)
            data = ScheduleCreate(publish_at=due)
            ids.append(
                (await service.create_schedule(db, principal, movers, item_id=item, data=data)).id
            )
    for schedule_id in ids:
        await until_status(harness, schedule_id, "published", within=60)
    async with transaction(harness.app[keys.SESSIONS]) as db:
        lateness = list(
            await db.scalars(
                sa.select(ScheduledContent.lateness_seconds).where(ScheduledContent.id.in_(ids))
            )
        )
        published = await db.scalar(
            sa.select(sa.func.count())
            .select_from(WorkflowMonitoring)
            .where(WorkflowMonitoring.event_id.in_(ids), WorkflowMonitoring.to_state == "published")
        )
    assert published == COUNT
    p99 = statistics.quantiles([float(x or 0) for x in lateness], n=100)[98]
    # Reported, not asserted: the target is p99 <= 2 s, but this runs on shared,
    # loaded CI machines, and a test must not fail because the machine is slow.
    print(f"publish lateness over {COUNT} schedules: p99 {p99:.3f} s, max {max(lateness):.3f} s")
