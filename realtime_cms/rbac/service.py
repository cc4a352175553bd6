"""Roles, permissions and grants: seeding defaults, resolving permissions, admin changes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.audit import record
from realtime_cms.errors import Conflict, Forbidden, Invalid, NotFound
from realtime_cms.events import AccessChanged, emit
from realtime_cms.listing import ListQuery, Page
from realtime_cms.models.auth import Permission, Role, RolePermission, User, UserRole
from realtime_cms.principal import Principal
from realtime_cms.rbac.authorize import authorize
from realtime_cms.rbac.catalog import DEFAULT_ROLES, PERMISSIONS


async def seed_defaults(db: AsyncSession) -> None:
    """Create missing catalog permissions and default roles (idempotent; never removes grants).

    The `admin` role holds every permission of the catalog, including ones a later release
    adds: an existing installation's admins get them on the next `migrate`.
    """
    existing = {p.name: p for p in await db.scalars(sa.select(Permission))}
    for name, description in PERMISSIONS.items():
        if name not in existing:
            existing[name] = Permission(name=name, description=description)
            db.add(existing[name])
    await db.flush()
    roles = {r.name: r for r in await db.scalars(sa.select(Role))}
    for role_name, (description, granted) in DEFAULT_ROLES.items():
        role = roles.get(role_name)
        if role is None:
            role = Role(name=role_name, description=description)
            db.add(role)
            await db.flush()
        elif role_name != "admin":
            continue
        held = set(
            await db.scalars(
                sa.select(RolePermission.permission_id).where(RolePermission.role_id == role.id)
            )
        )
        for perm in sorted(granted):
            if existing[perm].id not in held:
                db.add(RolePermission(role_id=role.id, permission_id=existing[perm].id))
    await db.flush()


async def permissions_for(db: AsyncSession, user_id: int) -> tuple[frozenset[str], frozenset[str]]:
    """The names of a user's roles and of every permission those roles grant."""
    role_names = await db.scalars(
        sa.select(Role.name)
        .join(UserRole, UserRole.role_id == Role.id)
        .where(UserRole.user_id == user_id)
    )
    perm_names = await db.scalars(
        sa.select(Permission.name)
        .join(RolePermission, RolePermission.permission_id == Permission.id)
        .join(UserRole, UserRole.role_id == RolePermission.role_id)
        .where(UserRole.user_id == user_id)
        .distinct()
    )
    return frozenset(role_names), frozenset(perm_names)


async def principal_of(db: AsyncSession, user: User) -> Principal:
    """The principal `user` acts as when the server acts for them (no login session): their
    roles' permissions, now."""
    roles, permissions = await permissions_for(db, user.id)
    return Principal(user_id=user.id, username=user.username, permissions=permissions, roles=roles)


def require_held(principal: Principal, permissions: Iterable[str], *, doing: str) -> None:
    """Forbidden (`permission_not_held`) unless the principal holds every one of `permissions`:
    nobody hands out, or takes away, a permission they do not hold themselves."""
    missing = sorted(set(permissions) - principal.permissions)
    if missing:
        raise Forbidden(
            f"You cannot {doing}: you do not hold {', '.join(missing)}",
            code="permission_not_held",
        )


async def require_not_outranked(db: AsyncSession, principal: Principal, user_id: int) -> None:
    """Forbidden (`target_outranks_you`) when the user holds any permission the principal
    lacks (an admin holds them all), so managing users never leads to becoming more."""
    _, held = await permissions_for(db, user_id)
    if not held <= principal.permissions:
        raise Forbidden(
            "That user holds permissions you do not; only someone holding them all may do this",
            code="target_outranks_you",
        )


async def get_role(db: AsyncSession, role_id: int) -> Role:
    role = await db.get(Role, role_id)
    if role is None:
        raise NotFound("No such role")
    return role


async def list_roles(db: AsyncSession, principal: Principal, query: ListQuery) -> Page[Role]:
    authorize(principal, "roles.manage")
    return await query.fetch(db, sa.select(Role))


async def read_role(db: AsyncSession, principal: Principal, role_id: int) -> Role:
    authorize(principal, "roles.manage")
    return await get_role(db, role_id)


async def list_permissions(
    db: AsyncSession, principal: Principal, query: ListQuery
) -> Page[Permission]:
    """The permission catalog as stored."""
    authorize(principal, "roles.manage")
    return await query.fetch(db, sa.select(Permission))


async def role_permissions(db: AsyncSession, role_id: int) -> list[str]:
    """A role's permission names, sorted in Python: collations disagree on `_` versus `.`."""
    names = await db.scalars(
        sa.select(Permission.name)
        .join(RolePermission, RolePermission.permission_id == Permission.id)
        .where(RolePermission.role_id == role_id)
    )
    return sorted(names)


async def _permission_ids(db: AsyncSession, names: Sequence[str]) -> list[int]:
    unknown = sorted(set(names) - set(PERMISSIONS))
    if unknown:
        raise Invalid(f"Unknown permissions: {', '.join(unknown)}", code="unknown_permission")
    rows = await db.scalars(sa.select(Permission.id).where(Permission.name.in_(set(names))))
    return list(rows)


