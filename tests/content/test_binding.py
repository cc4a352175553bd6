"""Content documents and SQL: deterministic seeds, debounced materialization, validation, close."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pycrdt
import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from handlers import keys
from handlers.app import create_app
from realtime_cms.client import CollabClient
from realtime_cms.collab.manager import RoomLimits, RoomManager
from realtime_cms.collab.protocol import decode_awareness_update
from realtime_cms.collab.store import UpdateStore
from realtime_cms.content.binding import (
    SERVER_CLIENT_ID,
    ContentBinding,
    ContentState,
    document_id,
    initial_update,
)
from realtime_cms.db import transaction
from realtime_cms.documents.service import RestPeer, apply_update
from realtime_cms.errors import Forbidden, Unprocessable
from realtime_cms.models.content import ContentItem, ContentType, CustomField, CustomFieldValue
from realtime_cms.models.realtime import DocumentSnapshot, DocumentUpdate
from realtime_cms.models.sites import Site
from realtime_cms.principal import Principal
from realtime_cms.rbac.service import permissions_for
from realtime_cms.versions.service import CONTENT_VERSIONS
from tests.support.harness import Harness, make_settings, start_harness
from tests.support.live import eventually


@pytest.fixture(scope="module")
async def harness(database_url: str, redis_url: str | None) -> AsyncIterator[Harness]:
    """This module's server stores content documents 50 ms after edits pause."""
    settings = make_settings(database_url, redis_url, content_store_debounce_seconds=0.05)
    h = await start_harness(settings)
    try:
        yield h
    finally:
        await h.client.close()


async def new_item(
    harness: Harness, *, body: str = "Hello world", fields: dict[str, Any] | None = None
) -> int:
    """A fresh site, content type (a `rating` number 0..5 and a `meta` JSON field) and item."""
    token = uuid.uuid4().hex[:10]
    async with transaction(harness.app[keys.SESSIONS]) as db:
        site = Site(name=f"site {token}", domain=f"{token}.example.com")
        ctype = ContentType(name=f"type {token}", slug=f"type-{token}")
        db.add_all([site, ctype])
        await db.flush()
        rating = CustomField(
            content_type_id=ctype.id,
            field_name="rating",
            field_label="Rating",
            field_type="number",
            options=json.dumps({"min": 0, "max": 5}),
        )
        meta = CustomField(
            content_type_id=ctype.id, field_name="meta", field_label="Meta", field_type="json"
        )
        item = ContentItem(
            site_id=site.id,
            content_type_id=ctype.id,
            author_id=harness.users["author"].id,
            title=f"Title {token}",
            slug=f"item-{token}",
            content_body=body,
        )
        db.add_all([rating, meta, item])
        await db.flush()
        for name, value in (fields or {}).items():
            field_id = rating.id if name == "rating" else meta.id
            db.add(
                CustomFieldValue(
                    content_item_id=item.id, custom_field_id=field_id, field_value=json.dumps(value)
                )
            )
        return item.id


async def principal_of(harness: Harness, role: str) -> Principal:
    user = harness.users[role]
    async with transaction(harness.app[keys.SESSIONS]) as db:
        roles, permissions = await permissions_for(db, user.id)
    return Principal(user_id=user.id, username=user.username, permissions=permissions, roles=roles)


async def item_row(harness: Harness, item_id: int) -> ContentItem:
    async with transaction(harness.app[keys.SESSIONS]) as db:
        item = await db.get(ContentItem, item_id)
        assert item is not None
        return item


async def stored_value(harness: Harness, item_id: int, name: str) -> Any:
    query = (
        sa.select(CustomFieldValue.field_value)
        .join(CustomField, CustomField.id == CustomFieldValue.custom_field_id)
        .where(CustomFieldValue.content_item_id == item_id, CustomField.field_name == name)
    )
    text = await harness.scalar(query)
    return None if text is None else json.loads(text)


async def open_client(harness: Harness, role: str = "editor") -> CollabClient:
    client = CollabClient(str(harness.client.make_url("/")), harness.tokens[role], timeout=10)
    await client.connect()
    return client


def validation_seen(client: CollabClient, doc_id: str) -> dict[str, str] | None:
    """The latest validation state of the server's client id this client received."""
    latest: dict[str, str] | None = None
    for document, update in client.awareness:
        for entry in decode_awareness_update(update, max_state_bytes=1 << 16):
            if document == doc_id and entry.client_id == SERVER_CLIENT_ID and entry.state:
                latest = entry.state["validation"]
    return latest


# Seeding


SEED_STATE = ContentState(
    "Héllo 😀 world",
    {"title": "T", "slug": "t", "meta": {"b": [1, {"y": 2, "x": 1}], "a": None, "c": "d"}},
)
_SEED_SCRIPT = """
from realtime_cms.content.binding import ContentState, initial_update
state = ContentState("Héllo 😀 world",
    {"title": "T", "slug": "t", "meta": {"b": [1, {"y": 2, "x": 1}], "a": None, "c": "d"}})
print(initial_update(state).hex())
"""


