"""Malformed packets on the Socket.IO endpoints, over real WebSockets: refused quietly
(no error, no traceback, one warning per connection), counted on `/healthz`, and a
connection that keeps sending them is closed while the server goes on serving others."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import aiohttp
import msgpack
import pycrdt
import pytest

from handlers import keys
from handlers.socket_junk import JUNK_LIMIT
from realtime_cms.client import CollabClient
from tests.handlers.test_socket_transport import assert_closed_by_server, open_raw
from tests.support.harness import Harness
from tests.support.live import grant, new_document

Frame = str | bytes
UPDATE = '["update",{"document":"notes:x","update":{"_placeholder":true,"num":0}}]'

# One junk packet each: a list of frames whose last one is the junk (frames before it are
# the well-formed start of a binary event). Sent on a connection seated in `/collab`.
TEXT_JUNK: dict[str, list[Frame]] = {
    "unknown Engine.IO type": ["9"],
    "Engine.IO OPEN from the client": ["0"],
    "Engine.IO PING from the client": ["2"],
    "Engine.IO NOOP from the client": ["6"],
    "Engine.IO UPGRADE after the upgrade": ["5"],
    "Socket.IO type not a digit": ["4xyz"],
    "unknown Socket.IO type": ["49"],
    "CONNECT_ERROR from the client": ["44/collab,"],
    "event JSON truncated": ['42/collab,["join",'],
    "event payload an object": ['42/collab,{"a":1}'],
    "event payload empty": ["42/collab,[]"],
    "event name a number": ["42/collab,[1,2]"],
    "event named like a lifecycle event": ['42/collab,3["disconnect",{}]'],
    "id field too long": ["42/collab," + "1" * 120 + '["join"]'],
    "ack payload an object": ['43/collab,7{"a":1}'],
    "connect auth a string": ['40/other,"token"'],
    "Engine.IO payload null": ["4null"],
    "Engine.IO payload an object": ['4{"a":1}'],
    "empty Socket.IO packet": ["4"],
    "binary frame with no event waiting": [b"\x01\x02\x03"],
    "binary event on a namespace not joined": ["451-/other," + UPDATE],
    "binary event with no attachments": ["450-/collab," + UPDATE],
    "binary event with too many attachments": ["4599-/collab," + UPDATE],
    "text frame where the attachment was due": ["451-/collab," + UPDATE, "4text"],
    "one attachment short": ["452-/collab," + UPDATE, b"\x00", "42/collab,[]"],
    "placeholder out of range": [
        '451-/collab,["update",{"_placeholder":true,"num":3}]',
        b"\x00",
    ],
    "event name an attachment": ['451-/collab,[{"_placeholder":true,"num":0}]', b"\x00"],
}


def packed(value: Any) -> bytes:
    return bytes(msgpack.packb(value))


MSGPACK_JUNK: dict[str, list[Frame]] = {
    "unknown Engine.IO type": ["9"],
    "text frame": ["4hello"],
    "not msgpack": [b"\xc1"],
    "truncated msgpack": [packed({"type": 2, "nsp": "/collab", "data": ["join"]})[:-3]],
    "a list, not a packet": [packed([2, "/collab"])],
    "no namespace": [packed({"type": 2, "data": ["join"]})],
    "unknown Socket.IO type": [packed({"type": 9, "nsp": "/collab"})],
    "type a string": [packed({"type": "2", "nsp": "/collab", "data": ["join"]})],
    "namespace a list": [packed({"type": 2, "nsp": ["/collab"], "data": ["join"]})],
    "event payload a string": [packed({"type": 2, "nsp": "/collab", "data": "join"})],
    "event name bytes": [packed({"type": 2, "nsp": "/collab", "data": [b"join"]})],
    "event named like a lifecycle event": [
        packed({"type": 2, "nsp": "/collab", "data": ["connect"]})
    ],
    "id a string": [packed({"type": 2, "nsp": "/collab", "data": ["join"], "id": "x"})],
    "binary event type": [packed({"type": 5, "nsp": "/collab", "data": ["join"]})],
    "CONNECT_ERROR from the client": [packed({"type": 4, "nsp": "/collab"})],
}

ENDPOINTS = {"socket.io": TEXT_JUNK, "socket.io-msgpack": MSGPACK_JUNK}


class ServerLog(logging.Handler):
    """Every record the server's loggers (ours, engineio's, socketio's, asyncio's) emit."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def server_log() -> Iterator[ServerLog]:
    handler = ServerLog()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def seated(harness: Harness, path: str) -> tuple[aiohttp.ClientWebSocketResponse, str]:
    """A raw Engine.IO WebSocket connected to `/collab` as the editor, and its Engine.IO sid."""
    ws, sid = await open_raw(harness, path)
    auth = {"token": harness.tokens["editor"]}
    if path == "socket.io":
        await ws.send_str("40/collab," + json.dumps(auth))
        reply = await ws.receive(timeout=10)
        assert reply.type == aiohttp.WSMsgType.TEXT and reply.data.startswith("40/collab,")
    else:
        await ws.send_bytes(packed({"type": 0, "nsp": "/collab", "data": auth}))
        reply = await ws.receive(timeout=10)
        assert msgpack.unpackb(reply.data)["type"] == 0
    return ws, sid


