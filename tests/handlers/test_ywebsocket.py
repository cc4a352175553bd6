"""`/ws/<document>` on a real server, driven the way y-websocket's WebsocketProvider drives it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pycrdt
import pytest
import sqlalchemy as sa

from handlers import keys
from handlers.ywebsocket import ACCESS_REVOKED, SESSION_ENDED, Close, WebSocketPeer
from realtime_cms.client import CollabClient
from realtime_cms.collab.protocol import (
    MESSAGE_AUTH,
    MESSAGE_AWARENESS,
    MESSAGE_SYNC,
    SYNC_STEP1,
    SYNC_STEP2,
    AwarenessEntry,
    Message,
    awareness_message,
    decode_awareness_update,
    decode_message,
    encode_awareness_update,
    query_awareness,
    sync_step1,
    sync_step2,
    sync_update,
    write_var_uint,
)
from realtime_cms.db import transaction
from realtime_cms.models.realtime import DocumentPermission, DocumentUpdate
from realtime_cms.principal import Principal
from tests.support.harness import Harness
from tests.support.live import eventually, grant, new_document, present_soon

UNLIMITED = 1 << 30


class YClient:
    """A stand-in for y-websocket's provider: a pycrdt document kept in sync over one socket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.doc: pycrdt.Doc = pycrdt.Doc()
        self.text = self.doc.get("body", type=pycrdt.Text)
        self.received: list[Message] = []
        self.awareness: dict[int, dict[str, Any] | None] = {}
        self.clocks: dict[int, int] = {}
        self.denied: list[str] = []
        self._outgoing: list[bytes] = []
        self._remote = False
        self.doc.observe(self._on_change)
        self.reader = asyncio.create_task(self._read())

    async def start(self) -> YClient:
        """Send sync step 1, as the provider does on open."""
        await self.ws.send_bytes(sync_step1(self.doc.get_state()))
        return self

    async def insert(self, index: int, value: str) -> None:
        self.text.insert(index, value)
        for update in self._outgoing:
            await self.ws.send_bytes(sync_update(update))
        self._outgoing.clear()

    def synced(self) -> bool:
        return any(m.kind == MESSAGE_SYNC and m.sync_type == SYNC_STEP2 for m in self.received)

    async def closed(self) -> int | None:
        """Wait for the server to close the socket; its close code."""
        await asyncio.wait_for(self.reader, 15)
        return self.ws.close_code

    def _on_change(self, event: pycrdt.TransactionEvent) -> None:
        if not self._remote:
            self._outgoing.append(event.update)

    async def _read(self) -> None:
        async for frame in self.ws:
            if frame.type is aiohttp.WSMsgType.BINARY:
                await self._handle(decode_message(frame.data, max_update_bytes=UNLIMITED))

    async def _handle(self, message: Message) -> None:
        self.received.append(message)
        if message.kind == MESSAGE_SYNC and message.sync_type == SYNC_STEP1:
            await self.ws.send_bytes(sync_step2(self.doc.get_update(message.payload)))
        elif message.kind == MESSAGE_SYNC:
            self._remote = True
            self.doc.apply_update(message.payload)
            self._remote = False
        elif message.kind == MESSAGE_AWARENESS:
            for entry in decode_awareness_update(message.payload, max_state_bytes=UNLIMITED):
                self._apply_awareness(entry)
        elif message.kind == MESSAGE_AUTH:
            self.denied.append(message.payload.decode())

    def _apply_awareness(self, entry: AwarenessEntry) -> None:
        """y-protocols' rule: a newer clock wins; an equal one only to remove a state."""
        clock = self.clocks.get(entry.client_id, -1)
        removes = entry.state is None and self.awareness.get(entry.client_id) is not None
        if entry.clock > clock or (entry.clock == clock and removes):
            self.clocks[entry.client_id] = entry.clock
            self.awareness[entry.client_id] = entry.state


Open = Callable[..., Awaitable[YClient]]


@pytest.fixture
async def open_ws(harness: Harness) -> AsyncIterator[Open]:
    clients: list[YClient] = []

    async def open_client(document_id: str, role: str, *, start: bool = True) -> YClient:
        ws = await harness.client.ws_connect(
            f"/ws/{document_id}", params={"token": harness.tokens[role]}
        )
        client = YClient(ws)
        clients.append(client)
        return await client.start() if start else client

    yield open_client
    for client in clients:
        await client.ws.close()
        client.reader.cancel()


async def refused_status(harness: Harness, path: str, **kwargs: Any) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await harness.client.ws_connect(path, **kwargs)
    return refused.value.status


