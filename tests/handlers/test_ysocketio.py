"""`/yjs|<document>` namespaces on a real server, driven as y-socket.io's SocketIOProvider does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pycrdt
import pytest
import socketio
import sqlalchemy as sa

from handlers import keys
from realtime_cms.client import CollabClient
from realtime_cms.collab.protocol import (
    AwarenessEntry,
    decode_awareness_update,
    encode_awareness_update,
)
from realtime_cms.db import transaction
from realtime_cms.models.realtime import DocumentPermission
from tests.support.harness import Harness
from tests.support.live import eventually, grant, new_document, present_soon

UNLIMITED = 1 << 30


class YjsClient:
    """A stand-in for y-socket.io's provider: the same events, arguments and acks."""

    def __init__(self, url: str, document_id: str, token: str | None) -> None:
        self.url, self.token = url, token
        self.namespace = f"/yjs|{document_id}"
        self.sio = socketio.AsyncClient(reconnection=False)
        self.doc: pycrdt.Doc = pycrdt.Doc()
        self.text = self.doc.get("body", type=pycrdt.Text)
        self.awareness: dict[int, dict[str, Any] | None] = {}
        self.server_synced = False
        self.disconnected = asyncio.Event()
        self._outgoing: list[bytes] = []
        self._remote = False
        self.doc.observe(self._on_change)
        for event, handler in (
            ("sync-step-1", self._on_sync_step1),
            ("sync-update", self._apply),
            ("awareness-update", self._on_awareness),
            ("disconnect", self._on_disconnect),
        ):
            self.sio.on(event, handler, namespace=self.namespace)

    async def connect(self) -> YjsClient:
        """Connect, then sync as the provider does: `sync-step-1` with an ack."""
        await self.sio.connect(
            self.url,
            namespaces=[self.namespace],
            auth={"token": self.token} if self.token else None,
            transports=["websocket"],
            wait_timeout=10,
        )
        update = await self.emit("sync-step-1", self.doc.get_state(), ack=True)
        self._apply(update)
        return self

    async def emit(self, event: str, payload: Any, *, ack: bool = False) -> Any:
        if ack:
            return await self.sio.call(event, payload, namespace=self.namespace, timeout=10)
        await self.sio.emit(event, payload, namespace=self.namespace)

    async def insert(self, index: int, value: str) -> None:
        self.text.insert(index, value)
        for update in self._outgoing:
            await self.emit("sync-update", update)
        self._outgoing.clear()

    def _on_change(self, event: pycrdt.TransactionEvent) -> None:
        if not self._remote:
            self._outgoing.append(event.update)

    def _on_sync_step1(self, state_vector: bytes) -> bytes:
        self.server_synced = True
        return self.doc.get_update(state_vector)

    def _apply(self, update: bytes) -> None:
        self._remote = True
        self.doc.apply_update(update)
        self._remote = False

    def _on_awareness(self, update: bytes) -> None:
        for entry in decode_awareness_update(update, max_state_bytes=UNLIMITED):
            self.awareness[entry.client_id] = entry.state

    def _on_disconnect(self, reason: Any = None) -> None:
        self.disconnected.set()


Open = Callable[..., Awaitable[YjsClient]]


@pytest.fixture
def url(harness: Harness) -> str:
    return str(harness.client.make_url("/"))


@pytest.fixture
async def open_yjs(url: str, harness: Harness) -> AsyncIterator[Open]:
    clients: list[YjsClient] = []

    async def open_client(document_id: str, role: str, *, connect: bool = True) -> YjsClient:
        client = YjsClient(url, document_id, harness.tokens[role])
        clients.append(client)
        return await client.connect() if connect else client

    yield open_client
    for client in clients:
        if client.sio.connected:
            await client.sio.disconnect()


async def refused(url: str, namespace: str, auth: Any) -> None:
    client = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(
            url, namespaces=[namespace], auth=auth, transports=["websocket"], wait_timeout=5
        )


async def test_both_sides_send_sync_step_1_and_apply_the_acked_update(
    harness: Harness, open_yjs: Open
) -> None:
    document_id = new_document("yjs")
    await grant(harness, document_id, "editor", "write")
    await grant(harness, document_id, "author", "write")
    first = await open_yjs(document_id, "editor")
    await first.insert(0, "server side")
    offline = await open_yjs(document_id, "author", connect=False)
    offline.text.insert(0, "offline edit, ")  # made before connecting: reaches the server by ack
    await offline.connect()
    await eventually(lambda: offline.server_synced and first.server_synced)
    await eventually(lambda: str(first.text) == str(offline.text))
    assert "offline edit" in str(first.text) and "server side" in str(offline.text)


