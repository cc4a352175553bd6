"""Revocation reaches idle sockets, held updates are asked for, seats are capped per user."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pycrdt
import pytest
import socketio
import sqlalchemy as sa

from handlers import keys
from realtime_cms.client import CollabClient, CollabError
from realtime_cms.db import transaction
from realtime_cms.models.realtime import DocumentPermission, UserSession
from realtime_cms.security.tokens import hash_token
from tests.support.harness import Harness, make_settings, start_harness
from tests.support.live import eventually, new_document

# Small enough to reach in a test; large enough for the tests that open several seats.
SEAT_CAP = 4
# Documents one connection may hold (below the user's cap, so each cap is reached alone).
PER_CONNECTION = 3
# The at-once path must beat the periodic re-check by far (every seat is re-checked at
# least every 5 s, 10 s at worst): a generous bound on an in-process reaction.
AT_ONCE_SECONDS = 4.0
_users = itertools.count(1)


@pytest.fixture(scope="module")
async def harness(database_url: str, redis_url: str | None) -> AsyncIterator[Harness]:
    settings = make_settings(
        database_url,
        redis_url,
        collab_max_seats_per_user=SEAT_CAP,
        collab_max_documents=PER_CONNECTION,
    )
    h = await start_harness(settings)
    try:
        yield h
    finally:
        await h.client.close()


class Watched:
    """A `/collab` client that records when the server disconnected it."""

    def __init__(self, url: str, token: str) -> None:
        self.client = CollabClient(url, token, timeout=10)
        self.gone = asyncio.Event()
        self.client.sio.on("disconnect", self._gone, namespace="/collab")

    async def _gone(self, *args: object) -> None:
        self.gone.set()

    async def __aenter__(self) -> Watched:
        await self.client.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.client.sio.connected:
            await self.client.sio.disconnect()


async def new_editor(harness: Harness) -> tuple[int, str]:
    """A fresh user with the editor role, signed in: (id, token)."""
    name = f"revoked{next(_users)}"
    user = await harness.add_user(name, "editor")
    return user.id, await harness.login(name)


async def granted(harness: Harness, token: str, prefix: str) -> str:
    """A new free document the token's user may write."""
    document_id = new_document(prefix)
    async with transaction(harness.app[keys.SESSIONS]) as db:
        user_id = await db.scalar(
            sa.select(UserSession.user_id).where(UserSession.id == hash_token(token))
        )
        db.add(
            DocumentPermission(document_id=document_id, user_id=user_id, permission_level="write")
        )
    return document_id


def url_of(harness: Harness) -> str:
    return str(harness.client.make_url("/"))


async def deactivate(harness: Harness, user_id: int) -> None:
    response = await harness.call("POST", f"/api/v1/users/{user_id}/deactivate", role="admin")
    assert response.status == 200, await response.text()


async def test_a_passive_collab_socket_of_a_deactivated_user_is_closed_at_once(
    harness: Harness,
) -> None:
    user_id, token = await new_editor(harness)
    async with Watched(url_of(harness), token) as watched:
        await watched.client.join(
            await granted(harness, token, "revoke")
        )  # just checked: the sweep waits
        await deactivate(harness, user_id)
        await asyncio.wait_for(watched.gone.wait(), AT_ONCE_SECONDS)


async def test_a_passive_collab_socket_is_dropped_by_the_sweep_when_its_session_ends(
    harness: Harness,
) -> None:
    """A session ended behind the server's back (no event): the sweep still finds it."""
    _, token = await new_editor(harness)
    async with Watched(url_of(harness), token) as watched:
        await watched.client.join(await granted(harness, token, "sweep"))
        async with transaction(harness.app[keys.SESSIONS]) as db:
            await db.execute(sa.delete(UserSession).where(UserSession.id == hash_token(token)))
        await asyncio.wait_for(watched.gone.wait(), 20)


async def test_a_logout_closes_that_sessions_sockets_and_no_other(harness: Harness) -> None:
    name = f"twice{next(_users)}"
    await harness.add_user(name, "editor")
    first, second = await harness.login(name), await harness.login(name)
    async with Watched(url_of(harness), first) as one, Watched(url_of(harness), second) as two:
        document_id = await granted(harness, first, "logout")
        await one.client.join(document_id)
        await two.client.join(document_id)
        response = await harness.call("POST", "/api/v1/auth/logout", token=first)
        assert response.status in (200, 204), await response.text()
        await asyncio.wait_for(one.gone.wait(), AT_ONCE_SECONDS)
        await asyncio.sleep(0.5)
        assert not two.gone.is_set()
        await two.client.join(await granted(harness, second, "logout"))


