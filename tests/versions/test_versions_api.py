"""Versions over REST and /collab: the role matrix, content, diffs, restores, logs."""

from __future__ import annotations

import json
from typing import Any

import pycrdt
import sqlalchemy as sa
from aiohttp import ClientResponse

from handlers import keys
from realtime_cms.client import CollabClient, CollabError
from realtime_cms.content.binding import ContentState
from realtime_cms.db import transaction
from realtime_cms.models.versions import ConflictResolution, Version, VersionHistory
from tests.support.harness import Harness
from tests.versions.conftest import World, new_item, principal_of, save, until

ITEMS = "/api/v1/content-items"


async def body_of(response: ClientResponse, status: int) -> dict[str, Any]:
    body: dict[str, Any] = await response.json(content_type=None)
    assert response.status == status, body
    return body


async def post_version(
    harness: Harness, item_id: int, role: str, status: int, notes: str | None = None
) -> dict[str, Any]:
    response = await harness.call(
        "POST", f"{ITEMS}/{item_id}/versions", role=role, json={"notes": notes}
    )
    return await body_of(response, status)


async def test_viewers_read_authors_save_on_their_own_items_only(
    harness: Harness, world: World
) -> None:
    own = await new_item(harness, world, role="author", body="mine")
    other = await new_item(harness, world, role="editor", body="theirs")
    await post_version(harness, own, "viewer", 403)
    await post_version(harness, other, "author", 403)
    created = (await post_version(harness, own, "author", 201, "first draft"))["data"]
    assert (created["version_number"], created["notes"]) == (1, "first draft")
    assert created["is_autosave"] is False and len(created["content_hash"]) == 64
    await post_version(harness, other, "editor", 201)
    listing = await body_of(
        await harness.call("GET", f"{ITEMS}/{own}/versions", role="viewer"), 200
    )
    assert [entry["id"] for entry in listing["data"]] == [created["id"]]
    detail = await body_of(
        await harness.call("GET", f"{ITEMS}/{own}/versions/{created['id']}", role="viewer"), 200
    )
    assert detail["data"]["content"]["body"] == "mine"
    assert detail["data"]["metadata"]["change_type"] == "manual"
    await body_of(
        await harness.call("GET", f"{ITEMS}/{other}/versions/{created['id']}", role="viewer"), 404
    )
    await body_of(await harness.call("GET", f"{ITEMS}/999999/versions", role="viewer"), 404)


async def test_listing_filters_sorts_and_paginates(harness: Harness, world: World) -> None:
    item_id = await new_item(harness, world)
    for n in range(4):
        await save(harness, item_id, ContentState(body=str(n)), is_autosave=n % 2 == 1)
    path = f"{ITEMS}/{item_id}/versions"
    autosaves = await body_of(
        await harness.call(
            "GET", f"{path}?filter[is_autosave]=true&sort=version_number", role="viewer"
        ),
        200,
    )
    assert [v["version_number"] for v in autosaves["data"]] == [2, 4]
    page = await body_of(await harness.call("GET", f"{path}?limit=1&offset=1", role="viewer"), 200)
    assert page["meta"]["total"] == 4 and [v["version_number"] for v in page["data"]] == [3]
    await body_of(await harness.call("GET", f"{path}?filter[nope]=1", role="viewer"), 400)


async def test_a_diff_has_line_hunks_and_field_changes(harness: Harness, world: World) -> None:
    item_id = await new_item(harness, world)
    old = await save(
        harness, item_id, ContentState(body="a\nb\nc\n", fields={"title": "A", "x": 1})
    )
    new = await save(
        harness, item_id, ContentState(body="a\nB\nc\nd\n", fields={"title": "B", "y": 2})
    )
    response = await harness.call(
        "GET", f"{ITEMS}/{item_id}/versions/diff?from={old}&to={new}", role="viewer"
    )
    data = (await body_of(response, 200))["data"]
    assert data["from_version"]["id"] == old and data["to_version"]["version_number"] == 2
    assert data["hunks"] == [
        {
            "old_start": 1,
            "old_lines": 3,
            "new_start": 1,
            "new_lines": 4,
            "lines": [" a", "-b", "+B", " c", "+d"],
        }
    ]
    assert data["fields"] == [
        {"field": "title", "change": "changed", "old": "A", "new": "B"},
        {"field": "x", "change": "removed", "old": 1, "new": None},
        {"field": "y", "change": "added", "old": None, "new": 2},
    ]
    other = await new_item(harness, world)
    foreign = await save(harness, other, ContentState(body=""))
    response = await harness.call(
        "GET", f"{ITEMS}/{item_id}/versions/diff?from={old}&to={foreign}", role="viewer"
    )
    await body_of(response, 404)
    await body_of(
        await harness.call("GET", f"{ITEMS}/{item_id}/versions/diff?from=1", role="viewer"), 422
    )


