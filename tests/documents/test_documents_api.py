"""Documents over REST: JSON reads, binary state and diffs, and updates that join live editing."""

from __future__ import annotations

import base64
from typing import Any

import pycrdt
import sqlalchemy as sa

from handlers import keys
from realtime_cms.models.realtime import DocumentUpdate
from tests.documents.conftest import Connect
from tests.support.harness import Harness
from tests.support.live import eventually, grant, new_document

OCTET_STREAM = {"Content-Type": "application/octet-stream"}


def path(document_id: str, tail: str = "") -> str:
    return f"/api/v1/documents/{document_id}{tail}"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def body_of(response: Any, status: int) -> Any:
    body = await response.json(content_type=None)
    assert response.status == status, body
    return body


async def read(harness: Harness, document_id: str, role: str = "admin") -> dict[str, Any]:
    data: dict[str, Any] = (
        await body_of(await harness.call("GET", path(document_id), role=role), 200)
    )["data"]
    return data


async def download(harness: Harness, document_id: str, query: str = "") -> bytes:
    response = await harness.call("GET", path(document_id, f"/state{query}"), role="admin")
    assert response.status == 200, await response.text()
    assert response.content_type == "application/octet-stream"
    return await response.read()


async def post_update(
    harness: Harness, document_id: str, update: bytes, role: str = "editor"
) -> Any:
    return await harness.call(
        "POST", path(document_id, "/updates"), role=role, data=update, headers=OCTET_STREAM
    )


def edit(text: str) -> bytes:
    doc: pycrdt.Doc = pycrdt.Doc()
    doc.get("body", type=pycrdt.Text).insert(0, text)
    return doc.get_update()


def doc_of(update: bytes) -> pycrdt.Doc:
    doc: pycrdt.Doc = pycrdt.Doc()
    doc.apply_update(update)
    return doc


def text_of(doc: pycrdt.Doc) -> str:
    return str(doc.get("body", type=pycrdt.Text))


async def log_rows(harness: Harness, document_id: str) -> int:
    count = sa.select(sa.func.count()).where(DocumentUpdate.document_id == document_id)
    return int(await harness.scalar(count))


# JSON reads


async def test_the_json_read_shows_what_a_socket_client_wrote(
    harness: Harness, connect: Connect
) -> None:
    document_id = new_document("rest")
    await grant(harness, document_id, "editor", "write")
    live = await (await connect("editor")).join(document_id)
    live.doc.get("body", type=pycrdt.Text).insert(0, "hello from a socket")
    fields = live.doc.get("fields", type=pycrdt.Map)
    fields["title"], fields["count"], fields["tags"] = "Hello", 3, pycrdt.Array(["a", "b"])
    await live.flush()
    data = await read(harness, document_id, role="editor")
    assert data["text"] == "hello from a socket"
    assert data["fields"] == {"title": "Hello", "count": 3, "tags": ["a", "b"]}
    assert (data["id"], data["is_content"], data["content_item_id"]) == (document_id, False, None)
    assert (data["level"], data["loaded"], data["peers"]) == ("write", True, 1)
    assert data["log"]["rows"] >= 1 and data["log"]["bytes"] > 0


async def test_a_document_that_is_not_open_is_read_from_the_store(harness: Harness) -> None:
    document_id = new_document("rest")
    await harness.app[keys.ROOMS].store.append(document_id, edit("stored only"))
    data = await read(harness, document_id)
    assert (data["text"], data["fields"], data["loaded"], data["peers"]) == (
        "stored only",
        {},
        False,
        0,
    )
    assert data["snapshot"] is None and data["log"]["rows"] == 1
    assert harness.app[keys.ROOMS].get(document_id) is None


async def test_a_compacted_document_reports_its_snapshot(harness: Harness) -> None:
    document_id = new_document("rest")
    store = harness.app[keys.ROOMS].store
    await store.append(document_id, edit("compacted"))
    await store.compact(document_id)
    data = await read(harness, document_id)
    assert data["text"] == "compacted" and data["log"]["rows"] == 0
    assert data["snapshot"]["update_count"] == 1 and data["snapshot"]["bytes"] > 0


async def test_a_document_nobody_wrote_or_granted_is_not_found(harness: Harness) -> None:
    response = await harness.call("GET", path(new_document("ghost")), role="admin")
    assert (await body_of(response, 404))["code"] == "document_not_found"


async def test_no_access_is_refused_without_leaking_content(harness: Harness) -> None:
    document_id = new_document("secret")
    await grant(harness, document_id, "editor", "write")
    await body_of(await post_update(harness, document_id, edit("top secret")), 200)
    for tail in ("", "/state", "/presence"):
        response = await harness.call("GET", path(document_id, tail), role="author")
        raw = await response.read()
        assert response.status == 403 and b"top secret" not in raw, tail
        assert (await response.json(content_type=None))["code"] == "no_access"


# Binary state


async def test_the_state_download_round_trips_into_a_pycrdt_doc(
    harness: Harness, connect: Connect
) -> None:
    document_id = new_document("state")
    await grant(harness, document_id, "editor", "write")
    live = await (await connect("editor")).join(document_id)
    live.doc.get("body", type=pycrdt.Text).insert(0, "round trip")
    await live.flush()
    copy = doc_of(await download(harness, document_id))
    assert text_of(copy) == "round trip"
    assert copy.get_state() == live.doc.get_state()