async def test_a_yjs_client_and_a_collab_client_converge(
    harness: Harness, open_yjs: Open, url: str
) -> None:
    document_id = new_document("yjs")
    await grant(harness, document_id, "editor", "write")
    await grant(harness, document_id, "author", "write")
    yjs = await open_yjs(document_id, "editor")
    async with CollabClient(url, harness.tokens["author"], timeout=10) as collab:
        native = await collab.join(document_id)
        native_text = native.doc.get("body", type=pycrdt.Text)
        for i in range(10):
            await yjs.insert(len(yjs.text), f"y{i} ")
            native_text.insert(0, f"c{i} ")
        await native.flush()
        expected = sorted([f"y{i}" for i in range(10)] + [f"c{i}" for i in range(10)])
        await eventually(
            lambda: str(yjs.text) == native.text() and sorted(native.text().split()) == expected
        )


async def test_a_read_only_seat_is_ignored_but_still_receives(
    harness: Harness, open_yjs: Open
) -> None:
    document_id = new_document("yjs")
    await grant(harness, document_id, "editor", "write")
    await grant(harness, document_id, "viewer", "read")
    writer = await open_yjs(document_id, "editor")
    await writer.insert(0, "original")
    reader = await open_yjs(document_id, "viewer", connect=False)
    reader.text.insert(0, "offline vandalism ")  # offered in the ack to the server's step 1
    await reader.connect()
    await eventually(lambda: reader.server_synced and "original" in str(reader.text))
    await reader.insert(0, "more vandalism ")
    await writer.insert(len(writer.text), " and more")
    await eventually(lambda: "and more" in str(reader.text))
    late = await open_yjs(document_id, "editor")
    assert str(late.text) == "original and more" == str(writer.text)
    assert reader.sio.connected


async def test_bad_credentials_and_no_access_are_refused(url: str, harness: Harness) -> None:
    document_id = new_document("yjs")
    await grant(harness, document_id, "editor", "write")
    namespace = f"/yjs|{document_id}"
    await refused(url, namespace, None)
    await refused(url, namespace, {"token": "rcs_not-a-token"})
    await refused(url, namespace, {"token": harness.tokens["viewer"]})
    await refused(url, "/yjs|bad id", {"token": harness.tokens["admin"]})


@pytest.mark.parametrize("namespace", ["/", "/unknown", "/yjs", "/yjsx|doc"])
async def test_other_namespaces_are_refused(url: str, harness: Harness, namespace: str) -> None:
    await refused(url, namespace, {"token": harness.tokens["admin"]})


async def test_awareness_is_relayed_and_removed_on_disconnect(
    harness: Harness, open_yjs: Open
) -> None:
    document_id = new_document("yjs")
    await grant(harness, document_id, "editor", "write")
    await grant(harness, document_id, "viewer", "read")
    a, b = await open_yjs(document_id, "editor"), await open_yjs(document_id, "viewer")
    claimed = {"user": {"name": "someone else"}}
    await a.emit("awareness-update", encode_awareness_update([AwarenessEntry(42, 1, claimed)]))
    editor = harness.users["editor"]
    state = {"user": {"name": editor.username, "id": editor.id}}  # stamped by the server
    await eventually(lambda: b.awareness.get(42) == state)
    late = await open_yjs(document_id, "viewer")
    await eventually(lambda: late.awareness.get(42) == state)
    await a.sio.disconnect()
    await eventually(lambda: 42 in b.awareness and b.awareness[42] is None)


