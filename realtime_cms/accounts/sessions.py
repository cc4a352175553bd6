"""Bearer credentials: sessions and API tokens resolved to a `Principal`, and their revocation."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import datetime, timedelta
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from realtime_cms.accounts.api_tokens import document_cap
from realtime_cms.config import Settings
from realtime_cms.events import AccessChanged, emit
from realtime_cms.models.auth import ApiToken, RememberToken, User
from realtime_cms.models.base import Base, utcnow
from realtime_cms.models.realtime import UserSession
from realtime_cms.principal import Principal
from realtime_cms.rbac.service import permissions_for
from realtime_cms.security.tokens import (
    API_TOKEN_PREFIX,
    SESSION_PREFIX,
    hash_token,
    matches,
    new_token,
)

# Activity timestamps are written at most this often, so reads don't turn into writes.
TOUCH_INTERVAL = timedelta(minutes=1)
_MAX_TOKEN_LENGTH = 200
Row = TypeVar("Row", bound=Base)
T = TypeVar("T")
_CHUNK = 500


async def resolve_principal(
    db: AsyncSession, token: str, *, settings: Settings, ip: str | None, user_agent: str | None
) -> Principal | None:
    """The principal behind a session or API token; None when unknown or no longer valid."""
    if len(token) > _MAX_TOKEN_LENGTH:
        return None
    if token.startswith(SESSION_PREFIX):
        return await _from_session(db, hash_token(token), settings, ip, user_agent)
    if token.startswith(API_TOKEN_PREFIX):
        return await _from_api_token(db, hash_token(token), ip, user_agent)
    return None


async def with_user(
    db: AsyncSession, model: type[Row], column: InstrumentedAttribute[str], digest: str
) -> tuple[Row, User] | None:
    """The row of a per-user token table whose hash `column` equals `digest`, with its user.

    The index finds the row; the stored hash is then compared in constant time as well.
    """
    found = (
        await db.execute(sa.select(model, User).join_from(model, User).where(column == digest))
    ).first()
    if found is None or not matches(getattr(found[0], column.key), digest):
        return None
    return found[0], found[1]


async def _from_session(
    db: AsyncSession, session_id: str, settings: Settings, ip: str | None, user_agent: str | None
) -> Principal | None:
    found = await with_user(db, UserSession, UserSession.id, session_id)
    if found is None:
        return None
    session, user = found
    now = utcnow()
    if (
        not user.is_active
        or session.created_at is None
        or now - session.created_at > timedelta(seconds=settings.session_ttl_seconds)
        or now - session.last_active > timedelta(seconds=settings.session_idle_seconds)
    ):
        return None
    if now - session.last_active >= TOUCH_INTERVAL:
        session.last_active = now
        await db.flush()
    roles, permissions = await permissions_for(db, user.id)
    return Principal(
        user.id,
        user.username,
        permissions,
        roles,
        session_id=session_id,
        ip=ip,
        user_agent=user_agent,
        full_name=full_name(user),
    )


def full_name(user: User) -> str:
    """First and last name as one string ("" when the user gave neither)."""
    return " ".join(part for part in (user.first_name, user.last_name) if part)


async def _from_api_token(
    db: AsyncSession, token_hash: str, ip: str | None, user_agent: str | None
) -> Principal | None:
    found = await with_user(db, ApiToken, ApiToken.token_hash, token_hash)
    if found is None:
        return None
    api_token, user = found
    now = utcnow()
    if (
        not user.is_active
        or api_token.revoked_at is not None
        or (api_token.expires_at is not None and api_token.expires_at <= now)
    ):
        return None
    if api_token.last_used_at is None or now - api_token.last_used_at >= TOUCH_INTERVAL:
        api_token.last_used_at = now
        await db.flush()
    roles, permissions = await permissions_for(db, user.id)
    scoped = permissions & frozenset(api_token.scopes)
    return Principal(
        user.id,
        user.username,
        scoped,
        roles,
        token_id=api_token.id,
        document_cap=document_cap(api_token.scopes, scoped),
        ip=ip,
        user_agent=user_agent,
        full_name=full_name(user),
    )


async def create_session(
    db: AsyncSession, user: User, ip: str | None, user_agent: str | None
) -> str:
    """Open a login session for `user`; returns the token (only its hash is stored)."""
    token = new_token(SESSION_PREFIX)
    now = utcnow()
    db.add(
        UserSession(
            id=hash_token(token),
            user_id=user.id,
            ip_address=ip[:45] if ip else None,
            user_agent=user_agent[:2000] if user_agent else None,
            last_active=now,
            created_at=now,
        )
    )
    await db.flush()
    return token


def session_expires_at(created: datetime, settings: Settings) -> datetime:
    """When a session created at `created` ends at the latest (idleness may end it sooner)."""
    return created + timedelta(seconds=settings.session_ttl_seconds)


async def revoke_session(db: AsyncSession, session_id: str) -> None:
    """End one login session (by the hash of its token); its live connections end at once."""
    await db.execute(sa.delete(UserSession).where(UserSession.id == session_id))
    emit(db, AccessChanged(user_id=None, session_id=session_id))


async def revoke_all(
    db: AsyncSession,
    user_id: int,
    *,
    keep_session: str | None = None,
    include_api_tokens: bool = True,
) -> None:
    """End a user's sessions (except `keep_session`), delete remember tokens, revoke API tokens."""
    sessions = sa.delete(UserSession).where(UserSession.user_id == user_id)
    if keep_session is not None:
        sessions = sessions.where(UserSession.id != keep_session)
    await db.execute(sessions)
    await db.execute(sa.delete(RememberToken).where(RememberToken.user_id == user_id))
    if include_api_tokens:
        await db.execute(
            sa.update(ApiToken)
            .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
    emit(db, AccessChanged(user_id=user_id))


async def still_valid(
    db: AsyncSession,
    *,
    session_ids: Collection[str],
    token_ids: Collection[int],
    settings: Settings,
) -> tuple[set[str], set[int]]:
    """Which of these sessions (token hashes) and API tokens (ids) still resolve, in bulk.

    The rules of `resolve_principal`, for long-lived connections that re-check many
    credentials at once; the valid sessions' activity is touched as resolving would.
    """
    now = utcnow()
    ttl, idle = settings.session_ttl_seconds, settings.session_idle_seconds
    sessions: set[str] = set()
    for chunk in _chunks(sorted(session_ids)):
        valid = set(
            await db.scalars(
                sa.select(UserSession.id)
                .join_from(UserSession, User)
                .where(
                    UserSession.id.in_(chunk),
                    User.is_active.is_(True),
                    UserSession.created_at >= now - timedelta(seconds=ttl),
                    UserSession.last_active >= now - timedelta(seconds=idle),
                )
            )
        )
        if valid:
            await db.execute(
                sa.update(UserSession)
                .where(UserSession.id.in_(valid), UserSession.last_active < now - TOUCH_INTERVAL)
                .values(last_active=now)
                .execution_options(synchronize_session=False)
            )
        sessions |= valid
    tokens: set[int] = set()
    for id_chunk in _chunks(sorted(token_ids)):
        tokens |= set(
            await db.scalars(
                sa.select(ApiToken.id)
                .join_from(ApiToken, User)
                .where(
                    ApiToken.id.in_(id_chunk),
                    User.is_active.is_(True),
                    ApiToken.revoked_at.is_(None),
                    sa.or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now),
                )
            )
        )
    return sessions, tokens


def _chunks(values: list[T]) -> Iterator[list[T]]:
    """Bounded IN lists: a few hundred values per query."""
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]