async def test_a_state_vector_gets_only_the_missing_changes(harness: Harness) -> None:
    document_id = new_document("state")
    await grant(harness, document_id, "editor", "write")
    await body_of(await post_update(harness, document_id, edit("first " * 200)), 200)
    mine = doc_of(await download(harness, document_id))
    ahead = doc_of(await download(harness, document_id))
    ahead.get("body", type=pycrdt.Text).insert(0, "second ")
    await body_of(await post_update(harness, document_id, ahead.get_update(mine.get_state())), 200)
    full = await download(harness, document_id)
    diff = await download(harness, document_id, f"?state_vector={b64url(mine.get_state())}")
    assert len(diff) < len(full)
    mine.apply_update(diff)
    assert text_of(mine) == "second " + "first " * 200


async def test_a_malformed_state_vector_is_a_bad_request(harness: Harness) -> None:
    document_id = new_document("state")
    await grant(harness, document_id, "editor", "read")
    for vector in ("!!!", b64url(b"\x02\x01"), b64url(b"\x00junk")):
        response = await harness.call(
            "GET", path(document_id, f"/state?state_vector={vector}"), role="admin"
        )
        assert (await body_of(response, 400))["code"] == "invalid_state_vector", vector
    response = await harness.call("GET", path(document_id, "/state?other=1"), role="admin")
    await body_of(response, 422)


# Updates over REST


async def test_a_posted_update_is_durable_and_reaches_live_clients(
    harness: Harness, connect: Connect
) -> None:
    document_id = new_document("post")
    await grant(harness, document_id, "editor", "write")
    await grant(harness, document_id, "viewer", "read")
    watcher = await (await connect("viewer")).join(document_id)
    response = await post_update(harness, document_id, edit("posted over REST"))
    accepted = (await body_of(response, 200))["data"]
    assert accepted["document_id"] == document_id and accepted["state_vector"]
    assert await log_rows(harness, document_id) == 1
    await eventually(lambda: watcher.text() == "posted over REST")
    room = harness.app[keys.ROOMS].get(document_id)
    assert room is not None and len(room.peers) == 1  # the REST caller left its seat


async def test_a_post_to_a_document_that_is_not_open_loads_it(harness: Harness) -> None:
    document_id = new_document("post")
    await grant(harness, document_id, "editor", "write")
    await body_of(await post_update(harness, document_id, edit("cold start")), 200)
    assert (await read(harness, document_id))["text"] == "cold start"


async def test_a_garbage_body_is_an_invalid_update(harness: Harness) -> None:
    document_id = new_document("post")
    await grant(harness, document_id, "editor", "write")
    for garbage in (b"\xff" * 64, b"garbage", b"", edit("cut short")[:-3]):
        body = await body_of(await post_update(harness, document_id, garbage), 400)
        assert body["code"] == "invalid_update"
    assert await log_rows(harness, document_id) == 0


async def test_an_oversized_update_is_refused(harness: Harness) -> None:
    document_id = new_document("post")
    await grant(harness, document_id, "editor", "write")
    limit = harness.app[keys.SETTINGS].collab_max_update_bytes
    body = await body_of(await post_update(harness, document_id, b"\x00" * (limit + 1)), 413)
    assert body["code"] == "update_too_large"


async def test_an_update_must_be_sent_as_octet_stream(harness: Harness) -> None:
    document_id = new_document("post")
    await grant(harness, document_id, "editor", "write")
    response = await harness.call(
        "POST", path(document_id, "/updates"), role="editor", json={"update": "x"}
    )
    assert (await body_of(response, 415))["code"] == "unsupported_media_type"


async def test_a_reader_cannot_post_updates(harness: Harness) -> None:
    document_id = new_document("post")
    await grant(harness, document_id, "viewer", "read")
    body = await body_of(await post_update(harness, document_id, edit("x"), role="viewer"), 403)
    assert body["code"] == "read_only"
    assert await log_rows(harness, document_id) == 0


async def test_a_stranger_cannot_post_updates(harness: Harness) -> None:
    document_id = new_document("post")
    await grant(harness, document_id, "editor", "write")
    body = await body_of(await post_update(harness, document_id, edit("x"), role="author"), 403)
    assert body["code"] == "no_access"


# The OpenAPI description


async def test_openapi_describes_document_ids_as_strings_and_state_as_binary(
    harness: Harness,
) -> None:
    document = await body_of(await harness.call("GET", "/api/v1/openapi.json"), 200)
    state = document["paths"]["/api/v1/documents/{document_id}/state"]["get"]
    (param,) = [p for p in state["parameters"] if p["in"] == "path"]
    assert param["schema"]["type"] == "string"
    assert set(state["responses"]["200"]["content"]) == {"application/octet-stream"}
    post = document["paths"]["/api/v1/documents/{document_id}/updates"]["post"]
    assert set(post["requestBody"]["content"]) == {"application/octet-stream"}