async def test_an_editor_restores_and_the_restoration_is_logged(
    harness: Harness, world: World
) -> None:
    item_id = await new_item(harness, world, role="author", body="original")
    first = (await post_version(harness, item_id, "author", 201))["data"]
    await harness.app[keys.CONTENT].current(item_id)
    async with transaction(harness.app[keys.SESSIONS]) as db:
        await harness.app[keys.CONTENT].write(
            db, principal_of(harness, "admin"), item_id, body="changed later"
        )
    restore = f"{ITEMS}/{item_id}/versions/{first['id']}/restore"
    await body_of(await harness.call("POST", restore, role="viewer"), 403)
    await body_of(await harness.call("POST", restore, role="author"), 403)
    restored = (await body_of(await harness.call("POST", restore, role="editor"), 201))["data"]
    assert restored["notes"] == "Restored from version 1" and restored["version_number"] == 2
    assert restored["content_hash"] == first["content_hash"]
    assert (await harness.app[keys.CONTENT].current(item_id)).body == "original"
    log = await body_of(
        await harness.call("GET", f"{ITEMS}/{item_id}/restorations", role="viewer"), 200
    )
    [entry] = log["data"]
    assert (entry["status"], entry["version_id"]) == ("completed", first["id"])
    assert entry["user_id"] == harness.users["editor"].id
    assert json.loads(entry["previous_data"])["body"] == "changed later"


async def test_conflicts_list_the_records_naming_the_items_versions(
    harness: Harness, world: World
) -> None:
    item_id = await new_item(harness, world)
    a = await save(harness, item_id, ContentState(body="a"))
    b = await save(harness, item_id, ContentState(body="b"))
    async with transaction(harness.app[keys.SESSIONS]) as db:
        db.add(
            ConflictResolution(
                version_a_id=a,
                version_b_id=b,
                conflict_type="field",
                resolution_method="last_writer_wins",
                resolved_by=harness.users["editor"].id,
            )
        )
    listing = await body_of(
        await harness.call("GET", f"{ITEMS}/{item_id}/conflicts", role="viewer"), 200
    )
    assert [(c["version_a_id"], c["version_b_id"]) for c in listing["data"]] == [(a, b)]


async def test_the_change_log_needs_audit_view_and_filters_by_entity(harness: Harness) -> None:
    async with transaction(harness.app[keys.SESSIONS]) as db:
        db.add(
            VersionHistory(
                entity_type="tag",
                entity_id=77,
                version_number=1,
                change_type="create",
                new_value="{}",
            )
        )
    query = "/api/v1/history?filter[entity_type][eq]=tag&filter[entity_id][eq]=77"
    await body_of(await harness.call("GET", query, role="editor"), 403)
    rows = (await body_of(await harness.call("GET", query, role="admin"), 200))["data"]
    assert [(r["entity_type"], r["entity_id"], r["change_type"]) for r in rows] == [
        ("tag", 77, "create")
    ]


async def test_a_collab_writer_saves_a_version_and_a_reader_cannot(
    harness: Harness, world: World
) -> None:
    item_id = await new_item(harness, world, role="author", body="live")
    url = str(harness.client.make_url("/"))
    document = f"content:{item_id}"
    async with (
        CollabClient(url, harness.tokens["author"], timeout=10) as writer,
        CollabClient(url, harness.tokens["viewer"], timeout=10) as reader,
    ):
        await writer.join(document)
        await reader.join(document)
        ack = await writer.call("save_version", {"document": document, "notes": "from the editor"})
        assert ack["data"]["notes"] == "from the editor" and ack["data"]["content_id"] == item_id
        try:
            await reader.call("save_version", {"document": document})
        except CollabError as exc:
            assert exc.code == "read_only"
        else:
            raise AssertionError("a reader saved a version")
    assert (
        await harness.scalar(sa.select(sa.func.count()).where(Version.content_id == item_id)) == 1
    )


async def test_restoring_while_two_clients_type_keeps_their_later_typing(
    harness: Harness, world: World
) -> None:
    item_id = await new_item(harness, world, role="editor", body="Version one.\n")
    first = (await post_version(harness, item_id, "editor", 201))["data"]
    url = str(harness.client.make_url("/"))
    document = f"content:{item_id}"
    async with (
        CollabClient(url, harness.tokens["editor"], timeout=10) as alice,
        CollabClient(url, harness.tokens["admin"], timeout=10) as bob,
    ):
        docs = [await alice.join(document), await bob.join(document)]
        _type(docs[0], 0, "Alice was here. ")
        await docs[0].flush()
        response = await harness.call(
            "POST", f"{ITEMS}/{item_id}/versions/{first['id']}/restore", role="editor"
        )
        await body_of(response, 201)
        await until(lambda: _settled(docs, "Version one.\n"))
        _type(docs[0], 0, "A2 ")
        _type(docs[1], len(docs[1].text()), "B2")
        await docs[0].flush()
        await docs[1].flush()
        final = await until(lambda: _settled(docs, None))
    assert final == "A2 Version one.\nB2"


def _type(document: Any, index: int, text: str) -> None:
    document.doc.get("body", type=pycrdt.Text).insert(index, text)


async def _settled(docs: list[Any], expected: str | None) -> str | None:
    texts = {doc.text() for doc in docs}
    if len(texts) != 1:
        return None
    [text] = texts
    return text if expected is None or text == expected else None