async def test_states_a_provider_relays_back_are_ignored_not_refused(
    harness: Harness, open_yjs: Open
) -> None:
    """y-socket.io providers send the server every awareness change they apply."""
    document_id = new_document("yjs")
    await grant(harness, document_id, "editor", "write")
    await grant(harness, document_id, "viewer", "read")
    a, relayer = await open_yjs(document_id, "editor"), await open_yjs(document_id, "viewer")
    editor = harness.users["editor"]
    state = {"user": {"name": editor.username, "id": editor.id}}
    await a.emit("awareness-update", encode_awareness_update([AwarenessEntry(9, 1, state)]))
    await eventually(lambda: relayer.awareness.get(9) == state)
    for relayed in (state, None):  # a copy, then a local timeout of it
        await relayer.emit(
            "awareness-update", encode_awareness_update([AwarenessEntry(9, 1, relayed)])
        )
    late = await open_yjs(document_id, "editor")
    await eventually(lambda: late.awareness.get(9) == state)
    await a.sio.disconnect()
    await eventually(lambda: 9 in relayer.awareness and relayer.awareness[9] is None)
    await relayer.emit("awareness-update", encode_awareness_update([AwarenessEntry(9, 1, state)]))
    latest = await open_yjs(document_id, "editor")
    await latest.insert(0, "after the relays")
    await eventually(lambda: str(relayer.text) == "after the relays")
    assert 9 not in latest.awareness and relayer.sio.connected


@pytest.mark.parametrize(
    "event, payload",
    [
        ("sync-update", "text, not binary"),
        ("sync-update", b"\xff\xff\xff"),
        ("awareness-update", b"\x01\x01\x01\x03{x}"),
        ("sync-step-1", b"\x01\x02"),
    ],
)
async def test_a_refused_message_drops_the_connection_and_others_are_still_served(
    harness: Harness, open_yjs: Open, event: str, payload: Any
) -> None:
    document_id = new_document("yjs")
    await grant(harness, document_id, "editor", "write")
    bad = await open_yjs(document_id, "editor")
    await bad.emit(event, payload)
    await asyncio.wait_for(bad.disconnected.wait(), 15)
    good = await open_yjs(document_id, "editor")
    await good.insert(0, "still fine")
    check = await open_yjs(document_id, "editor")  # y-socket.io updates carry no ack
    await eventually(lambda: str(check.text) == "still fine")


async def test_revoked_access_disconnects_the_namespace(harness: Harness, open_yjs: Open) -> None:
    document_id = new_document("yjs")
    await grant(harness, document_id, "viewer", "read")
    client = await open_yjs(document_id, "viewer")
    async with transaction(harness.app[keys.SESSIONS]) as db:
        await db.execute(
            sa.delete(DocumentPermission).where(DocumentPermission.document_id == document_id)
        )
    await harness.app[keys.ROOMS].revoke(document_id, harness.users["viewer"].id, None)
    await asyncio.wait_for(client.disconnected.wait(), 15)


async def test_a_connection_is_presence_until_it_closes(harness: Harness, open_yjs: Open) -> None:
    document_id = new_document("presence")
    await grant(harness, document_id, "editor", "write")
    await grant(harness, document_id, "viewer", "read")
    client = await open_yjs(document_id, "editor")
    await open_yjs(document_id, "viewer")
    await present_soon(harness, document_id, {"editor1", "viewer1"})
    await client.sio.disconnect()
    await present_soon(harness, document_id, {"viewer1"})


async def test_an_update_lacking_dependencies_is_held_and_the_sender_asked_for_them(
    harness: Harness, open_yjs: Open
) -> None:
    """The server answers an update it cannot integrate with a `sync-step-1` (its state
    vector); the provider's ack brings what the room lacks, and both integrate."""
    document_id = new_document("yjs-held")
    await grant(harness, document_id, "editor", "write")
    await grant(harness, document_id, "author", "write")
    writer, other = await open_yjs(document_id, "editor"), await open_yjs(document_id, "author")
    await eventually(lambda: writer.server_synced and other.server_synced)
    asked: list[bytes] = []
    answer = writer._on_sync_step1

    def counted(state_vector: bytes) -> bytes:
        asked.append(state_vector)
        return answer(state_vector)

    writer.sio.on("sync-step-1", counted, namespace=writer.namespace)
    author: pycrdt.Doc = pycrdt.Doc()
    text = author.get("body", type=pycrdt.Text)
    text += "first"
    writer._apply(author.get_update())  # the writer has it (as if its send were lost)
    before = author.get_state()
    text += " second"
    await writer.emit("sync-update", author.get_update(before))
    await eventually(lambda: len(asked) == 1)
    await eventually(lambda: str(other.text) == "first second")
    room = harness.app[keys.ROOMS].get(document_id)
    assert room is not None and room.held_count == 0
    fresh = await open_yjs(document_id, "editor")
    await eventually(lambda: str(fresh.text) == "first second")
