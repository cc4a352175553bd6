"""Accounts rules: one's own account, passwords, and administering users (each change audited).

Administering a user (changing, setting the password, (de)activating, deleting) is refused
with `target_outranks_you` when that user holds any permission the administrator lacks:
otherwise `users.manage` would be a way to take over an admin's account.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.accounts.guards import check_password, limit_key, throttle
from realtime_cms.accounts.sessions import revoke_all
from realtime_cms.accounts.signin import record_failure
from realtime_cms.audit import record
from realtime_cms.config import Settings
from realtime_cms.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from realtime_cms.events import AccessChanged, emit
from realtime_cms.listing import ListQuery, Page
from realtime_cms.models.auth import Role, User, UserRole
from realtime_cms.models.sites import Site
from realtime_cms.principal import Principal
from realtime_cms.ratelimit import RateLimiter
from realtime_cms.rbac.authorize import authorize
from realtime_cms.rbac.service import (
    grant_role,
    is_last_admin,
    require_not_outranked,
    role_id_by_name,
)
from realtime_cms.security.passwords import Passwords

_EDITABLE = frozenset({"username", "email", "first_name", "last_name", "site_id", "is_active"})


async def current_user(db: AsyncSession, principal: Principal) -> User:
    """The signed-in user behind `principal`."""
    user = await db.get(User, principal.user_id) if principal.user_id is not None else None
    if user is None:
        raise Unauthorized("Sign in to continue")
    return user


async def change_password(
    db: AsyncSession,
    passwords: Passwords,
    limiter: RateLimiter,
    settings: Settings,
    principal: Principal,
    *,
    current_password: str,
    new_password: str,
) -> None:
    """Change one's own password (proving the current one); other sessions and all tokens end."""
    user = await current_user(db, principal)
    await throttle(
        limiter,
        settings.rate_limit_window_seconds,
        (limit_key("password:user", str(user.id)), settings.login_rate_limit),
        message="Too many password attempts; try again later",
    )
    if not await passwords.verify(user.password, current_password):
        await record_failure(db, principal, "user.password_change", {"user_id": user.id})
        raise Forbidden("The current password is incorrect", code="wrong_password")
    await _store_password(db, passwords, user, new_password)
    await revoke_all(db, user.id, keep_session=principal.session_id)
    await record(db, principal, "user.password_change", "user", user.id)


async def set_password(
    db: AsyncSession, passwords: Passwords, principal: Principal, user_id: int, *, new_password: str
) -> None:
    """An administrator sets another user's password; all of that user's sessions and tokens end."""
    authorize(principal, "users.manage")
    if user_id == principal.user_id:
        raise Conflict(
            "Change your own password with POST /api/v1/auth/password", code="own_password"
        )
    user = await _managed(db, principal, user_id)
    await _store_password(db, passwords, user, new_password)
    await revoke_all(db, user.id)
    await record(db, principal, "user.password_set", "user", user.id)


async def _store_password(
    db: AsyncSession, passwords: Passwords, user: User, new_password: str
) -> None:
    check_password(new_password, username=user.username, email=user.email)
    user.password = await passwords.hash(new_password)
    user.password_reset_token = None
    user.password_reset_expires = None
    await db.flush()


async def _get(db: AsyncSession, user_id: int) -> User:
    user = await db.get(User, user_id)
    if user is None:
        raise NotFound("No such user")
    return user


async def _managed(db: AsyncSession, principal: Principal, user_id: int) -> User:
    """A user the principal may administer: one holding no permission the principal lacks."""
    user = await _get(db, user_id)
    await require_not_outranked(db, principal, user.id)
    return user


async def get_user(db: AsyncSession, principal: Principal, user_id: int) -> User:
    authorize(principal, "users.view")
    return await _get(db, user_id)


async def list_users(db: AsyncSession, principal: Principal, query: ListQuery) -> Page[User]:
    authorize(principal, "users.view")
    return await query.fetch(db, sa.select(User))


async def user_roles(db: AsyncSession, principal: Principal, user_id: int) -> list[Role]:
    """The roles granted to a user, by name."""
    await get_user(db, principal, user_id)
    rows = await db.scalars(
        sa.select(Role)
        .join(UserRole, UserRole.role_id == Role.id)
        .where(UserRole.user_id == user_id)
        .order_by(Role.name)
    )
    return list(rows)


