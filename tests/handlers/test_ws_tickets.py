"""y-websocket connections without a token in the URL: single-use tickets from
`POST /api/v1/documents/<id>/ws-ticket`, and the `rcms.bearer` subprotocol."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from handlers import keys, ws_tickets
from handlers.app import create_app
from handlers.ywebsocket import SESSION_ENDED
from realtime_cms.accounts.tickets import LocalTickets, RedisTickets, issue_ticket, redeem_ticket
from realtime_cms.collab.protocol import MESSAGE_SYNC, SYNC_STEP1, decode_message
from realtime_cms.db import transaction
from realtime_cms.models.auth import User
from realtime_cms.models.realtime import DocumentPermission
from tests.support.harness import Harness
from tests.support.live import grant, new_document


async def get_ticket(
    harness: Harness, document_id: str, role: str = "editor", token: str | None = None
) -> str:
    response = await harness.call(
        "POST", f"/api/v1/documents/{document_id}/ws-ticket", role=role, token=token
    )
    body = await response.json()
    assert response.status == 200, body
    assert body["data"]["expires_in"] == 30
    return str(body["data"]["ticket"])


async def admitted(ws: aiohttp.ClientWebSocketResponse) -> None:
    """The server's first frame is its sync step 1: the connection was seated."""
    frame = await ws.receive(timeout=10)
    assert frame.type is aiohttp.WSMsgType.BINARY, frame
    message = decode_message(frame.data, max_update_bytes=1 << 30)
    assert (message.kind, message.sync_type) == (MESSAGE_SYNC, SYNC_STEP1)


async def handshake(
    harness: Harness, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """A WebSocket handshake the server refuses: its status and problem document."""
    upgrade = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        **(headers or {}),
    }
    response = await harness.client.get(path, headers=upgrade)
    assert response.status != 101, "the handshake was accepted"
    return response.status, await response.json(content_type=None)


async def reader(harness: Harness, username: str) -> tuple[User, str, str]:
    """A new user with read access to a new document: the user, its token, the document."""
    user = await harness.add_user(username, "viewer")
    document_id = new_document(username)
    async with transaction(harness.app[keys.SESSIONS]) as db:
        db.add(
            DocumentPermission(document_id=document_id, user_id=user.id, permission_level="read")
        )
    return user, await harness.login(username), document_id


async def opens_with(
    client: TestClient[web.Request, web.Application], document_id: str, ticket: str
) -> None:
    """The ticket seats a connection on the document (closed again at once)."""
    ws = await client.ws_connect(f"/ws/{document_id}", params={"ticket": ticket})
    try:
        await admitted(ws)
    finally:
        await ws.close()


async def assert_ticket_refused(harness: Harness, document_id: str, ticket: str) -> None:
    status, body = await handshake(harness, f"/ws/{document_id}?ticket={ticket}")
    assert (status, body["code"]) == (401, "invalid_ticket")


@pytest.fixture
async def document(harness: Harness) -> str:
    document_id = new_document("ticket")
    await grant(harness, document_id, "editor", "write")
    return document_id


async def test_a_ticket_opens_one_connection_and_is_then_used_up(
    harness: Harness, document: str
) -> None:
    ticket = await get_ticket(harness, document)
    await opens_with(harness.client, document, ticket)
    await assert_ticket_refused(harness, document, ticket)


async def test_an_expired_ticket_is_refused(
    harness: Harness, document: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ws_tickets, "TICKET_SECONDS", 0.2)
    response = await harness.call("POST", f"/api/v1/documents/{document}/ws-ticket", role="editor")
    ticket = (await response.json())["data"]["ticket"]
    await asyncio.sleep(0.5)
    await assert_ticket_refused(harness, document, ticket)


async def test_a_ticket_for_one_document_does_not_open_another_and_is_used_up(
    harness: Harness, document: str
) -> None:
    other = new_document("ticket-other")
    await grant(harness, other, "editor", "write")
    ticket = await get_ticket(harness, document)
    await assert_ticket_refused(harness, other, ticket)
    await assert_ticket_refused(harness, document, ticket)


