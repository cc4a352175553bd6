"""Presence in live documents: the REST listing across nodes, history rows, lapsed entries."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from aiohttp import DummyCookieJar, web
from aiohttp.test_utils import TestClient, TestServer

from realtime_cms import keys
from realtime_cms.app import create_app
from realtime_cms.db import transaction
from realtime_cms.documents.presence import Entry, registry_for
from realtime_cms.models.analytics import PresenceEvent
from realtime_cms.models.realtime import PresenceTracking
from tests.documents.conftest import Connect
from tests.support.harness import Harness
from tests.support.live import grant, new_document, present, present_soon


async def events(harness: Harness, document_id: str, user_id: int) -> list[str]:
    query = sa.select(PresenceEvent.event_type).where(
        PresenceEvent.target_type == "document",
        PresenceEvent.target_id == document_id,
        PresenceEvent.user_id == user_id,
    )
    async with transaction(harness.app[keys.SESSIONS]) as db:
        return list((await db.scalars(query.order_by(PresenceEvent.id))).all())


async def shared_document(harness: Harness) -> str:
    document_id = new_document("presence")
    for role in ("editor", "author"):
        await grant(harness, document_id, role, "write")
    return document_id


async def test_two_connected_users_are_listed_until_one_disconnects(
    harness: Harness, connect: Connect
) -> None:
    document_id = await shared_document(harness)
    editor, author = await connect("editor"), await connect("author")
    await editor.join(document_id)
    await author.join(document_id)
    users = await present(harness, document_id)
    assert set(users) == {"editor1", "author1"}
    assert users["editor1"]["user_id"] == harness.users["editor"].id
    assert users["editor1"]["connections"] == 1 and users["editor1"]["last_seen"]
    await author.sio.disconnect()
    await present_soon(harness, document_id, {"editor1"})


async def test_a_user_connected_twice_counts_two_connections(
    harness: Harness, connect: Connect
) -> None:
    document_id = await shared_document(harness)
    for _ in range(2):
        await (await connect("editor")).join(document_id)
    assert (await present(harness, document_id))["editor1"]["connections"] == 2


async def test_leaving_a_document_leaves_its_presence(harness: Harness, connect: Connect) -> None:
    document_id = await shared_document(harness)
    client = await connect("editor")
    await client.join(document_id)
    await client.leave(document_id)
    assert await present(harness, document_id) == {}


async def test_a_revoked_seat_leaves_presence(harness: Harness, connect: Connect) -> None:
    document_id = await shared_document(harness)
    client = await connect("author")
    await client.join(document_id)
    user_id = harness.users["author"].id
    url = f"/api/v1/documents/{document_id}/permissions/{user_id}"
    assert (await harness.call("DELETE", url, role="admin")).status == 204
    assert await present(harness, document_id) == {}


async def test_a_rest_update_is_not_presence(harness: Harness) -> None:
    document_id = await shared_document(harness)
    response = await harness.call(
        "POST",
        f"/api/v1/documents/{document_id}/updates",
        role="editor",
        data=b"\x00\x00",
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status == 200, await response.text()
    assert await present(harness, document_id) == {}
    assert await events(harness, document_id, harness.users["editor"].id) == []


async def test_joins_and_leaves_are_recorded(harness: Harness, connect: Connect) -> None:
    document_id = await shared_document(harness)
    user_id = harness.users["editor"].id
    client = await connect("editor")
    await client.join(document_id)
    await client.leave(document_id)
    assert await events(harness, document_id, user_id) == ["join", "leave"]
    tracked = sa.select(sa.func.count()).where(
        PresenceTracking.user_id == user_id,
        PresenceTracking.entity_type == "document",
        PresenceTracking.entity_id == document_id,
    )
    assert await harness.scalar(tracked) == 1
    await client.join(document_id)
    assert await harness.scalar(tracked) == 1  # one row per user and document, kept current


async def test_presence_needs_read_access(harness: Harness) -> None:
    document_id = await shared_document(harness)
    response = await harness.call("GET", f"/api/v1/documents/{document_id}/presence", role="viewer")
    assert response.status == 403


async def test_lapsed_entries_are_ignored(harness: Harness) -> None:
    registry = registry_for(harness.app[keys.REDIS], harness.app[keys.SETTINGS].redis_prefix)
    document_id, now = new_document("lapsed"), time.time()
    live, lapsed = Entry(1, "live", now, now + 30), Entry(2, "gone", now - 60, now - 30)
    await registry.put(document_id, {"node-a:1": live, "node-b:2": lapsed}, ttl=30)
    assert await registry.entries(document_id, now) == [live]


@pytest.fixture
async def second_node(harness: Harness) -> AsyncIterator[str]:
    """Another node on the same database (and Redis, when the backend has one); its base URL."""
    app: web.Application = create_app(harness.app[keys.SETTINGS])
    client: TestClient[web.Request, web.Application] = TestClient(
        TestServer(app), cookie_jar=DummyCookieJar()
    )
    await client.start_server()
    try:
        yield str(client.make_url("/"))
    finally:
        await client.close()


async def test_users_on_another_node_are_listed(
    harness: Harness, second_node: str, connect: Connect
) -> None:
    document_id = await shared_document(harness)
    await (await connect("editor")).join(document_id)
    await (await connect("author", url=second_node)).join(document_id)
    expected = {"editor1", "author1"} if harness.app[keys.REDIS] is not None else {"editor1"}
    # Without Redis (the embedded single-process mode) each process knows only its own peers.
    assert set(await present(harness, document_id)) == expected
