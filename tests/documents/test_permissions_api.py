"""Document grants over REST: who may manage them, the audit trail, live seats changing at once."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pycrdt
import pytest

from handlers import keys
from realtime_cms.client import CollabClient, CollabError
from realtime_cms.models.auth import User
from tests.documents.conftest import Connect
from tests.support.harness import Harness
from tests.support.live import eventually, grant, new_document


async def signed_in_with(harness: Harness, *permissions: str) -> tuple[User, str]:
    """A new user whose one custom role holds `permissions`, and their session."""
    role = f"custom-{uuid.uuid4().hex[:8]}"
    created = await harness.call(
        "POST", "/api/v1/roles", role="admin", json={"name": role, "permissions": permissions}
    )
    await body_of(created, 201)
    user = await harness.add_user(f"user-{uuid.uuid4().hex[:8]}", role)
    return user, await harness.login(user.username)


def grants_path(document_id: str, user_id: int | None = None) -> str:
    path = f"/api/v1/documents/{document_id}/permissions"
    return path if user_id is None else f"{path}/{user_id}"


async def body_of(response: Any, status: int) -> Any:
    body = await response.json(content_type=None)
    assert response.status == status, body
    return body


async def put_level(
    harness: Harness, document_id: str, user_id: int, level: str, *, as_role: str = "admin"
) -> Any:
    return await harness.call(
        "PUT", grants_path(document_id, user_id), role=as_role, json={"level": level}
    )


async def listed(harness: Harness, document_id: str) -> dict[int, str]:
    response = await harness.call("GET", grants_path(document_id), role="admin")
    return {row["user_id"]: row["level"] for row in (await body_of(response, 200))["data"]}


def an_edit(text: str) -> bytes:
    doc: pycrdt.Doc = pycrdt.Doc()
    doc.get("body", type=pycrdt.Text).insert(0, text)
    return doc.get_update()


async def send_edit(client: CollabClient, document_id: str) -> None:
    await client.call("update", {"document": document_id, "update": an_edit("x")})


# Granting, changing, revoking


async def test_an_admin_grants_changes_and_revokes_a_level(harness: Harness) -> None:
    document_id, author = new_document("grants"), harness.users["author"]
    # Content keeps the document known once its last grant is gone.
    await harness.app[keys.ROOMS].store.append(document_id, an_edit("kept"))
    granted = (await body_of(await put_level(harness, document_id, author.id, "read"), 200))["data"]
    assert (granted["user_id"], granted["username"], granted["level"]) == (
        author.id,
        author.username,
        "read",
    )
    assert granted["granted_at"]
    await body_of(await put_level(harness, document_id, author.id, "write"), 200)
    assert await listed(harness, document_id) == {author.id: "write"}
    response = await harness.call("DELETE", grants_path(document_id, author.id), role="admin")
    assert response.status == 204
    assert await listed(harness, document_id) == {}


async def test_revoking_a_grant_that_does_not_exist_is_not_found(harness: Harness) -> None:
    document_id = new_document("grants")
    await grant(harness, document_id, "editor", "read")
    path = grants_path(document_id, harness.users["author"].id)
    body = await body_of(await harness.call("DELETE", path, role="admin"), 404)
    assert body["code"] == "grant_not_found"


async def test_granting_to_an_unknown_user_or_an_unknown_level_is_refused(
    harness: Harness,
) -> None:
    document_id = new_document("grants")
    await body_of(await put_level(harness, document_id, 987_654, "read"), 404)
    bad = await put_level(harness, document_id, harness.users["author"].id, "owner")
    assert (await body_of(bad, 422))["code"] == "validation_failed"


async def test_a_content_body_of_a_missing_item_cannot_be_granted(harness: Harness) -> None:
    response = await put_level(harness, "content:987654", harness.users["author"].id, "read")
    assert (await body_of(response, 404))["code"] == "document_not_found"


async def test_a_malformed_document_id_is_a_bad_request(harness: Harness) -> None:
    for document_id in ("content:007", "content:abc"):
        response = await harness.call("GET", grants_path(document_id), role="admin")
        assert (await body_of(response, 400))["code"] == "invalid_document_id"


# Who may manage grants


async def test_a_document_admin_manages_its_grants(harness: Harness) -> None:
    document_id = new_document("grants")
    await grant(harness, document_id, "author", "admin")
    viewer = harness.users["viewer"]
    await body_of(await put_level(harness, document_id, viewer.id, "read", as_role="author"), 200)
    response = await harness.call("GET", grants_path(document_id), role="author")
    assert {row["user_id"] for row in (await body_of(response, 200))["data"]} == {
        harness.users["author"].id,
        viewer.id,
    }


async def test_users_manage_alone_grants_no_level_not_even_to_oneself(harness: Harness) -> None:
    manager, token = await signed_in_with(harness, "users.view", "users.manage")
    document_id = new_document("grants")
    await grant(harness, document_id, "viewer", "read")
    for method, path, body in (
        ("PUT", grants_path(document_id, manager.id), {"level": "admin"}),
        ("PUT", grants_path(document_id, harness.users["viewer"].id), {"level": "admin"}),
        ("DELETE", grants_path(document_id, harness.users["viewer"].id), None),
        ("GET", grants_path(document_id), None),
    ):
        response = await harness.call(method, path, token=token, json=body)
        assert (await body_of(response, 403))["code"] == "no_access", (method, path)
    assert await listed(harness, document_id) == {harness.users["viewer"].id: "read"}


async def test_writers_and_strangers_may_not_manage_grants(harness: Harness) -> None:
    document_id = new_document("grants")
    await grant(harness, document_id, "author", "write")
    target = harness.users["viewer"].id
    for role, code in (("author", "permission_denied"), ("editor", "no_access")):
        for method, path, body in (
            ("GET", grants_path(document_id), None),
            ("PUT", grants_path(document_id, target), {"level": "read"}),
            ("DELETE", grants_path(document_id, harness.users["author"].id), None),
        ):
            response = await harness.call(method, path, role=role, json=body)
            assert (await body_of(response, 403))["code"] == code, (role, method)
    assert await listed(harness, document_id) == {harness.users["author"].id: "write"}


async def test_every_change_is_audited_with_the_document_in_the_details(
    harness: Harness,
) -> None:
    document_id, author = new_document("audit"), harness.users["author"]
    await body_of(await put_level(harness, document_id, author.id, "read"), 200)
    await body_of(await put_level(harness, document_id, author.id, "write"), 200)
    await harness.call("DELETE", grants_path(document_id, author.id), role="admin")
    response = await harness.call(
        "GET", "/api/v1/audit-log?filter[entity_type]=document&limit=200", role="admin"
    )
    entries = [
        (entry["action_type"], json.loads(entry["details"]))
        for entry in (await body_of(response, 200))["data"]
    ]
    mine = [(action, d) for action, d in entries if d["document_id"] == document_id]
    assert [(action, d.get("previous"), d["level"]) for action, d in reversed(mine)] == [
        ("document.grant", None, "read"),
        ("document.grant", "read", "write"),
        ("document.revoke", None, "write"),
    ]
    assert all(d["user_id"] == author.id for _, d in mine)


async def test_granting_the_same_level_again_changes_and_audits_nothing(
    harness: Harness,
) -> None:
    document_id, author = new_document("audit"), harness.users["author"]
    for _ in range(2):
        await body_of(await put_level(harness, document_id, author.id, "read"), 200)
    response = await harness.call(
        "GET", "/api/v1/audit-log?filter[action_type]=document.grant&limit=200", role="admin"
    )
    details = [json.loads(entry["details"]) for entry in (await body_of(response, 200))["data"]]
    assert sum(d["document_id"] == document_id for d in details) == 1


# Live seats


async def seated_writer(harness: Harness, connect: Connect, document_id: str) -> CollabClient:
    await body_of(await put_level(harness, document_id, harness.users["author"].id, "write"), 200)
    client = await connect("author")
    await client.join(document_id)
    await send_edit(client, document_id)
    return client


async def test_a_downgraded_seat_is_told_and_its_next_update_is_read_only(
    harness: Harness, connect: Connect
) -> None:
    document_id = new_document("live")
    client = await seated_writer(harness, connect, document_id)
    await body_of(await put_level(harness, document_id, harness.users["author"].id, "read"), 200)
    await eventually(lambda: (document_id, "read") in client.permissions)
    with pytest.raises(CollabError) as refused:
        await send_edit(client, document_id)
    assert refused.value.code == "read_only"


async def test_a_revoked_seat_is_told_and_its_next_update_is_not_joined(
    harness: Harness, connect: Connect
) -> None:
    document_id = new_document("live")
    client = await seated_writer(harness, connect, document_id)
    path = grants_path(document_id, harness.users["author"].id)
    assert (await harness.call("DELETE", path, role="admin")).status == 204
    await eventually(lambda: (document_id, None) in client.permissions)
    with pytest.raises(CollabError) as refused:
        await send_edit(client, document_id)
    assert refused.value.code == "not_joined"


async def test_an_upgraded_reader_may_write_at_once(harness: Harness, connect: Connect) -> None:
    document_id = new_document("live")
    author = harness.users["author"]
    await body_of(await put_level(harness, document_id, author.id, "read"), 200)
    client = await connect("author")
    await client.join(document_id)
    await body_of(await put_level(harness, document_id, author.id, "write"), 200)
    await eventually(lambda: (document_id, "write") in client.permissions)
    await send_edit(client, document_id)


async def test_revoking_a_grant_keeps_a_level_rbac_still_gives(
    harness: Harness, connect: Connect
) -> None:
    document_id = new_document("live")
    await body_of(await put_level(harness, document_id, harness.users["admin"].id, "read"), 200)
    client = await connect("admin")
    document = await client.join(document_id)
    assert document.role == "admin"  # documents.admin outranks the grant
    path = grants_path(document_id, harness.users["admin"].id)
    assert (await harness.call("DELETE", path, role="admin")).status == 204
    await send_edit(client, document_id)
    assert (document_id, None) not in client.permissions


# API tokens: their scopes cap the level on every document


async def api_token(harness: Harness, session: str, *scopes: str) -> str:
    response = await harness.call(
        "POST", "/api/v1/auth/tokens", token=session, json={"name": "ci", "scopes": scopes}
    )
    return str((await body_of(response, 201))["data"]["token"])


async def granted_owner(harness: Harness, document_id: str, level: str) -> tuple[User, str]:
    """A new user holding `level` on the document through a grant, and their session."""
    user, session = await signed_in_with(harness, "sites.view")
    await body_of(await put_level(harness, document_id, user.id, level), 200)
    return user, session


async def post_edit(harness: Harness, document_id: str, token: str) -> Any:
    return await harness.call(
        "POST",
        f"/api/v1/documents/{document_id}/updates",
        token=token,
        data=an_edit("x"),
        headers={"Content-Type": "application/octet-stream"},
    )


async def test_a_token_without_document_scopes_reaches_no_granted_document(
    harness: Harness,
) -> None:
    document_id = new_document("cap")
    owner, session = await granted_owner(harness, document_id, "admin")
    token = await api_token(harness, session, "sites.view")
    for response in (
        await harness.call("GET", f"/api/v1/documents/{document_id}", token=token),
        await post_edit(harness, document_id, token),
        await harness.call("GET", grants_path(document_id), token=token),
        await harness.call(
            "PUT", grants_path(document_id, owner.id), token=token, json={"level": "admin"}
        ),
    ):
        assert (await body_of(response, 403))["code"] == "no_access"
    assert await listed(harness, document_id) == {owner.id: "admin"}


async def test_a_documents_read_token_reads_but_neither_writes_nor_grants(
    harness: Harness,
) -> None:
    document_id = new_document("cap")
    owner, session = await granted_owner(harness, document_id, "admin")
    token = await api_token(harness, session, "documents.read")
    read = await harness.call("GET", f"/api/v1/documents/{document_id}", token=token)
    assert (await body_of(read, 200))["data"]["level"] == "read"
    assert (await body_of(await post_edit(harness, document_id, token), 403))["code"] == "read_only"
    regrant = await harness.call(
        "PUT", grants_path(document_id, owner.id), token=token, json={"level": "admin"}
    )
    assert (await body_of(regrant, 403))["code"] == "permission_denied"


async def test_a_documents_write_token_writes_but_cannot_manage_grants(harness: Harness) -> None:
    document_id = new_document("cap")
    _, session = await granted_owner(harness, document_id, "admin")
    token = await api_token(harness, session, "documents.write")
    read = await harness.call("GET", f"/api/v1/documents/{document_id}", token=token)
    assert (await body_of(read, 200))["data"]["level"] == "write"
    await body_of(await post_edit(harness, document_id, token), 200)
    listing = await harness.call("GET", grants_path(document_id), token=token)
    assert (await body_of(listing, 403))["code"] == "permission_denied"


async def test_a_document_scope_never_raises_a_level_above_the_owners(harness: Harness) -> None:
    document_id = new_document("cap")
    _, session = await granted_owner(harness, document_id, "read")
    token = await api_token(harness, session, "documents.write")
    read = await harness.call("GET", f"/api/v1/documents/{document_id}", token=token)
    assert (await body_of(read, 200))["data"]["level"] == "read"
    assert (await body_of(await post_edit(harness, document_id, token), 403))["code"] == "read_only"


async def test_the_cap_applies_to_levels_that_content_rbac_gives(harness: Harness) -> None:
    document_id = f"content:{await content_item(harness)}"
    session = harness.tokens["editor"]
    unscoped = await api_token(harness, session, "content.view", "content.update")
    read_only = await api_token(
        harness, session, "content.view", "content.update", "documents.read"
    )
    path = f"/api/v1/documents/{document_id}"
    response = await harness.call("GET", path, token=unscoped)
    assert (await body_of(response, 403))["code"] == "no_access"
    response = await harness.call("GET", path, token=read_only)
    assert (await body_of(response, 200))["data"]["level"] == "read"
    response = await harness.call("GET", path, role="editor")
    assert (await body_of(response, 200))["data"]["level"] == "write"


async def test_a_documents_admin_token_of_an_admin_administers_any_document(
    harness: Harness,
) -> None:
    document_id = new_document("cap")
    await grant(harness, document_id, "viewer", "read")
    token = await api_token(harness, harness.tokens["admin"], "documents.admin")
    await body_of(await harness.call("GET", grants_path(document_id), token=token), 200)
    await body_of(await put_level(harness, document_id, harness.users["author"].id, "read"), 200)


async def test_a_read_scoped_token_joins_a_live_document_read_only(
    harness: Harness, connect: Connect
) -> None:
    document_id = new_document("cap")
    _, session = await granted_owner(harness, document_id, "write")
    client = await connect("", token=await api_token(harness, session, "documents.read"))
    assert (await client.join(document_id)).role == "read"
    with pytest.raises(CollabError) as refused:
        await send_edit(client, document_id)
    assert refused.value.code == "read_only"


async def content_item(harness: Harness) -> int:
    """A new content item (on a new site and type), created by the editor."""
    tag = uuid.uuid4().hex[:8]
    site = await harness.call(
        "POST",
        "/api/v1/sites",
        role="admin",
        json={"name": f"Site {tag}", "domain": f"s{tag}.example.com"},
    )
    kind = await harness.call(
        "POST", "/api/v1/content-types", role="admin", json={"name": f"Type {tag}"}
    )
    item = await harness.call(
        "POST",
        "/api/v1/content-items",
        role="editor",
        json={
            "site_id": (await body_of(site, 201))["data"]["id"],
            "content_type_id": (await body_of(kind, 201))["data"]["id"],
            "title": f"Item {tag}",
        },
    )
    return int((await body_of(item, 201))["data"]["id"])