async def test_the_server_opens_with_sync_step_1_and_answers_the_clients(
    harness: Harness, open_ws: Open
) -> None:
    document_id = new_document("ws")
    await grant(harness, document_id, "editor", "write")
    writer = await open_ws(document_id, "editor")
    await writer.insert(0, "hello")
    await eventually(lambda: writer.synced())
    client = await open_ws(document_id, "editor")
    await eventually(lambda: client.synced() and str(client.text) == "hello")
    first, second = client.received[:2]
    assert (first.kind, first.sync_type) == (MESSAGE_SYNC, SYNC_STEP1)
    assert second.kind == MESSAGE_AWARENESS


async def test_two_websocket_clients_converge_and_the_edits_are_logged(
    harness: Harness, open_ws: Open
) -> None:
    document_id = new_document("ws")
    await grant(harness, document_id, "editor", "write")
    await grant(harness, document_id, "author", "write")
    a, b = await open_ws(document_id, "editor"), await open_ws(document_id, "author")
    await eventually(lambda: a.synced() and b.synced())
    for i in range(15):
        await a.insert(len(a.text), f"a{i} ")
        await b.insert(0, f"b{i} ")
    expected = sorted([f"a{i}" for i in range(15)] + [f"b{i}" for i in range(15)])
    await eventually(lambda: str(a.text) == str(b.text) and sorted(str(a.text).split()) == expected)
    rows = await harness.scalar(
        sa.select(sa.func.count())
        .select_from(DocumentUpdate)
        .where(DocumentUpdate.document_id == document_id)
    )
    assert rows >= 30


async def test_a_collab_client_and_a_websocket_client_co_edit(
    harness: Harness, open_ws: Open
) -> None:
    document_id = new_document("ws")
    await grant(harness, document_id, "editor", "write")
    await grant(harness, document_id, "author", "write")
    url = str(harness.client.make_url("/"))
    async with CollabClient(url, harness.tokens["author"], timeout=10) as collab:
        native = await collab.join(document_id)
        native.doc.get("body", type=pycrdt.Text).insert(0, "native ")
        await native.flush()
        ws = await open_ws(document_id, "editor")
        await eventually(lambda: str(ws.text) == "native ")
        await ws.insert(len(ws.text), "websocket")
        await eventually(lambda: native.text() == "native websocket")


async def test_a_read_only_seat_is_ignored_but_still_receives(
    harness: Harness, open_ws: Open
) -> None:
    document_id = new_document("ws")
    await grant(harness, document_id, "editor", "write")
    await grant(harness, document_id, "viewer", "read")
    writer = await open_ws(document_id, "editor")
    await writer.insert(0, "original")
    reader = await open_ws(document_id, "viewer")
    await eventually(lambda: str(reader.text) == "original")
    await reader.insert(0, "vandalism ")  # a sync update from a reader: dropped
    await reader.ws.send_bytes(sync_step2(b"\x00\x00"))
    await writer.insert(len(writer.text), " and more")
    await eventually(lambda: "and more" in str(reader.text))
    assert str(writer.text) == "original and more"
    late = await open_ws(document_id, "editor")
    await eventually(lambda: late.synced())
    assert str(late.text) == "original and more" and not reader.ws.closed


async def test_refusals_happen_before_the_upgrade(harness: Harness) -> None:
    document_id = new_document("ws")
    await grant(harness, document_id, "editor", "write")
    path = f"/ws/{document_id}"
    assert await refused_status(harness, path) == 401
    assert await refused_status(harness, path, params={"token": "rcs_not-a-token"}) == 401
    assert await refused_status(harness, path, params={"token": harness.tokens["viewer"]}) == 403
    foreign = {"Origin": "http://evil.example"}
    token = {"token": harness.tokens["editor"]}
    assert await refused_status(harness, path, params=token, headers=foreign) == 403
    assert await refused_status(harness, "/ws/bad%20id", params=token) == 400
    response = await harness.client.get(path, params=token)
    assert response.status == 400 and (await response.json())["code"] == "websocket_required"


@pytest.mark.parametrize("via", ["bearer", "cookie", "allowed origin"])
async def test_a_token_may_also_come_as_a_header_or_the_session_cookie(
    harness: Harness, via: str
) -> None:
    document_id = new_document("ws")
    await grant(harness, document_id, "editor", "write")
    token = harness.tokens["editor"]
    kwargs: dict[str, Any] = {
        "bearer": {"headers": {"Authorization": f"Bearer {token}"}},
        "cookie": {"headers": {"Cookie": f"rcms_session={token}"}},
        "allowed origin": {
            "params": {"token": token},
            "headers": {"Origin": "http://localhost:8080"},
        },
    }[via]
    ws = await harness.client.ws_connect(f"/ws/{document_id}", **kwargs)
    client = await YClient(ws).start()
    await eventually(client.synced)
    await ws.close()