async def create_user(
    db: AsyncSession,
    passwords: Passwords,
    principal: Principal,
    *,
    username: str,
    email: str,
    password: str,
    first_name: str | None = None,
    last_name: str | None = None,
    site_id: int | None = None,
    is_active: bool = True,
    roles: Sequence[str] = (),
) -> User:
    """Create an account, granting `roles` (which needs roles.manage too)."""
    authorize(principal, "users.manage")
    email = email.lower()
    await _ensure_unique(db, username=username, email=email, exclude=None)
    await _ensure_site(db, site_id)
    check_password(password, username=username, email=email)
    user = User(
        username=username,
        email=email,
        password=await passwords.hash(password),
        first_name=first_name,
        last_name=last_name,
        site_id=site_id,
        is_active=is_active,
    )
    db.add(user)
    await db.flush()
    await record(
        db, principal, "user.create", "user", user.id, {"username": username, "email": email}
    )
    for role in dict.fromkeys(roles):
        await grant_role(db, principal, user.id, await role_id_by_name(db, role))
    await db.refresh(user)
    return user


async def update_user(
    db: AsyncSession, principal: Principal, user_id: int, changes: Mapping[str, Any]
) -> User:
    """Change the given fields; a new email needs verifying again, `is_active` (de)activates."""
    authorize(principal, "users.manage")
    unknown = set(changes) - _EDITABLE
    if unknown:
        raise Invalid(f"Cannot change {', '.join(sorted(unknown))}", code="invalid_field")
    user = await _managed(db, principal, user_id)
    wanted = dict(changes)
    if wanted.get("email") is not None:
        wanted["email"] = wanted["email"].lower()
    for key in ("username", "email", "is_active"):
        if key in wanted and wanted[key] is None:
            raise Invalid(f"{key} cannot be null", code="invalid_field")
    await _ensure_unique(
        db, username=wanted.get("username"), email=wanted.get("email"), exclude=user.id
    )
    await _ensure_site(db, wanted.get("site_id"))
    active = wanted.pop("is_active", user.is_active)
    diff = {
        key: [getattr(user, key), value]
        for key, value in wanted.items()
        if getattr(user, key) != value
    }
    if "email" in diff:
        user.email_verified_at = None
        user.password_reset_token = None
        user.password_reset_expires = None
    for key, value in wanted.items():
        setattr(user, key, value)
    await _save(db, user)
    if diff:
        await record(db, principal, "user.update", "user", user.id, diff)
    if active != user.is_active:
        await _set_active(db, principal, user, active)
    return user


async def deactivate(db: AsyncSession, principal: Principal, user_id: int) -> User:
    """Deactivate an account and end all its sessions and tokens."""
    authorize(principal, "users.manage")
    user = await _managed(db, principal, user_id)
    if user.is_active:
        await _set_active(db, principal, user, False)
    return user


async def activate(db: AsyncSession, principal: Principal, user_id: int) -> User:
    authorize(principal, "users.manage")
    user = await _managed(db, principal, user_id)
    if not user.is_active:
        await _set_active(db, principal, user, True)
    return user


async def _set_active(db: AsyncSession, principal: Principal, user: User, active: bool) -> None:
    if not active:
        await _refuse_lockout(db, principal, user, "deactivate")
        await revoke_all(db, user.id)
    user.is_active = active
    await _save(db, user)
    await record(db, principal, "user.activate" if active else "user.deactivate", "user", user.id)


async def _save(db: AsyncSession, user: User) -> None:
    # Reload so answers show what the database stored (MariaDB keeps whole seconds only).
    await db.flush()
    await db.refresh(user)


async def delete_user(db: AsyncSession, principal: Principal, user_id: int) -> None:
    """Delete an account; refused for yourself, the last admin, or a user other records require."""
    authorize(principal, "users.manage")
    user = await _managed(db, principal, user_id)
    await _refuse_lockout(db, principal, user, "delete")
    details = {"username": user.username, "email": user.email}
    await db.delete(user)
    try:
        await db.flush()
    except IntegrityError as exc:
        raise Conflict(
            "Other records still refer to this user; deactivate it instead", code="user_in_use"
        ) from exc
    await record(db, principal, "user.delete", "user", user_id, details)
    emit(db, AccessChanged(user_id=user_id))


async def _refuse_lockout(db: AsyncSession, principal: Principal, user: User, verb: str) -> None:
    if user.id == principal.user_id:
        raise Conflict(f"You cannot {verb} your own account", code="self_lockout")
    if user.is_active and await is_last_admin(db, user.id):
        raise Conflict(f"You cannot {verb} the last active admin", code="last_admin")


async def _ensure_unique(
    db: AsyncSession, *, username: str | None, email: str | None, exclude: int | None
) -> None:
    for column, value, code in (
        (User.username, username, "username_taken"),
        (User.email, email, "email_taken"),
    ):
        if value is None:
            continue
        stmt = sa.select(User.id).where(sa.func.lower(column) == value.lower())
        if exclude is not None:
            stmt = stmt.where(User.id != exclude)
        if await db.scalar(stmt) is not None:
            raise Conflict(f"That {column.key} is already in use", code=code)


async def _ensure_site(db: AsyncSession, site_id: int | None) -> None:
    if site_id is not None and await db.get(Site, site_id) is None:
        raise Invalid("No such site", code="unknown_site")
