"""Sign-in results: a session plus remember-me tokens, which rotate on every exchange."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.accounts.sessions import create_session, session_expires_at, with_user
from realtime_cms.audit import record
from realtime_cms.config import Settings
from realtime_cms.errors import Unauthorized
from realtime_cms.models.auth import RememberToken, User
from realtime_cms.models.base import utcnow
from realtime_cms.principal import anonymous
from realtime_cms.security.tokens import REMEMBER_PREFIX, hash_token, new_token


@dataclass(frozen=True, slots=True)
class SignIn:
    """A fresh session token (and remember-me token when asked) for a user."""

    user: User
    token: str
    expires_at: datetime
    remember_token: str | None = None
    remember_expires_at: datetime | None = None


async def sign_in(
    db: AsyncSession,
    user: User,
    settings: Settings,
    *,
    ip: str | None,
    user_agent: str | None,
    remember: bool,
) -> SignIn:
    """Open a session for `user`, with a remember-me token when `remember` is true."""
    token = await create_session(db, user, ip, user_agent)
    expires_at = session_expires_at(utcnow(), settings)
    if not remember:
        return SignIn(user, token, expires_at)
    remember_token, remember_expires = await issue(db, user.id, settings)
    return SignIn(user, token, expires_at, remember_token, remember_expires)


async def issue(db: AsyncSession, user_id: int, settings: Settings) -> tuple[str, datetime]:
    """A new remember-me token for `user_id` and when it expires (only its hash is stored)."""
    token = new_token(REMEMBER_PREFIX)
    expires_at = utcnow() + timedelta(days=settings.remember_ttl_days)
    db.add(RememberToken(user_id=user_id, token=hash_token(token), expires_at=expires_at))
    await db.flush()
    return token, expires_at


async def exchange(
    db: AsyncSession,
    settings: Settings,
    *,
    token: str | None,
    ip: str | None,
    user_agent: str | None,
) -> SignIn:
    """Trade a remember-me token for a new session and a new remember-me token; the old one dies.

    The delete is the single-use check: of two requests presenting the same token, only
    the one whose delete removes the row signs in.
    """
    refused = Unauthorized("The remember-me token is invalid or expired", code="invalid_token")
    if not token or not token.startswith(REMEMBER_PREFIX):
        raise refused
    digest = hash_token(token)
    found = await with_user(db, RememberToken, RememberToken.token, digest)
    if found is None:
        raise refused
    stored, user = found
    deleted = await db.execute(sa.delete(RememberToken).where(RememberToken.id == stored.id))
    if deleted.rowcount != 1 or stored.expires_at <= utcnow() or not user.is_active:  # type: ignore[attr-defined]
        raise refused
    result = await sign_in(db, user, settings, ip=ip, user_agent=user_agent, remember=True)
    await record(db, anonymous(ip, user_agent), "auth.remember", "user", user.id, user_id=user.id)
    return result


async def forget(db: AsyncSession, token: str, user_id: int) -> None:
    """Delete one of `user_id`'s remember-me tokens (at logout); other users' stay."""
    await db.execute(
        sa.delete(RememberToken).where(
            RememberToken.token == hash_token(token), RememberToken.user_id == user_id
        )
    )
