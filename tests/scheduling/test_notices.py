"""A schedule's changes reach the editors who have its item open, at once, on every node:
the `notice` event on /collab (docs/protocol.md), sent only to peers seated on the item's
document."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from realtime_cms.client import CollabClient
from realtime_cms.models.base import utcnow
from tests.scheduling.conftest import SCHEDULES, World, body_of, iso, new_item, schedule
from tests.support.cluster import Cluster, cluster, rest
from tests.support.harness import Harness

__all__ = ["cluster"]  # one pair of nodes for this module's two-node test

WITHIN = 10.0  # bounds a hang only: a notice comes right after the commit


class Listener:
    """A /collab connection seated on one document, keeping the notices it gets."""

    def __init__(self, url: str, token: str) -> None:
        self.client = CollabClient(url, token, timeout=10)
        self.notices: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.client.sio.on("notice", self.notices.put_nowait, namespace="/collab")

    async def next(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.notices.get(), WITHIN)

    async def none_for(self, seconds: float) -> bool:
        await asyncio.sleep(seconds)
        return self.notices.empty()


@asynccontextmanager
async def listening(url: str, token: str, item_id: int) -> AsyncIterator[Listener]:
    listener = Listener(url, token)
    await listener.client.connect()
    try:
        await listener.client.join(f"content:{item_id}")
        yield listener
    finally:
        await listener.client.sio.disconnect()


async def test_an_open_editor_is_told_of_each_change_of_its_items_schedule(
    harness: Harness, world: World
) -> None:
    item, other = await new_item(harness, world), await new_item(harness, world)
    token = harness.tokens["editor"]
    async with (
        listening(harness.url, token, item) as seated,
        listening(harness.url, token, other) as elsewhere,
    ):
        created = await schedule(harness, item, publish_at=iso(utcnow() + timedelta(hours=2)))
        assert await seated.next() == {
            "kind": "schedule",
            "document": f"content:{item}",
            "item_id": item,
            "schedule_id": created["id"],
            "status": "scheduled",
            "previous": None,
        }
        response = await harness.call("DELETE", f"{SCHEDULES}/{created['id']}", role="editor")
        await body_of(response, 204)
        cancelled = await seated.next()
        assert (cancelled["status"], cancelled["previous"]) == ("cancelled", "scheduled")
        # Only the peers of that item's document hear of it.
        assert await elsewhere.none_for(0.5)


async def test_a_schedule_made_on_one_node_reaches_an_editor_on_the_other(
    cluster: Cluster,
) -> None:
    node_a, node_b = cluster.urls
    alice, bob = cluster.tokens["alice"], cluster.tokens["bob"]
    token = uuid.uuid4().hex[:8]
    site = await rest(
        "POST", f"{node_a}/api/v1/sites", alice, {"name": f"S {token}", "domain": f"{token}.test"}
    )
    kind = await rest("POST", f"{node_a}/api/v1/content-types", alice, {"name": f"T {token}"})
    body = {"site_id": site["id"], "content_type_id": kind["id"], "title": f"I {token}"}
    item = (await rest("POST", f"{node_a}/api/v1/content-items", alice, body))["id"]
    async with listening(node_b, bob, item) as seated:
        when = iso(utcnow() + timedelta(hours=2))
        created = await rest(
            "POST", f"{node_a}/api/v1/content-items/{item}/schedules", alice, {"publish_at": when}
        )
        notice = await seated.next()
        assert (notice["schedule_id"], notice["status"]) == (created["id"], "scheduled")
