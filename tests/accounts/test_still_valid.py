"""`still_valid`: the bulk re-check of many sessions and API tokens follows resolution's rules."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from handlers import keys
from realtime_cms.accounts.sessions import TOUCH_INTERVAL, still_valid
from realtime_cms.db import transaction
from realtime_cms.models.auth import ApiToken, User
from realtime_cms.models.base import utcnow
from realtime_cms.models.realtime import UserSession
from realtime_cms.security.tokens import hash_token
from tests.support.harness import Harness


async def _check(
    harness: Harness, sessions: set[str], tokens: set[int]
) -> tuple[set[str], set[int]]:
    async with transaction(harness.app[keys.SESSIONS]) as db:
        return await still_valid(
            db, session_ids=sessions, token_ids=tokens, settings=harness.app[keys.SETTINGS]
        )


async def _set_session(harness: Harness, token: str, **values: object) -> None:
    async with transaction(harness.app[keys.SESSIONS]) as db:
        await db.execute(
            sa.update(UserSession).where(UserSession.id == hash_token(token)).values(**values)
        )


async def _api_token(harness: Harness, role: str) -> int:
    body = {"name": "check", "scopes": ["content.view"]}
    response = await harness.call("POST", "/api/v1/auth/tokens", role=role, json=body)
    assert response.status == 201
    return int((await response.json())["data"]["id"])


async def test_live_sessions_are_valid_and_ended_ones_are_not(harness: Harness) -> None:
    live, ended = await harness.login("viewer1"), await harness.login("viewer1")
    assert (await harness.call("POST", "/api/v1/auth/logout", token=ended)).status < 300
    found, _ = await _check(harness, {hash_token(live), hash_token(ended), "0" * 64}, set())
    assert found == {hash_token(live)}


async def test_an_idle_session_is_invalid_and_is_not_revived(harness: Harness) -> None:
    token = await harness.login("author1")
    idle_for = harness.app[keys.SETTINGS].session_idle_seconds + 60
    long_ago = utcnow() - timedelta(seconds=idle_for)
    await _set_session(harness, token, last_active=long_ago)
    assert await _check(harness, {hash_token(token)}, set()) == (set(), set())
    assert (await harness.call("GET", "/api/v1/auth/me", token=token)).status == 401


async def test_a_valid_session_is_touched_as_resolving_would(harness: Harness) -> None:
    token = await harness.login("editor1")
    earlier = utcnow() - TOUCH_INTERVAL - timedelta(seconds=5)
    await _set_session(harness, token, last_active=earlier)
    assert await _check(harness, {hash_token(token)}, set()) == ({hash_token(token)}, set())
    last_active = await harness.scalar(
        sa.select(UserSession.last_active).where(UserSession.id == hash_token(token))
    )
    assert last_active > earlier


async def test_revoked_and_expired_api_tokens_and_inactive_users_are_invalid(
    harness: Harness,
) -> None:
    kept, revoked, expired = [await _api_token(harness, "editor") for _ in range(3)]
    response = await harness.call("DELETE", f"/api/v1/auth/tokens/{revoked}", role="editor")
    assert response.status == 204
    async with transaction(harness.app[keys.SESSIONS]) as db:
        await db.execute(
            sa.update(ApiToken).where(ApiToken.id == expired).values(expires_at=utcnow())
        )
    assert await _check(harness, set(), {kept, revoked, expired}) == (set(), {kept})
    user = await harness.add_user("still-valid-inactive", "viewer")
    token = await harness.login("still-valid-inactive")
    async with transaction(harness.app[keys.SESSIONS]) as db:
        await db.execute(sa.update(User).where(User.id == user.id).values(is_active=False))
    assert await _check(harness, {hash_token(token)}, set()) == (set(), set())
