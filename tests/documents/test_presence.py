"""Presence in live documents: the REST listing across nodes, history rows, lapsed entries."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import DummyCookieJar, web
from aiohttp.test_utils import TestClient, TestServer

from handlers import keys
from handlers.app import create_app
from realtime_cms.db import transaction
from realtime_cms.documents.presence import Entry, Presence, registry_for
from realtime_cms.documents.service import RestPeer
from realtime_cms.models.analytics import PresenceEvent
from realtime_cms.models.auth import User
from realtime_cms.models.realtime import DocumentPermission, PresenceTracking
from realtime_cms.principal import Principal
from tests.documents.conftest import Connect
from tests.support.harness import Harness
from tests.support.live import eventually, grant, new_document, present, present_soon


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


async def new_member(harness: Harness, document_id: str) -> tuple[User, str]:
    """A fresh user with write access to the document, and their session token."""
    name = f"gone{uuid.uuid4().hex[:10]}"
    user = await harness.add_user(name, "viewer")
    async with transaction(harness.app[keys.SESSIONS]) as db:
        db.add(
            DocumentPermission(document_id=document_id, user_id=user.id, permission_level="write")
        )
    return user, await harness.login(name)


def presence_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_deleted_user_still_seated_leaves_without_errors(
    harness: Harness, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    document_id = await shared_document(harness)
    user, token = await new_member(harness, document_id)
    client = await connect("viewer", token=token)
    await client.join(document_id)
    assert user.username in await present(harness, document_id)
    with caplog.at_level(logging.INFO):
        deleted = await harness.call("DELETE", f"/api/v1/users/{user.id}", role="admin")
        assert deleted.status == 204, await deleted.text()
        # The seat ends by the client's disconnect (or the server's, if it drops the socket of
        # an ended session first); either way the rooms' on_disconnect hook runs.
        await client.sio.disconnect()
        await eventually(lambda: any(seat_end_logged(r) for r in caplog.records))
    assert presence_errors(caplog) == []
    assert user.username not in await present(harness, document_id)


def seat_end_logged(record: logging.LogRecord) -> bool:
    """What presence logs about a deleted user's seat ending: today an error, else a note."""
    return record.levelno >= logging.ERROR or "no longer exists" in record.getMessage()


async def test_presence_forgets_connections_of_users_that_are_gone(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    document_id = await shared_document(harness)
    user, _ = await new_member(harness, document_id)
    registry = registry_for(harness.app[keys.REDIS], harness.app[keys.SETTINGS].redis_prefix)
    peer = RestPeer(Principal(user_id=user.id, username=user.username))
    with caplog.at_level(logging.INFO):
        async with Presence(harness.app[keys.SESSIONS], registry, ttl=5, refresh=0.05) as presence:
            await presence.joined(document_id, peer)
            assert [p.username for p in await presence.present(document_id)] == [user.username]
            async with transaction(harness.app[keys.SESSIONS]) as db:
                await db.execute(sa.delete(User).where(User.id == user.id))
            await eventually_async(lambda: presence.present(document_id), [])
            await presence.left(document_id, peer)
            other = new_document("after")
            await presence.joined(other, peer)
            assert await presence.present(other) == []
    assert presence_errors(caplog) == []


async def eventually_async(read: Callable[[], Awaitable[Any]], expected: Any) -> None:
    """Poll `read()` until it answers `expected`; a generous bound, not a timing assertion."""
    deadline = time.monotonic() + 15
    while (await read()) != expected:
        assert time.monotonic() < deadline, "presence did not settle"
        await asyncio.sleep(0.05)
