"""Fixtures for schedule tests: a site and content type, items per author, calls and jobs."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import ClientResponse

from handlers import keys
from realtime_cms.db import transaction
from realtime_cms.models.base import utcnow
from realtime_cms.models.content import ContentItem
from realtime_cms.models.workflows import ScheduledContent
from realtime_cms.scheduling import jobs
from tests.support import content
from tests.support.content import World, new_world
from tests.support.harness import Harness
from tests.support.jobs import run_job

ITEMS = "/api/v1/content-items"
SCHEDULES = "/api/v1/schedules"


@pytest.fixture(scope="module")
async def world(harness: Harness) -> World:
    return await new_world(harness)


async def new_item(harness: Harness, world: World, *, role: str = "editor", **extra: Any) -> int:
    """An item authored by the `role` user, inserted directly."""
    return await content.new_item(harness, world, role=role, **extra)


async def body_of(response: ClientResponse, status: int) -> Any:
    body = await response.json(content_type=None) if response.status != 204 else None
    assert response.status == status, body
    return body


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def schedule(
    harness: Harness, item_id: int, *, role: str = "editor", status: int = 201, **body: Any
) -> Any:
    body.setdefault("publish_at", iso(utcnow() + timedelta(hours=1)))
    response = await harness.call("POST", f"{ITEMS}/{item_id}/schedules", role=role, json=body)
    found = await body_of(response, status)
    return found["data"] if status == 201 else found


async def item_status(harness: Harness, item_id: int) -> str:
    return str(await harness.scalar(sa.select(ContentItem.status).where(ContentItem.id == item_id)))


async def row(harness: Harness, schedule_id: int) -> ScheduledContent:
    async with transaction(harness.app[keys.SESSIONS]) as db:
        found = await db.get(ScheduledContent, schedule_id)
        assert found is not None
        db.expunge(found)
        return found


async def backdate(harness: Harness, schedule_id: int, seconds: float = 5) -> datetime:
    """Make a pending schedule overdue by `seconds` (as after downtime); the new due time."""
    due = utcnow() - timedelta(seconds=seconds)
    async with transaction(harness.app[keys.SESSIONS]) as db:
        found = await db.get(ScheduledContent, schedule_id)
        assert found is not None
        if found.expire_time is not None:
            found.expire_time = due + (found.expire_time - found.publish_time)
        found.publish_time = due
        await db.execute(
            sa.update(ContentItem)
            .where(ContentItem.id == found.content_id, ContentItem.status == "scheduled")
            .values(published_at=due)
        )
    return due


async def publish_now(harness: Harness, schedule_id: int, due: datetime) -> str | None:
    """Run the publish job's handler directly, as a worker would."""
    payload = {"schedule_id": schedule_id, "due": due.isoformat()}
    return await run_job(
        harness.app[keys.SESSIONS], jobs.PUBLISH, payload, harness.app[keys.RUNTIME]
    )


async def expire_now(harness: Harness, schedule_id: int, due: datetime) -> str | None:
    payload = {"schedule_id": schedule_id, "due": due.isoformat()}
    return await run_job(
        harness.app[keys.SESSIONS], jobs.EXPIRE, payload, harness.app[keys.RUNTIME]
    )
