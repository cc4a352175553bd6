"""Schedules over REST with their jobs run directly: validation, transitions, cancel, failure."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from handlers import keys
from realtime_cms.db import transaction
from realtime_cms.models.auth import UserRole
from realtime_cms.models.base import utcnow
from realtime_cms.models.notifications import Notification
from realtime_cms.models.workers import WorkerJob
from realtime_cms.models.workflows import ScheduledContent, WorkflowMonitoring
from tests.scheduling.conftest import (
    ITEMS,
    SCHEDULES,
    World,
    backdate,
    body_of,
    expire_now,
    iso,
    item_status,
    new_item,
    publish_now,
    row,
    schedule,
)
from tests.support.harness import Harness, make_settings, serving


@pytest.fixture(scope="module")
async def harness(database_url: str, redis_url: str | None) -> AsyncIterator[Harness]:
    """No embedded worker: each test runs the jobs itself, when it wants."""
    settings = make_settings(database_url, redis_url, worker_embedded=False)
    async with serving(settings) as h:
        yield h


def fields_of(problem: dict[str, object]) -> list[list[str]]:
    return [error["loc"] for error in problem["errors"]]  # type: ignore[attr-defined, index]


async def monitoring(harness: Harness, schedule_id: int) -> list[tuple[str, str, int]]:
    async with transaction(harness.app[keys.SESSIONS]) as db:
        rows = await db.scalars(
            sa.select(WorkflowMonitoring)
            .where(WorkflowMonitoring.event_id == schedule_id)
            .order_by(WorkflowMonitoring.id)
        )
        return [(r.from_state, r.to_state, r.changed_by) for r in rows]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"publish_at": "2001-01-01T09:00:00"}, ["body", "publish_at"]),
        (
            {"publish_at": "2099-01-01T09:00:00", "expire_at": "2099-01-01T08:00:00"},
            ["body", "expire_at"],
        ),
        ({"publish_at": "2099-01-01T09:00:00", "timezone": "Mars/Olympus"}, ["body", "timezone"]),
        ({"publish_at": "2099-01-01T09:00:00", "priority": 11}, ["body", "priority"]),
        (
            {"publish_at": "2099-01-01T09:00:00", "recurrence": {"pattern": "hourly"}},
            ["body", "recurrence", "pattern"],
        ),
    ],
)
async def test_bad_input_is_refused_naming_the_field(
    harness: Harness, world: World, body: dict[str, object], field: list[str]
) -> None:
    item = await new_item(harness, world)
    problem = await schedule(harness, item, status=422, **body)
    assert field in fields_of(problem)


async def test_scheduling_a_draft_makes_it_scheduled_and_queues_the_publish(
    harness: Harness, world: World
) -> None:
    item = await new_item(harness, world)
    created = await schedule(
        harness, item, publish_at="2099-06-01T09:00:00", timezone="Europe/Berlin", priority=3
    )
    assert created["publish_at"] == "2099-06-01T07:00:00Z"
    assert created["publish_at_local"] == "2099-06-01T09:00:00"
    assert (created["status"], created["priority"]) == ("scheduled", 3)
    assert created["created_by"] == harness.users["editor"].id
    assert await item_status(harness, item) == "scheduled"
    job = await harness.scalar(
        sa.select(WorkerJob).where(
            WorkerJob.dedupe_key.like(f"scheduling.publish:{created['id']}:%")
        )
    )
    assert job.run_at == datetime(2099, 6, 1, 7, tzinfo=UTC)
    assert await monitoring(harness, created["id"]) == [
        ("new", "scheduled", harness.users["editor"].id)
    ]
    listed = await body_of(
        await harness.call("GET", f"{ITEMS}/{item}/schedules", role="viewer"), 200
    )
    assert [entry["id"] for entry in listed["data"]] == [created["id"]]


async def test_only_publishers_schedule(harness: Harness, world: World) -> None:
    item = await new_item(harness, world, role="author")
    await schedule(harness, item, role="author", status=403)
    await schedule(harness, item, role="viewer", status=403)


async def test_an_overdue_publish_runs_once_with_its_lateness(
    harness: Harness, world: World
) -> None:
    item = await new_item(harness, world)
    created = await schedule(harness, item)
    due = await backdate(harness, created["id"], seconds=5)
    output = await publish_now(harness, created["id"], due)
    assert output is not None and output.startswith("published")
    again = await publish_now(harness, created["id"], due)
    assert again == "no-op: the schedule is published"
    assert await item_status(harness, item) == "published"
    done = await row(harness, created["id"])
    assert done.status == "published" and done.lateness_seconds is not None
    assert done.lateness_seconds >= 5
    states = [(old, new) for old, new, _ in await monitoring(harness, created["id"])]
    assert states == [("new", "scheduled"), ("scheduled", "published")]


async def test_a_job_for_an_old_due_time_does_nothing_after_a_reschedule(
    harness: Harness, world: World
) -> None:
    item = await new_item(harness, world)
    created = await schedule(harness, item)
    old_due = await backdate(harness, created["id"])
    later = iso(utcnow() + timedelta(hours=2))
    response = await harness.call(
        "PATCH", f"{SCHEDULES}/{created['id']}", role="editor", json={"publish_at": later}
    )
    moved = (await body_of(response, 200))["data"]
    assert moved["publish_at"] == later
    assert (await publish_now(harness, created["id"], old_due) or "").startswith(
        "no-op: rescheduled"
    )
    assert await item_status(harness, item) == "scheduled"


async def test_an_expiry_expires_the_published_item(harness: Harness, world: World) -> None:
    item = await new_item(harness, world)
    start = utcnow() + timedelta(hours=1)
    created = await schedule(
        harness, item, publish_at=iso(start), expire_at=iso(start + timedelta(seconds=2))
    )
    due = await backdate(harness, created["id"], seconds=10)
    await publish_now(harness, created["id"], due)
    expire_job = await harness.scalar(
        sa.select(WorkerJob).where(
            WorkerJob.dedupe_key.like(f"scheduling.expire:{created['id']}:%")
        )
    )
    assert expire_job is not None
    assert (
        await expire_now(harness, created["id"], due + timedelta(seconds=2)) == "expired the item"
    )
    assert await item_status(harness, item) == "expired"
    assert (await row(harness, created["id"])).status == "expired"


async def test_cancelling_the_only_schedule_returns_the_item_to_draft(
    harness: Harness, world: World
) -> None:
    item = await new_item(harness, world)
    created = await schedule(harness, item)
    await body_of(await harness.call("DELETE", f"{SCHEDULES}/{created['id']}", role="viewer"), 403)
    await body_of(await harness.call("DELETE", f"{SCHEDULES}/{created['id']}", role="editor"), 204)
    assert (await row(harness, created["id"])).status == "cancelled"
    assert await item_status(harness, item) == "draft"
    await body_of(await harness.call("DELETE", f"{SCHEDULES}/{created['id']}", role="editor"), 409)


async def test_a_publish_fails_visibly_when_its_user_lost_the_right(
    harness: Harness, world: World
) -> None:
    user = await harness.add_user(f"leaver{datetime.now().timestamp():.0f}", "editor")
    token = await harness.login(user.username)
    item = await new_item(harness, world)
    response = await harness.call(
        "POST",
        f"{ITEMS}/{item}/schedules",
        token=token,
        json={"publish_at": iso(utcnow() + timedelta(hours=1))},
    )
    created = (await body_of(response, 201))["data"]
    async with transaction(harness.app[keys.SESSIONS]) as db:
        await db.execute(sa.delete(UserRole).where(UserRole.user_id == user.id))
    due = await backdate(harness, created["id"])
    output = await publish_now(harness, created["id"], due)
    assert output is not None and output.startswith("failed: permission_denied")
    failed = await row(harness, created["id"])
    assert failed.status == "failed" and failed.last_error
    assert await item_status(harness, item) == "scheduled"
    assert (await monitoring(harness, created["id"]))[-1] == ("scheduled", "failed", user.id)
    told = await harness.scalar(
        sa.select(sa.func.count())
        .select_from(Notification)
        .where(Notification.user_id == user.id, Notification.type == "schedule_failed")
    )
    assert told == 1


async def test_a_recurring_publish_creates_the_next_occurrence_at_local_time(
    harness: Harness, world: World
) -> None:
    item = await new_item(harness, world)
    created = await schedule(
        harness,
        item,
        timezone="Europe/Berlin",
        recurrence={"pattern": "daily"},
    )
    # The day before Berlin springs forward: 09:00 CET, then 09:00 CEST.
    due = datetime(2026, 3, 28, 8, tzinfo=UTC)
    async with transaction(harness.app[keys.SESSIONS]) as db:
        found = await db.get(ScheduledContent, created["id"])
        assert found is not None
        found.publish_time = due
    await publish_now(harness, created["id"], due)
    child = await harness.scalar(
        sa.select(ScheduledContent).where(ScheduledContent.parent_event_id == created["id"])
    )
    assert child.publish_time == datetime(2026, 3, 29, 7, tzinfo=UTC)
    assert child.status == "scheduled" and child.timezone == "Europe/Berlin"
    shown = await body_of(await harness.call("GET", f"{SCHEDULES}/{child.id}", role="viewer"), 200)
    assert shown["data"]["publish_at_local"] == "2026-03-29T09:00:00"
    assert shown["data"]["parent_id"] == created["id"]


async def test_the_calendar_projects_recurring_occurrences(harness: Harness, world: World) -> None:
    item = await new_item(harness, world)
    created = await schedule(
        harness,
        item,
        publish_at="2098-01-06T09:00:00",
        timezone="America/New_York",
        recurrence={"pattern": "weekly", "by_day": ["MO", "WE"]},
    )
    query = {"from": "2098-01-01T00:00:00Z", "to": "2098-01-15T00:00:00Z"}
    found = await body_of(await harness.call("GET", SCHEDULES, role="viewer", params=query), 200)
    mine = [e for e in found["data"]["entries"] if e["schedule_id"] == created["id"]]
    assert [(e["publish_at_local"], e["projected"]) for e in mine] == [
        ("2098-01-06T09:00:00", False),
        ("2098-01-08T09:00:00", True),
        ("2098-01-13T09:00:00", True),
    ]
    too_wide = {"from": "2098-01-01T00:00:00Z", "to": "2099-06-01T00:00:00Z"}
    problem = await body_of(
        await harness.call("GET", SCHEDULES, role="viewer", params=too_wide), 422
    )
    assert ["query", "to"] in fields_of(problem)
    missing = await body_of(
        await harness.call("GET", SCHEDULES, role="viewer", params={"to": query["to"]}), 422
    )
    assert ["query", "from"] in fields_of(missing)


async def test_a_preview_lists_occurrences_and_names_bad_fields(harness: Harness) -> None:
    body = {
        "publish_at": "2026-10-24T02:30:00",
        "timezone": "Europe/Berlin",
        "recurrence": {"pattern": "daily"},
        "count": 2,
    }
    response = await harness.call("POST", f"{SCHEDULES}/preview", role="viewer", json=body)
    found = (await body_of(response, 200))["data"]["occurrences"]
    # 02:30 on the fall-back day exists twice: the first (still summer time) is taken.
    assert [o["at"] for o in found] == ["2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z"]
    bad = {**body, "timezone": "Nowhere/Else"}
    response = await harness.call("POST", f"{SCHEDULES}/preview", role="viewer", json=bad)
    assert ["body", "timezone"] in fields_of(await body_of(response, 422))