@pytest.mark.parametrize(
    "frame, code",
    [
        ("text, not binary", 1003),
        (write_var_uint(7), 1003),
        (b"\x02\x00\x02hi", 1003),  # an auth message: only servers send those
        (b"\x00\x00\xff", 1007),  # a truncated varUint
        (b"\x00\x02\x05\x01\x02", 1007),  # a byte array shorter than its length
        (sync_step1(b"\x01\x02"), 1007),  # a malformed state vector
        (sync_update(b"\xff\xff\xff"), 1007),  # an update pycrdt refuses
        (awareness_message(b"\x01\x01\x01\x03{x}"), 1007),  # awareness state that is not JSON
    ],
)
async def test_malformed_frames_close_the_socket_and_others_are_still_served(
    harness: Harness, open_ws: Open, frame: bytes | str, code: int
) -> None:
    document_id = new_document("ws")
    await grant(harness, document_id, "editor", "write")
    bad = await open_ws(document_id, "editor")
    await (bad.ws.send_str(frame) if isinstance(frame, str) else bad.ws.send_bytes(frame))
    assert await bad.closed() == code
    good = await open_ws(document_id, "editor")
    await good.insert(0, "still fine")
    await eventually(good.synced)


@pytest.mark.parametrize("extra", [1, 100])
async def test_an_oversized_frame_is_closed_with_1009(
    harness: Harness, open_ws: Open, extra: int
) -> None:
    document_id = new_document("ws")
    await grant(harness, document_id, "editor", "write")
    client = await open_ws(document_id, "editor")
    limit = harness.app[keys.SETTINGS].collab_max_update_bytes
    await client.ws.send_bytes(sync_update(b"\x00" * (limit + extra)))
    assert await client.closed() == 1009


async def test_awareness_is_relayed_echoed_answered_and_removed_on_disconnect(
    harness: Harness, open_ws: Open
) -> None:
    document_id = new_document("ws")
    await grant(harness, document_id, "editor", "write")
    await grant(harness, document_id, "viewer", "read")
    a, b = await open_ws(document_id, "editor"), await open_ws(document_id, "viewer")
    await eventually(lambda: a.synced() and b.synced())
    sent = {"user": {"name": "editor1"}, "cursor": 3}
    await a.ws.send_bytes(awareness_message(encode_awareness_update([AwarenessEntry(77, 1, sent)])))
    editor = harness.users["editor"]
    # The others get it stamped with the sender's identity; the sender, its own echo.
    state = {"user": {"name": editor.username, "id": editor.id}, "cursor": 3}
    await eventually(lambda: b.awareness.get(77) == state and a.awareness.get(77) == sent)
    late = await open_ws(document_id, "viewer")
    await eventually(lambda: late.awareness.get(77) == state)
    b.awareness.clear()
    b.clocks.clear()  # forget, so that the answer to the query counts
    await b.ws.send_bytes(query_awareness())
    await eventually(lambda: b.awareness.get(77) == state)
    await a.ws.close()
    await eventually(lambda: 77 in b.awareness and b.awareness[77] is None)


async def test_states_a_provider_relays_back_are_ignored_not_refused(
    harness: Harness, open_ws: Open
) -> None:
    """y-websocket providers send the server every awareness change they apply."""
    document_id = new_document("ws")
    await grant(harness, document_id, "editor", "write")
    await grant(harness, document_id, "viewer", "read")
    a, relayer = await open_ws(document_id, "editor"), await open_ws(document_id, "viewer")
    editor = harness.users["editor"]
    state = {"user": {"name": editor.username, "id": editor.id}}
    await a.ws.send_bytes(awareness_message(encode_awareness_update([AwarenessEntry(5, 1, state)])))
    await eventually(lambda: relayer.awareness.get(5) == state)
    for relayed in (state, None):  # a copy, then a local timeout of it
        entry = AwarenessEntry(5, 1, relayed)
        await relayer.ws.send_bytes(awareness_message(encode_awareness_update([entry])))
    late = await open_ws(document_id, "editor")
    await eventually(lambda: late.awareness.get(5) == state)
    await a.ws.close()
    await eventually(lambda: relayer.clocks.get(5) == 2)  # the server removed a's state
    before = len(relayer.received)
    stale = AwarenessEntry(5, 1, state)  # a slow relay of a client that has left
    await relayer.ws.send_bytes(awareness_message(encode_awareness_update([stale])))
    await relayer.ws.send_bytes(query_awareness())
    # Frames are handled in order, so the (empty) answer comes after the relay was.
    await eventually(
        lambda: any(m.payload == b"\x00" for m in relayer.received[before:] if m.kind == 1)
    )
    latest = await open_ws(document_id, "editor")
    await eventually(latest.synced)
    assert 5 not in latest.awareness and relayer.awareness[5] is None
    assert not relayer.ws.closed