async def create_role(
    db: AsyncSession,
    principal: Principal,
    *,
    name: str,
    description: str | None,
    permissions: Sequence[str],
) -> Role:
    """A new role; it may carry only permissions the creator holds."""
    authorize(principal, "roles.manage")
    if await db.scalar(sa.select(Role.id).where(Role.name == name)) is not None:
        raise Conflict(f"A role named {name!r} exists", code="role_exists")
    ids = await _permission_ids(db, permissions)
    require_held(principal, permissions, doing="create a role carrying these permissions")
    role = Role(name=name, description=description)
    db.add(role)
    await db.flush()
    for permission_id in ids:
        db.add(RolePermission(role_id=role.id, permission_id=permission_id))
    await db.flush()
    # Answer what was stored: MariaDB keeps only whole seconds of the Python-side created_at.
    await db.refresh(role)
    await record(
        db,
        principal,
        "role.create",
        "role",
        role.id,
        {"name": name, "permissions": sorted(permissions)},
    )
    return role


async def update_role(
    db: AsyncSession,
    principal: Principal,
    role_id: int,
    *,
    name: str | None = None,
    description: str | None = None,
    permissions: Sequence[str] | None = None,
) -> Role:
    """Change a role; only someone holding every permission it carries, before and after."""
    authorize(principal, "roles.manage")
    role = await get_role(db, role_id)
    require_held(principal, await role_permissions(db, role.id), doing="change this role")
    changes: dict[str, object] = {}
    if name is not None and name != role.name:
        if role.name in DEFAULT_ROLES:
            raise Conflict("Default roles cannot be renamed", code="role_protected")
        if await db.scalar(sa.select(Role.id).where(Role.name == name)) is not None:
            raise Conflict(f"A role named {name!r} exists", code="role_exists")
        changes["name"] = [role.name, name]
        role.name = name
    if description is not None:
        changes["description"] = [role.description, description]
        role.description = description
    if permissions is not None:
        if role.name == "admin":
            raise Conflict("The admin role always holds every permission", code="role_protected")
        ids = await _permission_ids(db, permissions)
        require_held(principal, permissions, doing="give a role these permissions")
        await db.execute(sa.delete(RolePermission).where(RolePermission.role_id == role.id))
        for permission_id in ids:
            db.add(RolePermission(role_id=role.id, permission_id=permission_id))
        changes["permissions"] = sorted(permissions)
    await db.flush()
    await record(db, principal, "role.update", "role", role.id, changes)
    if permissions is not None:
        emit(db, AccessChanged(user_id=None))
    return role


async def delete_role(db: AsyncSession, principal: Principal, role_id: int) -> None:
    authorize(principal, "roles.manage")
    role = await get_role(db, role_id)
    if role.name in DEFAULT_ROLES:
        raise Conflict("Default roles cannot be deleted", code="role_protected")
    require_held(principal, await role_permissions(db, role.id), doing="delete this role")
    await db.delete(role)
    await db.flush()
    await record(db, principal, "role.delete", "role", role_id, {"name": role.name})
    emit(db, AccessChanged(user_id=None))


async def user_role_names(db: AsyncSession, user_id: int) -> list[str]:
    roles, _ = await permissions_for(db, user_id)
    return sorted(roles)


async def grant_role(db: AsyncSession, principal: Principal, user_id: int, role_id: int) -> None:
    """Give a user a role (idempotent); only a role carrying nothing the granter lacks."""
    authorize(principal, "roles.manage")
    if await db.get(User, user_id) is None:
        raise NotFound("No such user")
    role = await get_role(db, role_id)
    require_held(principal, await role_permissions(db, role.id), doing="grant this role")
    if await db.get(UserRole, (user_id, role_id)) is None:
        db.add(UserRole(user_id=user_id, role_id=role_id))
        await db.flush()
        await record(db, principal, "role.grant", "user", user_id, {"role": role.name})
        emit(db, AccessChanged(user_id=user_id))


async def revoke_role(db: AsyncSession, principal: Principal, user_id: int, role_id: int) -> None:
    """Take a role from a user; refused when the user holds anything the principal lacks."""
    authorize(principal, "roles.manage")
    grant = await db.get(UserRole, (user_id, role_id))
    if grant is None:
        raise NotFound("The user does not hold that role")
    role = await get_role(db, role_id)
    await require_not_outranked(db, principal, user_id)
    if role.name == "admin" and principal.user_id == user_id:
        raise Conflict("You cannot remove your own admin role", code="self_lockout")
    user = await db.get(User, user_id)
    if role.name == "admin" and user is not None and user.is_active and await _admin_count(db) <= 1:
        raise Conflict("The last admin cannot lose the admin role", code="last_admin")
    await db.delete(grant)
    await db.flush()
    await record(db, principal, "role.revoke", "user", user_id, {"role": role.name})
    emit(db, AccessChanged(user_id=user_id))


async def _admin_count(db: AsyncSession) -> int:
    count = await db.scalar(
        sa.select(sa.func.count())
        .select_from(UserRole)
        .join(Role, Role.id == UserRole.role_id)
        .join(User, User.id == UserRole.user_id)
        .where(Role.name == "admin", User.is_active.is_(True))
    )
    return int(count or 0)


async def is_last_admin(db: AsyncSession, user_id: int) -> bool:
    """Whether deactivating or deleting this user would leave no active admin."""
    user = await db.get(User, user_id)
    if user is None or not user.is_active:
        return False
    roles, _ = await permissions_for(db, user_id)
    return "admin" in roles and await _admin_count(db) <= 1


async def role_id_by_name(db: AsyncSession, name: str) -> int:
    role_id = await db.scalar(sa.select(Role.id).where(Role.name == name))
    if role_id is None:
        raise NotFound(f"No role named {name!r}")
    return int(role_id)
