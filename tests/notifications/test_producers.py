"""Producers: a document grant, a status change of one's item, a new @mention (once)."""

from __future__ import annotations

import asyncio
from typing import Any

from pycrdt import Doc, Text

from realtime_cms.content.mentions import mentions
from tests.notifications.support import body, new_item, new_user, notifications_of, unique
from tests.support.harness import Harness

ITEMS = "/api/v1/content-items"


def test_mentions_are_usernames_after_an_at_sign() -> None:
    text = "Hi @alice and @bob.smith. Mail carol@example.com, ask @dave-, not @x."
    assert mentions(text) == {"alice", "bob.smith", "dave"}


async def test_a_grant_notifies_the_grantee(harness: Harness) -> None:
    user_id, _ = await new_user(harness, "viewer")
    path = f"/api/v1/documents/notes:{unique('grant')}/permissions/{user_id}"
    response = await harness.call("PUT", path, role="admin", json={"level": "write"})
    await body(response, 200)
    [row] = await notifications_of(harness, user_id)
    assert row.type == "document_grant" and "write" in row.title and "admin1" in row.message
    response = await harness.call("PUT", path, role="admin", json={"level": "write"})
    assert len(await notifications_of(harness, user_id)) == 1


async def test_a_status_change_by_someone_else_notifies_the_author(harness: Harness) -> None:
    author_id, token = await new_user(harness, "author")
    item = await new_item(harness, token)
    response = await harness.call(
        "PATCH", f"{ITEMS}/{item['id']}", role="editor", json={"status": "published"}
    )
    await body(response, 200)
    [row] = await notifications_of(harness, author_id)
    assert row.type == "content_status" and "published" in row.title
    assert "from draft to published" in row.message


async def test_changing_ones_own_items_status_notifies_nobody(harness: Harness) -> None:
    editor_id, token = await new_user(harness, "editor")
    item = await new_item(harness, token)
    response = await harness.call(
        "PATCH", f"{ITEMS}/{item['id']}", token=token, json={"status": "published"}
    )
    await body(response, 200)
    assert await notifications_of(harness, editor_id) == []


async def test_a_new_mention_notifies_readers_once_and_never_the_writer(harness: Harness) -> None:
    writer_id, token = await new_user(harness, "editor")
    reader_id, _ = await new_user(harness, "viewer")
    outsider_id, _ = await new_user(harness)
    names = {
        uid: (await body(await harness.call("GET", f"/api/v1/users/{uid}", role="admin"), 200))[
            "data"
        ]["username"]
        for uid in (writer_id, reader_id, outsider_id)
    }
    item = await new_item(harness, token)
    text = f"Ping @{names[reader_id]}, @{names[outsider_id]} and me @{names[writer_id]}."
    for body_text in (text, text + " Again.", text + " Again and again."):
        response = await harness.call(
            "PATCH", f"{ITEMS}/{item['id']}", token=token, json={"body": body_text}
        )
        await body(response, 200)
    [row] = await notifications_of(harness, reader_id)
    assert row.type == "mention" and names[writer_id] in row.message
    assert await notifications_of(harness, outsider_id) == []
    assert await notifications_of(harness, writer_id) == []


async def test_a_mention_removed_and_added_again_is_a_new_mention(harness: Harness) -> None:
    _, token = await new_user(harness, "editor")
    reader_id, _ = await new_user(harness, "viewer")
    name = (await body(await harness.call("GET", f"/api/v1/users/{reader_id}", role="admin"), 200))[
        "data"
    ]["username"]
    item = await new_item(harness, token)
    for text in (f"cc @{name}", "nobody", f"cc @{name} again"):
        response = await harness.call(
            "PATCH", f"{ITEMS}/{item['id']}", token=token, json={"body": text}
        )
        await body(response, 200)
    assert len(await notifications_of(harness, reader_id)) == 2


async def test_a_mention_typed_live_notifies_once_stored_but_not_its_typist(
    harness: Harness,
) -> None:
    typist_id, token = await new_user(harness, "editor")
    reader_id, _ = await new_user(harness, "viewer")
    name = (await body(await harness.call("GET", f"/api/v1/users/{reader_id}", role="admin"), 200))[
        "data"
    ]["username"]
    item = await new_item(harness, token, text="")
    document = f"/api/v1/documents/content:{item['id']}"
    response = await harness.call("GET", f"{document}/state", token=token)
    doc: Doc = Doc()
    doc.apply_update(await response.read())
    before = doc.get_state()
    text = doc.get("body", type=Text)
    text.insert(len(str(text)), f"Hello @{name} and @{name}")
    response = await harness.call(
        "POST",
        f"{document}/updates",
        token=token,
        data=doc.get_update(before),
        headers={"Content-Type": "application/octet-stream"},
    )
    await body(response, 200)
    found: list[Any] = []

    async def arrived() -> bool:
        found[:] = await notifications_of(harness, reader_id)
        return bool(found)

    deadline = asyncio.get_running_loop().time() + 15
    while not await arrived():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    assert len(found) == 1 and found[0].type == "mention"
    assert await notifications_of(harness, typist_id) == []