def test_two_processes_seed_an_item_with_identical_bytes_that_merge_to_one_copy() -> None:
    hashed = {"PYTHONHASHSEED": "random"}
    runs = [
        subprocess.run(
            [sys.executable, "-c", _SEED_SCRIPT], capture_output=True, text=True, env=hashed
        )
        for _ in range(2)
    ]
    seeds = [bytes.fromhex(run.stdout.strip()) for run in runs]
    assert seeds[0] == seeds[1] == initial_update(SEED_STATE)
    doc: pycrdt.Doc = pycrdt.Doc()
    doc.apply_update(seeds[0])
    doc.apply_update(seeds[1])
    assert str(doc.get("body", type=pycrdt.Text)) == "Héllo 😀 world"
    assert doc.get("fields", type=pycrdt.Map).to_py()["meta"]["b"][1] == {"x": 1.0, "y": 2.0}


async def test_two_nodes_loading_a_new_item_together_seed_it_once(harness: Harness) -> None:
    item_id = await new_item(harness, body="Only once", fields={"rating": 4})
    doc_id = document_id(item_id)
    settings = harness.app[keys.SETTINGS]
    other = TestClient(TestServer(create_app(settings)))
    await other.start_server()
    try:
        peers = [RestPeer(await principal_of(harness, "admin")) for _ in range(2)]
        apps = [harness.app, other.app]
        await asyncio.gather(
            *(
                app[keys.ROOMS].join(doc_id, peer, "read")
                for app, peer in zip(apps, peers, strict=True)
            )
        )
        for app, peer in zip(apps, peers, strict=True):
            state = await app[keys.CONTENT].current(item_id)
            assert (state.body, state.fields["rating"]) == ("Only once", 4)
            await app[keys.ROOMS].leave(doc_id, peer)
    finally:
        await other.close()
    snapshots = sa.select(sa.func.count()).where(DocumentSnapshot.document_id == doc_id)
    assert await harness.scalar(snapshots) == 1
    state = await harness.app[keys.CONTENT].current(item_id)
    assert state.body == "Only once"


async def test_an_item_never_opened_reads_from_sql(harness: Harness) -> None:
    item_id = await new_item(harness, body="From SQL", fields={"meta": {"k": [1, 2]}})
    state = await harness.app[keys.CONTENT].current(item_id)
    row = await item_row(harness, item_id)
    assert state == ContentState(
        "From SQL", {"title": row.title, "slug": row.slug, "meta": {"k": [1, 2]}}
    )
    assert harness.app[keys.ROOMS].get(document_id(item_id)) is None


# Materializing


async def test_live_edits_reach_sql_once_typing_pauses(harness: Harness) -> None:
    item_id = await new_item(harness)
    client = await open_client(harness)
    try:
        live = await client.join(document_id(item_id))
        assert live.text() == "Hello world"
        live.doc.get("body", type=pycrdt.Text).insert(5, ",")
        fields = live.doc.get("fields", type=pycrdt.Map)
        fields["title"], fields["rating"] = "New title", 3
        fields["meta"] = pycrdt.Map({"nested": [1, 2]})
        await live.flush()

        async def stored() -> tuple[Any, ...]:
            row = await item_row(harness, item_id)
            values = [await stored_value(harness, item_id, n) for n in ("rating", "meta")]
            return (row.content_body, row.title, *values)

        await eventually_async(
            lambda: stored(), ("Hello, world", "New title", 3, {"nested": [1, 2]})
        )
    finally:
        await client.close()


async def eventually_async(read: Any, expected: Any, within: float = 15.0) -> None:
    """Poll an async read until it returns `expected` (a bound, never a timing assertion)."""
    deadline = asyncio.get_running_loop().time() + within
    while (value := await read()) != expected:
        assert asyncio.get_running_loop().time() < deadline, f"{value!r} != {expected!r}"
        await asyncio.sleep(0.05)


async def test_an_unloaded_document_is_materialized_even_before_its_pause(
    harness: Harness,
) -> None:
    item_id = await new_item(harness)
    doc_id = document_id(item_id)
    sessions = harness.app[keys.SESSIONS]
    limits = RoomLimits(idle_unload_seconds=0.05)
    editor = await principal_of(harness, "editor")
    # A node of its own, whose pause is an hour: only the unload can write the row.
    async with (
        UpdateStore(sessions) as store,
        RoomManager(store, limits) as rooms,
        ContentBinding(
            rooms,
            sessions,
            debounce_seconds=3600,
            max_wait_seconds=3600,
            versions=CONTENT_VERSIONS,
        ) as binding,
    ):
        state = await binding.current(item_id)
        # The seed is the SQL content's, so an edit made on it applies on the seeded document.
        edit: pycrdt.Doc = pycrdt.Doc()
        edit.apply_update(initial_update(state))
        before = edit.get_state()
        edit.get("body", type=pycrdt.Text).insert(0, "Unloaded: ")
        await apply_update(rooms, editor, doc_id, "write", edit.get_update(before))
        await eventually(lambda: rooms.get(doc_id) is None)
        await eventually_async(lambda: _body(harness, item_id), "Unloaded: Hello world", within=15)