async def test_revoked_access_gets_auth_denied_and_close_4403(
    harness: Harness, open_ws: Open
) -> None:
    document_id = new_document("ws")
    await grant(harness, document_id, "viewer", "read")
    client = await open_ws(document_id, "viewer")
    await eventually(client.synced)
    async with transaction(harness.app[keys.SESSIONS]) as db:
        await db.execute(
            sa.delete(DocumentPermission).where(DocumentPermission.document_id == document_id)
        )
    await harness.app[keys.ROOMS].revoke(document_id, harness.users["viewer"].id, None)
    assert await client.closed() == ACCESS_REVOKED
    assert client.denied


async def test_an_ended_session_is_noticed_and_closed_with_4401(harness: Harness) -> None:
    document_id = new_document("ws")
    await grant(harness, document_id, "viewer", "read")
    token = await harness.login("viewer1")
    ws = await harness.client.ws_connect(f"/ws/{document_id}", params={"token": token})
    client = await YClient(ws).start()
    await eventually(client.synced)
    response = await harness.call("POST", "/api/v1/auth/logout", token=token)
    assert response.status < 300
    assert await client.closed() == SESSION_ENDED
    assert client.denied


async def test_too_many_messages_in_a_second_close_with_1008(
    harness: Harness, open_ws: Open
) -> None:
    document_id = new_document("ws")
    await grant(harness, document_id, "editor", "write")
    client = await open_ws(document_id, "editor")
    limit = harness.app[keys.SETTINGS].collab_max_messages_per_second
    with contextlib.suppress(ConnectionError):  # the server may close mid-burst
        for _ in range(2 * limit + 10):
            await client.ws.send_bytes(query_awareness())
    assert await client.closed() == 1008


def test_a_slow_client_is_closed_instead_of_queued_for() -> None:
    peer = WebSocketPeer(Principal(user_id=1, username="u"), limit=3)
    for _ in range(3):
        peer.push(b"frame")
    assert peer.closing is None
    peer.push(b"one too many")
    assert peer.closing == Close(1013, "slow_consumer")
    assert peer.outbox.qsize() == 1 and isinstance(peer.outbox.get_nowait(), Close)


def test_a_denial_is_sent_after_the_queued_frames_and_the_first_close_wins() -> None:
    peer = WebSocketPeer(Principal(user_id=1, username="u"))
    peer.push(b"frame")
    peer.deny("access_revoked")
    peer.deny("session_ended")
    queued = [peer.outbox.get_nowait() for _ in range(peer.outbox.qsize())]
    assert queued[0] == b"frame" and decode_message(queued[1], max_update_bytes=99).kind == 2
    assert queued[2] == Close(ACCESS_REVOKED, "access_revoked")


async def test_a_connection_is_presence_until_it_closes(harness: Harness, open_ws: Open) -> None:
    document_id = new_document("presence")
    await grant(harness, document_id, "editor", "write")
    await grant(harness, document_id, "viewer", "read")
    client = await open_ws(document_id, "editor")
    await open_ws(document_id, "viewer")
    await present_soon(harness, document_id, {"editor1", "viewer1"})
    await client.ws.close()
    await present_soon(harness, document_id, {"viewer1"})


def withheld_and_next(words: tuple[str, str]) -> tuple[bytes, bytes]:
    """Two successive edits of one author: the second depends on the first."""
    author: pycrdt.Doc = pycrdt.Doc()
    text = author.get("body", type=pycrdt.Text)
    text += words[0]
    first = author.get_update()
    before = author.get_state()
    text += words[1]
    return first, author.get_update(before)


async def test_an_update_lacking_dependencies_is_held_and_the_sender_asked_for_them(
    harness: Harness, open_ws: Open
) -> None:
    """The server answers an update it cannot integrate with a sync step 1 (its state
    vector); the provider's sync step 2 brings what the room lacks, and both integrate."""
    document_id = new_document("ws-held")
    await grant(harness, document_id, "editor", "write")
    await grant(harness, document_id, "author", "write")
    writer, other = await open_ws(document_id, "editor"), await open_ws(document_id, "author")
    await eventually(lambda: writer.synced() and other.synced())
    first, second = withheld_and_next(("first", " second"))
    room = harness.app[keys.ROOMS].get(document_id)
    assert room is not None
    # The writer has the first edit (as if its send were lost) and sends only the second.
    writer._remote = True
    writer.doc.apply_update(first)
    writer._remote = False
    asked = sum(m.sync_type == SYNC_STEP1 for m in writer.received if m.kind == MESSAGE_SYNC)
    await writer.ws.send_bytes(sync_update(second))
    await eventually(
        lambda: (
            sum(m.sync_type == SYNC_STEP1 for m in writer.received if m.kind == MESSAGE_SYNC)
            > asked
        )
    )
    await eventually(lambda: str(other.text) == "first second")
    assert room.held_count == 0
    fresh = await open_ws(document_id, "editor")
    await eventually(lambda: fresh.synced() and str(fresh.text) == "first second")
