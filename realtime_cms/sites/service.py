"""Sites and site membership (`site_users`): admin-gated changes, each audited."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.audit import record
from realtime_cms.errors import Conflict, NotFound
from realtime_cms.models.auth import User
from realtime_cms.models.sites import Site, SiteUser
from realtime_cms.principal import Principal
from realtime_cms.rbac.authorize import authorize
from realtime_cms.uniqueness import taken


async def get_site(db: AsyncSession, principal: Principal, site_id: int) -> Site:
    authorize(principal, "sites.view")
    site = await db.get(Site, site_id)
    if site is None:
        raise NotFound("No such site")
    return site


async def _ensure_unique(
    db: AsyncSession, *, name: str | None, domain: str | None, exclude: int | None
) -> None:
    for column, value in ((Site.name, name), (Site.domain, domain)):
        if value is None:
            continue
        if await taken(db, Site.id, column == value, exclude=exclude):
            raise Conflict(f"A site with {column.key} {value!r} exists", code="site_exists")


async def create_site(
    db: AsyncSession, principal: Principal, *, name: str, domain: str, is_active: bool
) -> Site:
    authorize(principal, "sites.manage")
    await _ensure_unique(db, name=name, domain=domain, exclude=None)
    site = Site(name=name, domain=domain, is_active=is_active)
    db.add(site)
    await db.flush()
    # Answer what was stored: MariaDB keeps only whole seconds of the Python-side timestamps.
    await db.refresh(site)
    await record(db, principal, "site.create", "site", site.id, {"name": name, "domain": domain})
    return site


async def update_site(db: AsyncSession, principal: Principal, site_id: int, **changes: Any) -> Site:
    authorize(principal, "sites.manage")
    site = await get_site(db, principal, site_id)
    wanted = {key: value for key, value in changes.items() if value is not None}
    await _ensure_unique(db, name=wanted.get("name"), domain=wanted.get("domain"), exclude=site.id)
    diff = {
        key: [getattr(site, key), value]
        for key, value in wanted.items()
        if getattr(site, key) != value
    }
    for key, value in wanted.items():
        setattr(site, key, value)
    await db.flush()
    await db.refresh(site)
    await record(db, principal, "site.update", "site", site.id, diff)
    return site


async def delete_site(db: AsyncSession, principal: Principal, site_id: int) -> None:
    """Delete a site; its content and memberships go with it (the seed's ON DELETE CASCADE)."""
    authorize(principal, "sites.manage")
    site = await get_site(db, principal, site_id)
    await db.delete(site)
    await db.flush()
    await record(
        db, principal, "site.delete", "site", site_id, {"name": site.name, "domain": site.domain}
    )


async def list_members(
    db: AsyncSession, principal: Principal, site_id: int
) -> list[dict[str, Any]]:
    await get_site(db, principal, site_id)
    rows = await db.execute(
        sa.select(SiteUser.user_id, User.username, User.email)
        .join(User, User.id == SiteUser.user_id)
        .where(SiteUser.site_id == site_id)
        .order_by(User.username)
    )
    return [dict(row._mapping) for row in rows]


async def add_member(db: AsyncSession, principal: Principal, site_id: int, user_id: int) -> None:
    """Make a user a member of a site (idempotent)."""
    authorize(principal, "sites.manage")
    await get_site(db, principal, site_id)
    if await db.get(User, user_id) is None:
        raise NotFound("No such user")
    if await db.get(SiteUser, (site_id, user_id)) is None:
        db.add(SiteUser(site_id=site_id, user_id=user_id))
        await db.flush()
        await record(db, principal, "site.member_add", "site", site_id, {"user_id": user_id})


async def remove_member(db: AsyncSession, principal: Principal, site_id: int, user_id: int) -> None:
    authorize(principal, "sites.manage")
    membership = await db.get(SiteUser, (site_id, user_id))
    if membership is None:
        raise NotFound("The user is not a member of this site")
    await db.delete(membership)
    await db.flush()
    await record(db, principal, "site.member_remove", "site", site_id, {"user_id": user_id})
