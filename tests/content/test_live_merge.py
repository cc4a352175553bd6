"""Writes that merge: a socket client types while a REST-style write changes the same item."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pycrdt
import pytest
import sqlalchemy as sa

from handlers import keys
from realtime_cms.content.binding import document_id
from realtime_cms.content.materialize import ContentState
from realtime_cms.db import transaction
from realtime_cms.models.versions import ConflictResolution, Version
from tests.content.test_binding import (
    item_row,
    new_item,
    open_client,
    principal_of,
)
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


ARTICLE = "Intro paragraph.\n\nMiddle paragraph.\n\nClosing paragraph.\n"


async def test_typing_and_a_rest_write_at_the_same_time_both_survive(harness: Harness) -> None:
    item_id = await new_item(harness, body=ARTICLE)
    doc_id = document_id(item_id)
    binding = harness.app[keys.CONTENT]
    editor = await principal_of(harness, "editor")
    client = await open_client(harness)
    try:
        live = await client.join(doc_id)
        text = live.doc.get("body", type=pycrdt.Text)

        async def type_slowly() -> None:
            for position, char in enumerate("Typed. "):
                text.insert(position, char)
                await asyncio.sleep(0.01)
            await live.flush()

        rest_body = ARTICLE.replace("Closing paragraph.", "Closing paragraph, rewritten.")

        async def write() -> None:
            # The REST writer read ARTICLE; saying so (`base`) keeps what others typed since.
            # Without it a write replaces the body as it is when the write lands.
            async with transaction(harness.app[keys.SESSIONS]) as db:
                await binding.write(db, editor, item_id, body=rest_body, base=ContentState(ARTICLE))

        await asyncio.gather(type_slowly(), write())
        expected = "Typed. " + rest_body
        await eventually(lambda: live.text() == expected)
        assert (await binding.current(item_id)).body == expected
        await eventually_body(harness, item_id, expected)
    finally:
        await client.close()
    again = await open_client(harness, "admin")
    try:
        assert (await again.join(doc_id)).text() == expected
    finally:
        await again.close()


async def eventually_body(harness: Harness, item_id: int, expected: str) -> None:
    deadline = asyncio.get_running_loop().time() + 15
    while (await item_row(harness, item_id)).content_body != expected:
        assert asyncio.get_running_loop().time() < deadline, "the body never reached SQL"
        await asyncio.sleep(0.05)


async def test_a_write_based_on_older_content_keeps_what_others_typed_since(
    harness: Harness,
) -> None:
    item_id = await new_item(harness, body=ARTICLE)
    binding = harness.app[keys.CONTENT]
    editor = await principal_of(harness, "editor")
    base = await binding.current(item_id)
    client = await open_client(harness)
    try:
        live = await client.join(document_id(item_id))
        live.doc.get("body", type=pycrdt.Text).insert(0, "Live: ")
        await live.flush()
        # The writer saw `base` and rewrote its end; replacing the text would lose "Live: ".
        wanted = base.body.replace("Closing paragraph.", "The end.")
        async with transaction(harness.app[keys.SESSIONS]) as db:
            state = await binding.write(db, editor, item_id, body=wanted, base=base)
        assert state.body == "Live: " + wanted
        assert (await item_row(harness, item_id)).content_body == "Live: " + wanted
        await eventually(lambda: live.text() == "Live: " + wanted)
    finally:
        await client.close()


async def test_a_field_both_sides_changed_takes_the_write_and_records_the_conflict(
    harness: Harness,
) -> None:
    item_id = await new_item(harness, fields={"rating": 1})
    binding = harness.app[keys.CONTENT]
    editor = await principal_of(harness, "editor")
    base = await binding.current(item_id)
    client = await open_client(harness)
    try:
        live = await client.join(document_id(item_id))
        fields = live.doc.get("fields", type=pycrdt.Map)
        fields["title"], fields["rating"] = "Live title", 2
        await live.flush()
        async with transaction(harness.app[keys.SESSIONS]) as db:
            state = await binding.write(
                db, editor, item_id, fields={"title": "REST title", "rating": 1}, base=base
            )
        # rating: unchanged by the writer (1 as in base), so the live 2 stays.
        assert (state.fields["title"], state.fields["rating"]) == ("REST title", 2)
        await eventually(lambda: fields.get("title") == "REST title")
    finally:
        await client.close()
    async with transaction(harness.app[keys.SESSIONS]) as db:
        rows = (await db.scalars(sa.select(ConflictResolution))).all()
        mine = [
            row
            for row in rows
            if (await db.get(Version, row.version_a_id)).content_id == item_id  # type: ignore[union-attr]
        ]
    assert len(mine) == 1
    assert (mine[0].resolution_method, mine[0].resolved_by) == (
        "last_writer_wins",
        harness.users["editor"].id,
    )
    assert "title" in (mine[0].notes or "")
