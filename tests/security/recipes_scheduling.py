"""Recipes of the scheduling operations: an item's schedules, one schedule, calendar, preview.

Importing this module registers them in `tests.security.recipes.RECIPES`.
"""

from __future__ import annotations

from datetime import timedelta

from realtime_cms.models.base import utcnow
from tests.security.principals import Who
from tests.security.recipes import Request, recipe
from tests.security.world import World


def _later() -> str:
    return (utcnow() + timedelta(days=30)).isoformat()


async def _schedule(world: World) -> int:
    """A fresh pending schedule on a fresh item, made by the admin."""
    item = (await world.new_item())["id"]
    made = await world.admin(
        "POST", f"/api/v1/content-items/{item}/schedules", {"publish_at": _later()}
    )
    return int(made["id"])


@recipe("list_item_schedules")
async def item_schedules(world: World, who: Who) -> Request:
    return Request({"item_id": world.item_id})


@recipe("create_schedule")
async def create_schedule(world: World, who: Who) -> Request:
    item = (await world.new_item())["id"]
    return Request({"item_id": item}, json={"publish_at": _later(), "timezone": "Europe/Berlin"})


@recipe("get_schedule")
async def get_schedule(world: World, who: Who) -> Request:
    return Request({"schedule_id": await _schedule(world)})


@recipe("update_schedule")
async def update_schedule(world: World, who: Who) -> Request:
    return Request({"schedule_id": await _schedule(world)}, json={"priority": 5})


@recipe("cancel_schedule")
async def cancel_schedule(world: World, who: Who) -> Request:
    return Request({"schedule_id": await _schedule(world)})


@recipe("schedule_calendar")
async def calendar(world: World, who: Who) -> Request:
    return Request(query={"from": "2026-01-01T00:00:00Z", "to": "2026-12-31T00:00:00Z"})


@recipe("preview_schedule")
async def preview(world: World, who: Who) -> Request:
    body = {"publish_at": _later(), "timezone": "UTC", "recurrence": {"pattern": "weekly"}}
    return Request(json=body)
