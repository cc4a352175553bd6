"""Signing in and out: login by username or email, throttled, with identical failures."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.accounts.guards import limit_key, login_key, throttle
from realtime_cms.accounts.remember import SignIn, forget, sign_in
from realtime_cms.accounts.sessions import revoke_all, revoke_session
from realtime_cms.audit import record
from realtime_cms.config import Settings
from realtime_cms.errors import Unauthorized
from realtime_cms.models.auth import User
from realtime_cms.models.base import utcnow
from realtime_cms.principal import Principal, anonymous
from realtime_cms.ratelimit import RateLimiter
from realtime_cms.security.passwords import Passwords

# One answer for an unknown login, a wrong password and an inactive account.
_BAD_LOGIN = "The login or password is incorrect"


async def login(
    db: AsyncSession,
    passwords: Passwords,
    limiter: RateLimiter,
    settings: Settings,
    *,
    login: str,
    password: str,
    remember: bool,
    ip: str | None,
    user_agent: str | None,
) -> SignIn:
    """Sign in by username or email; every failure looks and costs the same."""
    who = anonymous(ip, user_agent)
    name = login.strip().lower()
    window, refused = settings.rate_limit_window_seconds, "Too many login attempts; try again later"
    ip_key = limit_key("login:ip", ip or "unknown")
    await throttle(limiter, window, (ip_key, settings.login_ip_rate_limit), message=refused)
    user = await _find_by_login(db, name)
    # Looked up first so that the username and the email of one account share one budget.
    account_key = login_key(user.id if user else None, name)
    await throttle(limiter, window, (account_key, settings.login_rate_limit), message=refused)
    valid = await passwords.verify(user.password if user else None, password)
    if user is None or not valid or not user.is_active:
        await record_failure(db, who, "auth.login", {"login": name[:100]})
        raise Unauthorized(_BAD_LOGIN, code="invalid_credentials")
    await limiter.reset(account_key)
    if passwords.needs_rehash(user.password):
        user.password = await passwords.hash(password)
    user.last_login = utcnow()
    result = await sign_in(db, user, settings, ip=ip, user_agent=user_agent, remember=remember)
    await record(db, who, "auth.login", "user", user.id, {"remember": remember}, user_id=user.id)
    return result


async def _find_by_login(db: AsyncSession, name: str) -> User | None:
    column = User.email if "@" in name else User.username
    return await db.scalar(sa.select(User).where(sa.func.lower(column) == name))


async def record_failure(
    db: AsyncSession, who: Principal, action: str, details: dict[str, Any]
) -> None:
    """Audit a failed attempt in a transaction of its own, since the failing request's rolls back.

    Call it before the request writes anything: SQLite would make it wait for that writer.
    """
    async with AsyncSession(bind=db.bind) as apart, apart.begin():
        await record(apart, who, action, "user", None, details, status="failure")


async def logout(db: AsyncSession, principal: Principal, *, remember_token: str | None) -> None:
    """End the caller's session and forget the remember-me token this client holds."""
    user_id = principal.user_id
    if principal.session_id is not None:
        await revoke_session(db, principal.session_id)
    if remember_token and user_id is not None:
        await forget(db, remember_token, user_id)
    await record(db, principal, "auth.logout", "user", user_id)


async def logout_everywhere(db: AsyncSession, principal: Principal) -> None:
    """End every session and remember-me token of the caller, this one included, and revoke
    their API tokens; their live connections on every process end at once."""
    user_id = principal.user_id
    if user_id is None:
        raise Unauthorized("Sign in to continue")
    await revoke_all(db, user_id)
    await record(db, principal, "auth.logout_everywhere", "user", user_id)
