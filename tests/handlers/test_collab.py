"""The `/collab` namespace on a real server: sync, durability, permissions, bad input."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from unittest.mock import ANY

import pycrdt
import pytest
import socketio
import sqlalchemy as sa

from handlers import keys
from realtime_cms.client import CollabClient, CollabError
from realtime_cms.models.realtime import DocumentUpdate
from tests.support.harness import Harness
from tests.support.live import eventually, grant, new_document


@pytest.fixture
def url(harness: Harness) -> str:
    return str(harness.client.make_url("/"))


@pytest.fixture
async def connect(
    url: str, harness: Harness
) -> AsyncIterator[Callable[..., Awaitable[CollabClient]]]:
    clients: list[CollabClient] = []

    async def open_client(
        role: str, token: str | None = None, *, msgpack: bool = False
    ) -> CollabClient:
        client = CollabClient(url, token or harness.tokens[role], timeout=10, msgpack=msgpack)
        await client.connect()
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        if client.sio.connected:
            await client.sio.disconnect()


async def test_connecting_without_a_valid_token_is_refused(url: str) -> None:
    for auth in ({"token": "rcs_not-a-real-token"}, {}, None):
        client = socketio.AsyncClient(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(
                url, namespaces=["/collab"], auth=auth, transports=["websocket"], wait_timeout=5
            )


async def test_a_foreign_origin_is_refused(url: str, harness: Harness) -> None:
    client = CollabClient(url, harness.tokens["admin"], timeout=5)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(headers={"Origin": "http://evil.example"})


async def test_the_servers_own_origin_is_accepted_without_being_listed(
    url: str, harness: Harness
) -> None:
    own = url.rstrip("/")
    assert own not in harness.app[keys.SETTINGS].allowed_origins
    client = CollabClient(url, harness.tokens["admin"], timeout=5)
    await client.connect(headers={"Origin": own})
    try:
        assert client.sio.connected
    finally:
        await client.close()


async def test_two_writers_converge_and_every_acked_edit_is_in_the_log(
    harness: Harness, connect: Callable[..., Awaitable[CollabClient]]
) -> None:
    document_id = new_document("collab")
    await grant(harness, document_id, "editor", "write")
    await grant(harness, document_id, "author", "write")
    a, b = await connect("editor"), await connect("author")
    doc_a, doc_b = await a.join(document_id), await b.join(document_id)
    text_a, text_b = (
        doc_a.doc.get("body", type=pycrdt.Text),
        doc_b.doc.get("body", type=pycrdt.Text),
    )
    for i in range(20):
        text_a.insert(len(text_a), f"a{i} ")
        text_b.insert(0, f"b{i} ")
    await doc_a.flush()
    await doc_b.flush()
    assert not doc_a.errors and not doc_b.errors
    expected = sorted([f"a{i}" for i in range(20)] + [f"b{i}" for i in range(20)])
    await eventually(
        lambda: doc_a.text() == doc_b.text() and sorted(doc_a.text().split()) == expected
    )
    rows = await harness.scalar(
        sa.select(sa.func.count())
        .select_from(DocumentUpdate)
        .where(DocumentUpdate.document_id == document_id)
    )
    assert rows == 40


async def test_msgpack_and_json_clients_edit_one_document_together(
    harness: Harness, connect: Callable[..., Awaitable[CollabClient]]
) -> None:
    document_id = new_document("collab")
    await grant(harness, document_id, "editor", "write")
    await grant(harness, document_id, "author", "write")
    packed, plain = await connect("editor", msgpack=True), await connect("author")
    doc_packed, doc_plain = await packed.join(document_id), await plain.join(document_id)
    doc_packed.doc.get("body", type=pycrdt.Text).insert(0, "packed ")
    doc_plain.doc.get("body", type=pycrdt.Text).insert(0, "plain ")
    await doc_packed.flush()
    await doc_plain.flush()
    assert not doc_packed.errors and not doc_plain.errors
    await eventually(lambda: doc_packed.text() == doc_plain.text())
    assert sorted(doc_packed.text().split()) == ["packed", "plain"]
    late = await (await connect("admin", msgpack=True)).join(document_id)
    assert late.text() == doc_plain.text()


async def test_the_msgpack_endpoint_refuses_what_the_json_one_refuses(
    url: str, harness: Harness, connect: Callable[..., Awaitable[CollabClient]]
) -> None:
    foreign = CollabClient(url, harness.tokens["admin"], timeout=5, msgpack=True)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await foreign.connect(headers={"Origin": "http://evil.example"})
    anonymous = CollabClient(url, "rcs_not-a-real-token", timeout=5, msgpack=True)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await anonymous.connect()
    client = await connect("viewer", msgpack=True)
    for event, payload in (("update", {"document": "x"}), ("join", 42), ("nope", {})):
        reply = await client.sio.call(event, payload, namespace="/collab", timeout=10)
        assert reply["ok"] is False and reply["error"]["code"], (event, reply)


async def test_a_late_joiner_receives_the_whole_document(
    harness: Harness, connect: Callable[..., Awaitable[CollabClient]]
) -> None:
    document_id = new_document("collab")
    await grant(harness, document_id, "editor", "write")
    await grant(harness, document_id, "viewer", "read")
    writer = await (await connect("editor")).join(document_id)
    writer.doc.get("body", type=pycrdt.Text).insert(0, "hello world")
    await writer.flush()
    reader = await (await connect("viewer")).join(document_id)
    assert reader.role == "read" and reader.text() == "hello world"


async def test_a_read_only_seat_cannot_change_the_document(
    harness: Harness, connect: Callable[..., Awaitable[CollabClient]]
) -> None:
    document_id = new_document("collab")
    await grant(harness, document_id, "editor", "write")
    await grant(harness, document_id, "viewer", "read")
    writer = await (await connect("editor")).join(document_id)
    writer.doc.get("body", type=pycrdt.Text).insert(0, "original")
    await writer.flush()
    viewer_client = await connect("viewer")
    await viewer_client.join(document_id)
    forged = pycrdt.Doc()
    forged.get("body", type=pycrdt.Text).insert(0, "vandalism")
    with pytest.raises(CollabError) as refused:
        await viewer_client.call("update", {"document": document_id, "update": forged.get_update()})
    assert refused.value.code == "read_only"
    await asyncio.sleep(0.2)
    assert writer.text() == "original"


async def test_no_access_and_not_joined_leak_nothing(
    harness: Harness, connect: Callable[..., Awaitable[CollabClient]]
) -> None:
    secret, mine = new_document("collab"), new_document("collab")
    await grant(harness, secret, "editor", "write")
    await grant(harness, mine, "author", "write")
    owner = await (await connect("editor")).join(secret)
    owner.doc.get("body", type=pycrdt.Text).insert(0, "secret text")
    await owner.flush()
    intruder = await connect("author")
    with pytest.raises(CollabError) as denied:
        await intruder.join(secret)
    assert denied.value.code == "no_access"
    await intruder.join(mine)
    forged = pycrdt.Doc()
    forged.get("body", type=pycrdt.Text).insert(0, "x")
    with pytest.raises(CollabError) as not_joined:
        await intruder.call("update", {"document": secret, "update": forged.get_update()})
    assert not_joined.value.code == "not_joined"
    assert all(document_id != secret for document_id, _ in intruder.awareness)
    assert owner.text() == "secret text"


@pytest.mark.parametrize(
    "event, payload",
    [
        ("join", "not an object"),
        ("join", {"document": 5}),
        ("join", {"document": "bad id with spaces"}),
        ("join", {"document": "notes:x", "state_vector": "text"}),
        ("update", {"document": "notes:never-joined", "update": b"\x00"}),
        ("nonsense", {}),
        ("leave", None),
    ],
)
async def test_malformed_events_get_an_error_ack(
    event: str, payload: Any, connect: Callable[..., Awaitable[CollabClient]]
) -> None:
    client = await connect("admin")
    reply = await client.sio.call(event, payload, namespace="/collab", timeout=10)
    assert reply["ok"] is False and reply["error"]["code"] and reply["error"]["message"]


async def test_garbage_updates_are_refused_and_change_nothing(
    harness: Harness, connect: Callable[..., Awaitable[CollabClient]]
) -> None:
    document_id = new_document("collab")
    await grant(harness, document_id, "editor", "write")
    client = await connect("editor")
    doc = await client.join(document_id)
    doc.doc.get("body", type=pycrdt.Text).insert(0, "stable")
    await doc.flush()
    valid = doc.doc.get_update()
    refused = 0
    for garbage in (b"", b"\xff" * 64, valid[:-3], b"\x01" * 40, bytes(range(256))):
        payload = {"document": document_id, "update": garbage}
        reply = await client.sio.call("update", payload, namespace="/collab")
        refused += reply["ok"] is False
        # A structurally valid update (even a delete of unknown items) may be taken; it
        # must never change what the document says.
        observer = await (await connect("admin")).join(document_id)
        assert observer.text() == "stable", garbage
    assert refused >= 3


@pytest.mark.parametrize("event", ["connect", "disconnect"])
async def test_a_client_event_named_like_a_lifecycle_event_is_refused(
    harness: Harness, connect: Callable[..., Awaitable[CollabClient]], event: str
) -> None:
    document_id = new_document("reserved")
    await grant(harness, document_id, "editor", "write")
    client = await connect("editor")
    doc = await client.join(document_id)
    answer = await client.sio.call(event, {"document": document_id}, namespace="/collab")
    assert answer == {"ok": False, "error": {"code": "unknown_event", "message": ANY}}
    doc.doc.get("body", type=pycrdt.Text).insert(0, "still seated")
    await doc.flush()
    assert not doc.errors
