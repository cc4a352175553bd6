"""Remember-me rotation and personal API tokens: scopes, listing, expiry and revocation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from handlers.auth_context import REMEMBER_COOKIE, SESSION_COOKIE
from realtime_cms.models.auth import ApiToken, RememberToken
from realtime_cms.models.base import utcnow
from realtime_cms.security.tokens import hash_token
from tests.accounts.support import browser, execute, new_api_token, post_login, unique
from tests.support.harness import PASSWORD, Harness


async def remember_login(harness: Harness, name: str) -> dict[str, Any]:
    response = await post_login(harness, name, remember=True)
    assert response.status == 200
    data: dict[str, Any] = (await response.json())["data"]
    return data


async def exchange(harness: Harness, token: str) -> Any:
    return await harness.client.post("/api/v1/auth/remember", json={"token": token})


async def test_a_remember_login_sets_a_scoped_httponly_remember_cookie(harness: Harness) -> None:
    name = unique()
    await harness.add_user(name, "viewer")
    response = await post_login(harness, name, remember=True)
    body = (await response.json())["data"]
    cookie = response.cookies[REMEMBER_COOKIE]
    assert body["remember_token"].startswith("rcr_") and cookie.value == body["remember_token"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and int(cookie["max-age"]) > 0


async def test_remember_tokens_rotate_and_the_old_one_is_rejected(harness: Harness) -> None:
    name = unique()
    await harness.add_user(name, "viewer")
    first = (await remember_login(harness, name))["remember_token"]
    response = await exchange(harness, first)
    body = (await response.json())["data"]
    assert response.status == 200
    assert body["remember_token"] != first and body["user"]["username"] == name
    assert (await harness.call("GET", "/api/v1/auth/me", token=body["token"])).status == 200
    replay = await exchange(harness, first)
    assert replay.status == 401 and (await replay.json())["code"] == "invalid_token"
    assert (await exchange(harness, body["remember_token"])).status == 200


async def test_the_remember_cookie_alone_resumes_a_browser_session(harness: Harness) -> None:
    name = unique()
    await harness.add_user(name, "viewer")
    async with browser(harness) as client:
        login = {"login": name, "password": PASSWORD, "remember": True}
        await client.post("/api/v1/auth/login", json=login)
        client.cookie_jar.clear(lambda cookie: cookie.key == SESSION_COOKIE)
        response = await client.post("/api/v1/auth/remember", json={})
        assert response.status == 200
        assert (await response.json())["data"]["user"]["username"] == name
        assert (await client.get("/api/v1/auth/me")).status == 200


async def test_an_expired_remember_token_is_rejected(harness: Harness) -> None:
    name = unique()
    await harness.add_user(name, "viewer")
    token = (await remember_login(harness, name))["remember_token"]
    await execute(
        harness,
        sa.update(RememberToken)
        .where(RememberToken.token == hash_token(token))
        .values(expires_at=utcnow() - timedelta(seconds=1)),
    )
    assert (await exchange(harness, token)).status == 401


async def test_remember_exchange_rejects_missing_and_unknown_tokens(harness: Harness) -> None:
    assert (await harness.client.post("/api/v1/auth/remember", json={})).status == 401
    assert (await exchange(harness, "rcr_unknown")).status == 401


async def test_logout_forgets_the_remember_token_of_this_client(harness: Harness) -> None:
    name = unique()
    await harness.add_user(name, "viewer")
    async with browser(harness) as client:
        login = {"login": name, "password": PASSWORD, "remember": True}
        body = (await (await client.post("/api/v1/auth/login", json=login)).json())["data"]
        assert (await client.post("/api/v1/auth/logout")).status == 204
        assert not list(client.cookie_jar)
    assert (await exchange(harness, body["remember_token"])).status == 401
    assert (await harness.call("GET", "/api/v1/auth/me", token=body["token"])).status == 401


async def test_an_api_token_carries_only_its_scopes(harness: Harness) -> None:
    name = unique()
    await harness.add_user(name, "editor")
    session = await harness.login(name)
    response = await new_api_token(harness, session, ["content.view", "users.view"])
    created = (await response.json())["data"]
    assert response.status == 201 and created["token"].startswith(created["prefix"])
    me = (await (await harness.call("GET", "/api/v1/auth/me", token=created["token"])).json())[
        "data"
    ]
    assert me["permissions"] == ["content.view", "users.view"]
    assert (await harness.call("GET", "/api/v1/users", token=created["token"])).status == 200
    assert (await harness.call("GET", "/api/v1/audit-log", token=created["token"])).status == 403


async def test_token_scopes_must_be_known_and_held(harness: Harness) -> None:
    session = harness.tokens["author"]
    not_held = await new_api_token(harness, session, ["users.manage"])
    unknown = await new_api_token(harness, session, ["no.such.permission"])
    empty = await new_api_token(harness, session, [])
    assert not_held.status == 403 and (await not_held.json())["code"] == "scope_not_held"
    assert unknown.status == 400 and (await unknown.json())["code"] == "invalid_scope"
    assert empty.status == 422


async def test_listing_tokens_shows_the_prefix_but_never_the_token(harness: Harness) -> None:
    name = unique()
    await harness.add_user(name, "viewer")
    session = await harness.login(name)
    created = (await (await new_api_token(harness, session, ["content.view"])).json())["data"]
    response = await harness.call("GET", "/api/v1/auth/tokens", token=session)
    body = await response.json()
    assert body["meta"]["total"] == 1
    [listed] = body["data"]
    assert listed["prefix"] == created["prefix"] and listed["name"] == "ci"
    assert "token" not in listed and "token_hash" not in listed
    assert created["token"] not in await response.text()


async def test_a_revoked_token_stops_working(harness: Harness) -> None:
    name = unique()
    await harness.add_user(name, "viewer")
    session = await harness.login(name)
    created = (await (await new_api_token(harness, session, ["content.view"])).json())["data"]
    path = f"/api/v1/auth/tokens/{created['id']}"
    assert (await harness.call("DELETE", path, token=session)).status == 204
    assert (await harness.call("GET", "/api/v1/auth/me", token=created["token"])).status == 401


async def test_only_the_owner_or_a_user_manager_may_revoke_a_token(harness: Harness) -> None:
    name = unique()
    await harness.add_user(name, "viewer")
    session = await harness.login(name)
    created = (await (await new_api_token(harness, session, ["content.view"])).json())["data"]
    path = f"/api/v1/auth/tokens/{created['id']}"
    assert (await harness.call("DELETE", path, role="editor")).status == 404
    assert (await harness.call("GET", "/api/v1/auth/me", token=created["token"])).status == 200
    assert (await harness.call("DELETE", path, role="admin")).status == 204
    assert (await harness.call("GET", "/api/v1/auth/me", token=created["token"])).status == 401


async def test_an_expired_api_token_is_rejected(harness: Harness) -> None:
    name = unique()
    await harness.add_user(name, "viewer")
    session = await harness.login(name)
    soon = (utcnow() + timedelta(hours=1)).isoformat()
    created = (
        await (await new_api_token(harness, session, ["content.view"], expires_at=soon)).json()
    )["data"]
    assert (await harness.call("GET", "/api/v1/auth/me", token=created["token"])).status == 200
    await execute(
        harness,
        sa.update(ApiToken)
        .where(ApiToken.id == created["id"])
        .values(expires_at=utcnow() - timedelta(seconds=1)),
    )
    assert (await harness.call("GET", "/api/v1/auth/me", token=created["token"])).status == 401


async def test_a_token_cannot_expire_in_the_past(harness: Harness) -> None:
    past = (utcnow() - timedelta(hours=1)).isoformat()
    response = await new_api_token(
        harness, harness.tokens["viewer"], ["content.view"], expires_at=past
    )
    assert response.status == 400


async def test_an_api_token_cannot_mint_more_tokens(harness: Harness) -> None:
    name = unique()
    await harness.add_user(name, "viewer")
    session = await harness.login(name)
    created = (await (await new_api_token(harness, session, ["content.view"])).json())["data"]
    response = await new_api_token(harness, created["token"], ["content.view"])
    assert response.status == 403 and (await response.json())["code"] == "session_required"


async def test_using_an_api_token_records_when_it_was_last_used(harness: Harness) -> None:
    name = unique()
    await harness.add_user(name, "viewer")
    session = await harness.login(name)
    created = (await (await new_api_token(harness, session, ["content.view"])).json())["data"]
    await harness.call("GET", "/api/v1/auth/me", token=created["token"])
    used = await harness.scalar(
        sa.select(ApiToken.last_used_at).where(ApiToken.id == created["id"])
    )
    assert used is not None


async def user_manager_role(harness: Harness) -> str:
    """A new role holding users.view and users.manage only."""
    name = unique()
    body = {"name": name, "permissions": ["users.view", "users.manage"]}
    assert (await harness.call("POST", "/api/v1/roles", role="admin", json=body)).status == 201
    return name


async def test_a_user_manager_cannot_revoke_the_api_token_of_someone_holding_more(
    harness: Harness,
) -> None:
    name = unique()
    await harness.add_user(name, "editor")
    created = await new_api_token(harness, await harness.login(name), ["content.view"])
    api_token = (await created.json())["data"]
    manager = unique()
    await harness.add_user(manager, await user_manager_role(harness))
    path = f"/api/v1/auth/tokens/{api_token['id']}"
    response = await harness.call("DELETE", path, token=await harness.login(manager))
    assert response.status == 403
    assert (await response.json())["code"] == "target_outranks_you"
    me = await harness.call("GET", "/api/v1/auth/me", token=api_token["token"])
    assert me.status == 200


async def test_document_scopes_are_accepted_without_being_permissions(harness: Harness) -> None:
    name = unique()
    await harness.add_user(name, "viewer")
    session = await harness.login(name)
    response = await new_api_token(harness, session, ["documents.write", "documents.read"])
    created = (await response.json())["data"]
    assert response.status == 201, created
    assert created["scopes"] == ["documents.read", "documents.write"]
    me = await harness.call("GET", "/api/v1/auth/me", token=created["token"])
    assert (await me.json())["data"]["permissions"] == []


async def test_the_documents_admin_scope_must_be_held_like_any_permission(
    harness: Harness,
) -> None:
    refused = await new_api_token(harness, harness.tokens["editor"], ["documents.admin"])
    assert refused.status == 403 and (await refused.json())["code"] == "scope_not_held"
    granted = await new_api_token(harness, harness.tokens["admin"], ["documents.admin"])
    assert granted.status == 201


async def test_the_openapi_document_explains_what_token_scopes_do(harness: Harness) -> None:
    document = await (await harness.call("GET", "/api/v1/openapi.json")).json()
    schemas = document["components"]["schemas"]
    for model in ("ApiTokenCreate", "ApiTokenOut"):
        described = schemas[model]["properties"]["scopes"]["description"]
        assert "documents.read" in described and "documents.write" in described, model