async def test_y_websocket_seats_of_a_deactivated_user_are_closed_at_once(
    harness: Harness,
) -> None:
    user_id, token = await new_editor(harness)
    document_id = await granted(harness, token, "revoke-ws")
    url = harness.client.make_url(f"/ws/{document_id}").with_query(token=token)
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.receive()  # the server's sync step 1
        await deactivate(harness, user_id)
        closed = await asyncio.wait_for(_closed(ws), AT_ONCE_SECONDS)
        assert closed == 4401


async def _closed(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    async for _ in ws:
        pass
    return ws.close_code


async def test_an_update_lacking_dependencies_is_asked_for_and_acked_once_integrated(
    harness: Harness,
) -> None:
    _, token = await new_editor(harness)
    async with Watched(url_of(harness), token) as watched:
        client = watched.client
        document = await client.join(await granted(harness, token, "held"))
        author: pycrdt.Doc = pycrdt.Doc()
        text = author.get("body", type=pycrdt.Text)
        text += "first"
        withheld = author.get_update()
        before = author.get_state()
        text += " second"
        second = author.get_update(before)
        # The client holds the first change (as if its send were lost) and sends the second.
        document.apply_remote(withheld)
        reply = await client.call("update", {"document": document.document_id, "update": second})
        assert reply == {"ok": True}
        await document.flush()
        check = await CollabClient(url_of(harness), token, timeout=10).__aenter__()
        try:
            fresh = await check.join(document.document_id)
            assert fresh.text() == "first second"
        finally:
            await check.close()


async def test_the_sync_event_gives_what_each_side_lacks(harness: Harness) -> None:
    _, token = await new_editor(harness)
    async with Watched(url_of(harness), token) as watched:
        client = watched.client
        document = await client.join(await granted(harness, token, "sync"))
        document.doc.get("body", type=pycrdt.Text).insert(0, "saved")
        await document.flush()
        reply = await client.call(
            "sync", {"document": document.document_id, "state_vector": b"\x00"}
        )
        lacking: pycrdt.Doc = pycrdt.Doc()
        lacking.apply_update(reply["update"])
        assert str(lacking.get("body", type=pycrdt.Text)) == "saved"
        assert reply["state_vector"] == document.doc.get_state()
        with pytest.raises(CollabError) as caught:
            await client.call("sync", {"document": "notes:never-joined"})
        assert caught.value.code == "not_joined"


async def test_one_user_holds_at_most_the_seat_cap_across_transports(harness: Harness) -> None:
    user_id, token = await new_editor(harness)
    async with Watched(url_of(harness), token) as watched, aiohttp.ClientSession() as http:
        sockets = []
        for _ in range(SEAT_CAP - 1):
            url = harness.client.make_url(f"/ws/{await granted(harness, token, 'cap')}").with_query(
                token=token
            )
            sockets.append(await http.ws_connect(url))
        await watched.client.join(await granted(harness, token, "cap"))  # the last seat
        with pytest.raises(CollabError) as caught:
            await watched.client.join(await granted(harness, token, "cap"))
        assert caught.value.code == "too_many_documents"
        url = harness.client.make_url(f"/ws/{await granted(harness, token, 'cap')}").with_query(
            token=token
        )
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url)
        assert refused.value.status == 400
        await sockets[0].close()
        rooms = harness.app[keys.ROOMS]
        await eventually(lambda: rooms.seats_of(user_id) < SEAT_CAP)
        await watched.client.join(
            await granted(harness, token, "cap")
        )  # a seat freed is a seat to take
        for ws in sockets[1:]:
            await ws.close()


async def test_one_y_socket_io_connection_holds_at_most_the_per_connection_cap(
    harness: Harness,
) -> None:
    """Namespaces asked for at once on one Engine.IO connection: the cap holds (and it is
    the connection's, not the user's: this user has a seat left)."""
    _, token = await new_editor(harness)
    namespaces = [f"/yjs|{await granted(harness, token, 'yjs-cap')}" for _ in range(SEAT_CAP)]
    client = socketio.AsyncClient(reconnection=False)
    refusals: list[Any] = []
    for namespace in namespaces:
        client.on("connect_error", refusals.append, namespace=namespace)
    try:
        with contextlib.suppress(socketio.exceptions.ConnectionError):
            await client.connect(
                url_of(harness),
                namespaces=namespaces,
                auth={"token": token},
                transports=["websocket"],
                wait_timeout=5,
            )
        await eventually(lambda: len(client.namespaces) + len(refusals) == SEAT_CAP)
        assert len(client.namespaces) == PER_CONNECTION
        refused = {
            "code": "too_many_documents",
            "message": "Too many open documents on this connection",
        }
        assert [refusal["data"] for refusal in refusals] == [refused]
    finally:
        await client.disconnect()
