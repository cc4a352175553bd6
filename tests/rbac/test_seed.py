"""Seeding the catalog: admins gain permissions a release adds; other roles keep their edits."""

from __future__ import annotations

import sqlalchemy as sa

from handlers import keys
from realtime_cms.db import transaction
from realtime_cms.models.auth import Permission, Role, RolePermission
from realtime_cms.rbac.catalog import DEFAULT_ROLES, PERMISSIONS
from realtime_cms.rbac.service import seed_defaults
from tests.support.harness import Harness


async def _held(harness: Harness, role: str) -> set[str]:
    async with transaction(harness.app[keys.SESSIONS]) as db:
        rows = await db.scalars(
            sa.select(Permission.name)
            .join(RolePermission, RolePermission.permission_id == Permission.id)
            .join(Role, Role.id == RolePermission.role_id)
            .where(Role.name == role)
        )
        return set(rows)


async def _drop(harness: Harness, role: str, permission: str) -> None:
    async with transaction(harness.app[keys.SESSIONS]) as db:
        role_id = await db.scalar(sa.select(Role.id).where(Role.name == role))
        permission_id = await db.scalar(
            sa.select(Permission.id).where(Permission.name == permission)
        )
        await db.execute(
            sa.delete(RolePermission).where(
                RolePermission.role_id == role_id, RolePermission.permission_id == permission_id
            )
        )


async def test_the_admin_role_regains_every_catalog_permission(harness: Harness) -> None:
    await _drop(harness, "admin", "notifications.send")
    assert "notifications.send" not in await _held(harness, "admin")
    async with transaction(harness.app[keys.SESSIONS]) as db:
        await seed_defaults(db)
    assert await _held(harness, "admin") == set(PERMISSIONS)


async def test_other_default_roles_keep_what_an_administrator_took_away(
    harness: Harness,
) -> None:
    await _drop(harness, "editor", "taxonomy.manage")
    async with transaction(harness.app[keys.SESSIONS]) as db:
        await seed_defaults(db)
    assert await _held(harness, "editor") == DEFAULT_ROLES["editor"][1] - {"taxonomy.manage"}