async def test_a_ticket_of_a_user_deactivated_since_is_refused(harness: Harness) -> None:
    user, token, document_id = await reader(harness, "ticket-leaver")
    ticket = await get_ticket(harness, document_id, token=token)
    async with transaction(harness.app[keys.SESSIONS]) as db:
        await db.execute(sa.update(User).where(User.id == user.id).values(is_active=False))
    status, body = await handshake(harness, f"/ws/{document_id}?ticket={ticket}")
    assert (status, body["code"]) == (401, "unauthorized")


async def test_a_ticket_needs_read_access_to_the_document(harness: Harness) -> None:
    document_id = new_document("ticket-closed")
    response = await harness.call(
        "POST", f"/api/v1/documents/{document_id}/ws-ticket", role="viewer"
    )
    body = await response.json()
    assert (response.status, body["code"]) == (403, "no_access")


async def test_a_ticket_seat_is_rechecked_with_the_token_behind_it(harness: Harness) -> None:
    """The seat keeps the ticket's token: logging that session out ends the seat (4401)."""
    _, token, document_id = await reader(harness, "ticket-logout")
    ticket = await get_ticket(harness, document_id, token=token)
    ws = await harness.client.ws_connect(f"/ws/{document_id}", params={"ticket": ticket})
    try:
        await admitted(ws)
        logout = await harness.call("POST", "/api/v1/auth/logout", token=token)
        assert logout.status in (200, 204)
        while (await ws.receive(timeout=20)).type is not aiohttp.WSMsgType.CLOSE:
            pass
        assert ws.close_code == SESSION_ENDED
    finally:
        await ws.close()


async def test_the_bearer_subprotocol_carries_the_token_and_is_answered(
    harness: Harness, document: str
) -> None:
    token = harness.tokens["editor"]
    ws = await harness.client.ws_connect(
        f"/ws/{document}", protocols=(ws_tickets.BEARER_PROTOCOL, token)
    )
    try:
        assert ws.protocol == ws_tickets.BEARER_PROTOCOL
        await admitted(ws)
    finally:
        await ws.close()
    status, body = await handshake(
        harness, f"/ws/{document}", {"Sec-WebSocket-Protocol": "rcms.bearer, rcs_not-a-token"}
    )
    assert (status, body["code"]) == (401, "unauthorized")


class RecordingStore(LocalTickets):
    """An in-process store that shows what it was given to keep."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[tuple[str, bytes]] = []

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        self.kept.append((key, value))
        await super().put(key, value, ttl)


async def test_the_store_holds_neither_the_ticket_nor_the_token(harness: Harness) -> None:
    """Only the ticket's hash is a key, and the token is sealed under the ticket."""
    token = harness.tokens["editor"]
    store = RecordingStore()
    ticket = await issue_ticket(store, token=token, document_id="notes:sealed")
    [(key, value)] = store.kept
    assert ticket not in key and token.encode() not in value and ticket.encode() not in value
    assert await redeem_ticket(store, ticket, document_id="notes:sealed") == token
    assert await redeem_ticket(store, ticket, document_id="notes:sealed") is None


@pytest.fixture
async def second_node(harness: Harness) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """Another web process of the same installation (same database, Redis and prefix)."""
    client: TestClient[web.Request, web.Application] = TestClient(
        TestServer(create_app(harness.app[keys.SETTINGS]))
    )
    await client.start_server()
    yield client
    await client.close()


@pytest.mark.needs_redis
async def test_a_ticket_from_one_node_opens_a_connection_on_another_once(
    harness: Harness, document: str, second_node: TestClient[web.Request, web.Application]
) -> None:
    assert isinstance(ws_tickets.ticket_store(harness.app), RedisTickets)
    ticket = await get_ticket(harness, document)
    await opens_with(second_node, document, ticket)
    await assert_ticket_refused(harness, document, ticket)


async def test_no_ticket_is_issued_for_a_document_that_does_not_exist(harness: Harness) -> None:
    response = await harness.call(
        "POST", f"/api/v1/documents/{new_document('nowhere')}/ws-ticket", role="admin"
    )
    assert response.status == 404
