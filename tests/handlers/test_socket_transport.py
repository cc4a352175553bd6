"""Engine.IO's WebSocket transport as rewritten in handlers/socket_transport.py, on a real
server: the polling-to-WebSocket upgrade, in-order handling of a socket's events with acks
after commit, and bad frames closing only their own connection."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pycrdt
import socketio
import sqlalchemy as sa

from handlers import keys
from realtime_cms.db import transaction
from realtime_cms.models.realtime import DocumentUpdate
from tests.support.harness import Harness
from tests.support.live import eventually, grant, new_document

NAMESPACE = "/collab"


def typed(count: int) -> tuple[list[bytes], str]:
    """`count` one-character edits by one client, each depending on the one before."""
    doc = pycrdt.Doc()
    text = doc.get("body", type=pycrdt.Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for i in range(count):
        text.insert(len(text), chr(ord("a") + i % 26))
    return updates, str(text)


def room_text(harness: Harness, document_id: str) -> str:
    room = harness.app[keys.ROOMS].get(document_id)
    assert room is not None
    doc = pycrdt.Doc()
    doc.apply_update(room.sync_step1_reply(b"\x00"))
    return str(doc.get("body", type=pycrdt.Text))


async def logged_rows(harness: Harness, document_id: str) -> int:
    query = sa.select(sa.func.count()).where(DocumentUpdate.document_id == document_id)
    async with transaction(harness.app[keys.SESSIONS]) as db:
        return int(await db.scalar(query) or 0)


async def connect_editor(harness: Harness, *transports: str) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(
        str(harness.client.make_url("/")),
        namespaces=[NAMESPACE],
        auth={"token": harness.tokens["editor"]},
        transports=list(transports),
        wait_timeout=10,
    )
    return client


async def test_a_polling_client_upgrades_to_the_websocket_and_edits(harness: Harness) -> None:
    document_id = new_document("upgrade")
    await grant(harness, document_id, "editor", "write")
    client = await connect_editor(harness, "polling", "websocket")
    try:
        await eventually(lambda: client.eio.current_transport == "websocket")
        server_socket = harness.app[keys.SIO].eio.sockets[client.eio.sid]
        assert server_socket.upgraded and not server_socket.upgrading
        joined = await client.call("join", {"document": document_id}, namespace=NAMESPACE)
        assert joined["ok"] is True and joined["role"] == "write"
        updates, text = typed(3)
        for update in updates:
            reply = await client.call(
                "update", {"document": document_id, "update": update}, namespace=NAMESPACE
            )
            assert reply == {"ok": True}
        assert room_text(harness, document_id) == text
    finally:
        await client.disconnect()


async def test_a_sockets_updates_apply_in_order_and_each_ack_follows_its_commit(
    harness: Harness,
) -> None:
    """Fifty dependent updates sent without waiting: each applies at once (none is held
    pending for a missing predecessor) and every ack finds its update in the log."""
    document_id = new_document("inline")
    await grant(harness, document_id, "editor", "write")
    client = await connect_editor(harness, "websocket")
    try:
        await client.call("join", {"document": document_id}, namespace=NAMESPACE)
        updates, text = typed(50)
        loop = asyncio.get_running_loop()
        acks: list[asyncio.Future[Any]] = [loop.create_future() for _ in updates]
        for ack, update in zip(acks, updates, strict=True):
            await client.emit(
                "update",
                {"document": document_id, "update": update},
                namespace=NAMESPACE,
                callback=ack.set_result,
            )
        replies = await asyncio.wait_for(asyncio.gather(*acks), 20)
        assert replies == [{"ok": True}] * len(updates)
        assert await logged_rows(harness, document_id) == len(updates)
        room = harness.app[keys.ROOMS].get(document_id)
        assert room is not None
        assert room.pending_count == 0
        assert room_text(harness, document_id) == text
    finally:
        await client.disconnect()


async def open_raw(
    harness: Harness, path: str = "socket.io"
) -> tuple[aiohttp.ClientWebSocketResponse, str]:
    """A bare Engine.IO WebSocket on `/<path>/`, past its OPEN packet, and its sid."""
    ws = await harness.client.session.ws_connect(
        harness.client.make_url(f"/{path}/?EIO=4&transport=websocket")
    )
    opening = await ws.receive(timeout=10)
    assert opening.type == aiohttp.WSMsgType.TEXT and opening.data.startswith("0{")
    return ws, str(json.loads(opening.data[1:])["sid"])


async def assert_closed_by_server(ws: aiohttp.ClientWebSocketResponse) -> None:
    while True:
        msg = await ws.receive(timeout=10)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            return
        assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), msg


async def test_a_frame_that_is_not_engine_io_closes_only_its_connection(
    harness: Harness,
) -> None:
    other, _ = await open_raw(harness)
    bad, _ = await open_raw(harness)
    await bad.send_str("not an engine.io packet")
    await assert_closed_by_server(bad)
    # The other connection still answers: a Socket.IO CONNECT to a refused namespace.
    await other.send_str("40")
    reply = await other.receive(timeout=10)
    assert reply.type == aiohttp.WSMsgType.TEXT and reply.data.startswith("44")
    await other.close()


async def test_a_frame_over_the_size_limit_closes_the_connection(harness: Harness) -> None:
    ws, _ = await open_raw(harness)
    limit = harness.app[keys.SETTINGS].max_body_bytes
    await ws.send_str("4" + "x" * (limit + 1))
    await assert_closed_by_server(ws)