async def _body(harness: Harness, item_id: int) -> str | None:
    return (await item_row(harness, item_id)).content_body


async def test_an_invalid_value_stays_out_of_sql_and_editors_see_why(harness: Harness) -> None:
    item_id = await new_item(harness, fields={"rating": 2})
    doc_id = document_id(item_id)
    client = await open_client(harness)
    try:
        live = await client.join(doc_id)
        fields = live.doc.get("fields", type=pycrdt.Map)
        fields["rating"] = 9
        fields["slug"] = "Not A Slug"
        await live.flush()
        await eventually(lambda: set(validation_seen(client, doc_id) or {}) == {"rating", "slug"})
        assert "at most 5" in (validation_seen(client, doc_id) or {})["rating"]
        row = await item_row(harness, item_id)
        assert row.slug.startswith("item-") and await stored_value(harness, item_id, "rating") == 2
        fields["rating"], fields["slug"] = 5, "a-fine-slug"
        await live.flush()
        await eventually(lambda: validation_seen(client, doc_id) == {})
        assert await stored_value(harness, item_id, "rating") == 5
        assert (await item_row(harness, item_id)).slug == "a-fine-slug"
    finally:
        await client.close()


# Closing


async def test_closing_a_deleted_item_drops_its_sessions_and_its_document(
    harness: Harness,
) -> None:
    item_id = await new_item(harness)
    doc_id = document_id(item_id)
    client = await open_client(harness, "admin")
    try:
        live = await client.join(doc_id)
        live.doc.get("body", type=pycrdt.Text).insert(0, "x")
        await live.flush()
        async with transaction(harness.app[keys.SESSIONS]) as db:
            await db.execute(sa.delete(ContentItem).where(ContentItem.id == item_id))
        await harness.app[keys.CONTENT].close(item_id)
        await eventually(lambda: (doc_id, None) in client.permissions)
        assert harness.app[keys.ROOMS].get(doc_id) is None
        for model in (DocumentUpdate, DocumentSnapshot):
            count = sa.select(sa.func.count()).where(model.document_id == doc_id)
            assert await harness.scalar(count) == 0
    finally:
        await client.close()


async def test_a_write_with_invalid_values_is_refused_before_it_touches_the_document(
    harness: Harness,
) -> None:
    item_id = await new_item(harness)
    binding = harness.app[keys.CONTENT]
    before = await binding.current(item_id)
    editor = await principal_of(harness, "editor")
    with pytest.raises(Unprocessable) as caught:
        async with transaction(harness.app[keys.SESSIONS]) as db:
            fields = {"rating": 9, "title": " ", "unknown": 1, "excerpt": "fine"}
            await binding.write(db, editor, item_id, body="changed", fields=fields)
    assert [error["loc"][-1] for error in caught.value.errors] == ["rating", "title", "unknown"]
    assert await binding.current(item_id) == before


async def test_a_reader_cannot_write(harness: Harness) -> None:
    item_id = await new_item(harness)
    viewer = await principal_of(harness, "viewer")
    with pytest.raises(Forbidden):
        async with transaction(harness.app[keys.SESSIONS]) as db:
            await harness.app[keys.CONTENT].write(db, viewer, item_id, body="nope")
    assert (await harness.app[keys.CONTENT].current(item_id)).body == "Hello world"


@pytest.mark.needs_redis
async def test_closing_an_item_drops_its_sessions_on_every_node(harness: Harness) -> None:
    """Nodes hear of a removal through Redis; without it there is one process (embedded)."""
    item_id = await new_item(harness)
    doc_id = document_id(item_id)
    other = TestClient(TestServer(create_app(harness.app[keys.SETTINGS])))
    await other.start_server()
    client = CollabClient(str(other.make_url("/")), harness.tokens["editor"], timeout=10)
    try:
        await client.connect()
        await client.join(doc_id)
        async with transaction(harness.app[keys.SESSIONS]) as db:
            await db.execute(sa.delete(ContentItem).where(ContentItem.id == item_id))
        await harness.app[keys.CONTENT].close(item_id)
        await eventually(lambda: (doc_id, None) in client.permissions)
    finally:
        await client.close()
        await other.close()
