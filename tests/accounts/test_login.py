"""Signing in and out: answers, cookies, identical failures, audit, throttling, session expiry."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import ClientResponse

from handlers import keys
from handlers.auth_context import SESSION_COOKIE
from realtime_cms.models.analytics import AuditLog
from realtime_cms.models.auth import User
from realtime_cms.models.base import utcnow
from realtime_cms.models.realtime import UserSession
from realtime_cms.security.tokens import hash_token
from tests.accounts.support import browser, execute, post_login, unique
from tests.support.harness import PASSWORD, Harness

SECRET_FIELDS = {"password", "password_reset_token", "password_reset_expires"}


async def problem_of(response: ClientResponse) -> dict[str, Any]:
    """The parts of a problem document that must not depend on the request."""
    body = await response.json()
    return {
        "http": response.status,
        **{k: body[k] for k in ("type", "title", "status", "detail", "code")},
    }


async def test_login_by_username_answers_a_bearer_token_and_the_user(harness: Harness) -> None:
    name = unique()
    await harness.add_user(name, "author")
    response = await post_login(harness, name)
    body = (await response.json())["data"]
    assert response.status == 200
    assert body["token"].startswith("rcs_") and body["token_type"] == "bearer"
    assert body["expires_at"] and body["remember_token"] is None
    assert body["user"]["username"] == name
    assert not SECRET_FIELDS & set(body["user"])


async def test_login_by_email_ignores_case(harness: Harness) -> None:
    name = unique()
    await harness.add_user(name, "viewer", email=f"{name}@example.com")
    response = await post_login(harness, f"  {name.upper()}@EXAMPLE.com ")
    assert response.status == 200
    assert (await response.json())["data"]["user"]["username"] == name


async def test_login_sets_an_httponly_samesite_lax_session_cookie(harness: Harness) -> None:
    name = unique()
    await harness.add_user(name, "viewer")
    response = await post_login(harness, name)
    token = (await response.json())["data"]["token"]
    cookie = response.cookies[SESSION_COOKIE]
    assert cookie.value == token
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
    assert not cookie["secure"]


async def test_the_session_cookie_authenticates_browser_requests(harness: Harness) -> None:
    name = unique()
    await harness.add_user(name, "viewer")
    async with browser(harness) as client:
        await client.post("/api/v1/auth/login", json={"login": name, "password": PASSWORD})
        response = await client.get("/api/v1/auth/me")
        assert response.status == 200
        assert (await response.json())["data"]["user"]["username"] == name


async def test_wrong_password_unknown_user_and_inactive_user_get_identical_answers(
    harness: Harness,
) -> None:
    active, inactive = unique(), unique()
    await harness.add_user(active, "editor")
    await harness.add_user(inactive, "editor", is_active=False)
    wrong = await problem_of(await post_login(harness, active, "not the password at all"))
    unknown = await problem_of(await post_login(harness, unique(), "not the password at all"))
    disabled = await problem_of(await post_login(harness, inactive, PASSWORD))
    assert wrong == unknown == disabled
    assert wrong["http"] == 401 and wrong["code"] == "invalid_credentials"


async def test_a_failed_login_is_audited_as_a_failure_without_naming_the_cause(
    harness: Harness,
) -> None:
    name = unique()
    await harness.add_user(name, "viewer")
    await post_login(harness, name, "wrong password here")
    entry = await harness.scalar(
        sa.select(AuditLog)
        .where(AuditLog.action_type == "auth.login", AuditLog.details.contains(name))
        .order_by(AuditLog.id.desc())
    )
    assert entry is not None
    assert entry.status == "failure" and entry.user_id is None
    assert "password" not in (entry.details or "")


async def test_a_successful_login_is_audited_and_sets_last_login(harness: Harness) -> None:
    name = unique()
    user = await harness.add_user(name, "viewer")
    await harness.login(name)
    entry = await harness.scalar(
        sa.select(AuditLog).where(AuditLog.action_type == "auth.login", AuditLog.user_id == user.id)
    )
    assert entry is not None and entry.status == "success"
    assert await harness.scalar(sa.select(User.last_login).where(User.id == user.id)) is not None


async def test_logins_are_rate_limited_per_account_with_retry_after(harness: Harness) -> None:
    name = unique()
    await harness.add_user(name, "viewer")
    limit = harness.app[keys.SETTINGS].login_rate_limit
    for _ in range(limit):
        assert (await post_login(harness, name, "wrong password here")).status == 401
    refused = await post_login(harness, name)
    assert refused.status == 429
    assert (await refused.json())["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    assert (await post_login(harness, unique())).status == 401  # other accounts are unaffected


async def test_the_username_and_the_email_of_an_account_share_one_budget(
    harness: Harness,
) -> None:
    name = unique()
    await harness.add_user(name, "viewer", email=f"{name}@example.com")
    limit = harness.app[keys.SETTINGS].login_rate_limit
    for attempt in range(limit):
        login = name if attempt % 2 else f"{name.upper()}@example.com"
        assert (await post_login(harness, login, "wrong password here")).status == 401
    for login in (name, f"{name}@example.com"):
        assert (await post_login(harness, login)).status == 429


async def test_an_unknown_login_is_limited_like_an_account(harness: Harness) -> None:
    limit = harness.app[keys.SETTINGS].login_rate_limit
    for name in (unique(), f"{unique()}@example.com"):
        answers = [(await post_login(harness, name)).status for _ in range(limit + 1)]
        assert answers == [401] * limit + [429]


async def test_a_successful_login_resets_the_account_counter(harness: Harness) -> None:
    name = unique()
    await harness.add_user(name, "viewer")
    limit = harness.app[keys.SETTINGS].login_rate_limit
    for _ in range(2):
        for _ in range(limit - 1):
            assert (await post_login(harness, name, "wrong password here")).status == 401
        assert (await post_login(harness, name)).status == 200


async def test_login_refuses_unknown_fields_and_non_boolean_remember(harness: Harness) -> None:
    extra = await post_login(harness, "admin1", admin=True)
    loose = await post_login(harness, "admin1", remember="yes")
    assert extra.status == loose.status == 422


async def test_me_shows_roles_and_effective_permissions(harness: Harness) -> None:
    response = await harness.call("GET", "/api/v1/auth/me", role="editor")
    body = (await response.json())["data"]
    assert response.status == 200
    assert body["roles"] == ["editor"]
    assert "content.publish" in body["permissions"] and "users.manage" not in body["permissions"]
    assert not SECRET_FIELDS & set(body["user"])


async def test_me_without_credentials_is_unauthorized(harness: Harness) -> None:
    response = await harness.client.get("/api/v1/auth/me")
    assert response.status == 401


async def test_logout_ends_the_session_and_clears_the_cookies(harness: Harness) -> None:
    name = unique()
    await harness.add_user(name, "viewer")
    token = await harness.login(name)
    response = await harness.call("POST", "/api/v1/auth/logout", token=token)
    assert response.status == 204
    assert response.cookies[SESSION_COOKIE].value == ""
    assert (await harness.call("GET", "/api/v1/auth/me", token=token)).status == 401


@pytest.mark.parametrize(
    ("column", "setting"),
    [("created_at", "session_ttl_seconds"), ("last_active", "session_idle_seconds")],
    ids=["past-lifetime", "idle"],
)
async def test_an_expired_session_is_rejected(harness: Harness, column: str, setting: str) -> None:
    name = unique()
    await harness.add_user(name, "viewer")
    token = await harness.login(name)
    limit = getattr(harness.app[keys.SETTINGS], setting)
    await execute(
        harness,
        sa.update(UserSession)
        .where(UserSession.id == hash_token(token))
        .values({column: utcnow() - timedelta(seconds=limit + 5)}),
    )
    assert (await harness.call("GET", "/api/v1/auth/me", token=token)).status == 401


async def test_a_garbage_bearer_token_is_unauthorized(harness: Harness) -> None:
    for token in ("rcs_nope", "rcp_nope", "something-else", "rcs_" + "x" * 500):
        assert (await harness.call("GET", "/api/v1/auth/me", token=token)).status == 401