async def send(ws: aiohttp.ClientWebSocketResponse, frames: list[Frame]) -> None:
    for frame in frames:
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        else:
            await ws.send_str(frame)


async def junk_count(harness: Harness) -> int:
    response = await harness.client.get("/healthz")
    body = await response.json()
    return int(body["counters"]["socket_junk_packets"])


def trouble(records: list[logging.LogRecord]) -> list[str]:
    """Records that are errors or carry a traceback."""
    return [
        f"{record.name}: {record.getMessage()}"
        for record in records
        if record.levelno >= logging.ERROR or record.exc_info or "Traceback" in record.getMessage()
    ]


async def test_junk_is_refused_quietly_counted_and_closes_the_connection_that_persists(
    harness: Harness, server_log: ServerLog
) -> None:
    before = await junk_count(harness)
    sids: list[str] = []
    for path, kinds in ENDPOINTS.items():
        for kind, frames in kinds.items():
            ws, sid = await seated(harness, path)
            sids.append(sid)
            for _ in range(JUNK_LIMIT):
                await send(ws, frames)
            try:
                await assert_closed_by_server(ws)
            except TimeoutError:
                pytest.fail(f"{path}: {JUNK_LIMIT} x {kind!r} did not close the connection")
    assert trouble(server_log.records) == []
    # Exactly one warning per connection, the ledger's, and no other warning at all.
    warnings = [r for r in server_log.records if r.levelno == logging.WARNING]
    assert {r.name for r in warnings} == {"handlers.socket_junk"}
    messages = [r.getMessage() for r in warnings]
    for sid in sids:
        assert sum(sid in message for message in messages) == 1, sid
    assert len(messages) == len(sids)
    assert await junk_count(harness) - before == len(sids) * JUNK_LIMIT


async def test_a_few_junk_packets_leave_the_connection_open(
    harness: Harness, server_log: ServerLog
) -> None:
    ws, sid = await seated(harness, "socket.io")
    for _ in range(JUNK_LIMIT - 1):
        await send(ws, ["49"])
    # Still served: a CONNECT to a namespace that does not exist is refused, not ignored.
    await ws.send_str("40/nowhere,")
    reply = await ws.receive(timeout=10)
    assert reply.type == aiohttp.WSMsgType.TEXT and reply.data.startswith("44/nowhere,")
    await ws.close()
    warnings = [r.getMessage() for r in server_log.records if r.levelno == logging.WARNING]
    assert [message for message in warnings if sid in message] != []
    assert trouble(server_log.records) == []


@pytest.mark.parametrize("msgpack_framing", [False, True])
async def test_a_legitimate_client_is_served_after_a_junk_flood(
    harness: Harness, server_log: ServerLog, msgpack_framing: bool
) -> None:
    path = "socket.io-msgpack" if msgpack_framing else "socket.io"
    for frames in ENDPOINTS[path].values():
        ws, _ = await seated(harness, path)
        for _ in range(JUNK_LIMIT):
            await send(ws, frames)
        await assert_closed_by_server(ws)
    document_id = new_document("after-junk")
    await grant(harness, document_id, "editor", "write")
    url = str(harness.client.make_url("/"))
    async with CollabClient(url, harness.tokens["editor"], msgpack=msgpack_framing) as client:
        document = await client.join(document_id)
        document.doc.get("body", type=pycrdt.Text).insert(0, "still served")
        await document.flush()
        assert document.role == "write" and document.errors == []
    assert trouble(server_log.records) == []


async def test_junk_over_long_polling_closes_the_session_quietly(
    harness: Harness, server_log: ServerLog
) -> None:
    """Socket.IO junk in POSTed payloads: the session gets a CLOSE packet, then is gone."""
    url = "/socket.io/?EIO=4&transport=polling"
    opening = await (await harness.client.get(url)).text()
    sid = json.loads(opening[1:])["sid"]
    session = f"{url}&sid={sid}"
    connect = "40/collab," + json.dumps({"token": harness.tokens["editor"]})
    assert (await harness.client.post(session, data=connect)).status == 200
    assert (await (await harness.client.get(session)).text()).startswith("40/collab,")
    before = await junk_count(harness)
    # As a polling client does: a GET waits for packets while the POST goes out.
    poll = asyncio.ensure_future(harness.client.get(session))
    await asyncio.sleep(0.1)
    junk = "\x1e".join(["49"] * JUNK_LIMIT)
    assert (await harness.client.post(session, data=junk)).status == 200
    assert (await (await asyncio.wait_for(poll, 10)).text()).split("\x1e") == ["1"]
    server_socket = harness.app[keys.SIO].eio.sockets.get(sid)
    assert server_socket is None or server_socket.closed
    assert await junk_count(harness) - before == JUNK_LIMIT
    assert trouble(server_log.records) == []
