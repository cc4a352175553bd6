"""REST for sites and site membership."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from handlers.api import Call, Routes
from realtime_cms.listing import Field, Listing, Page
from realtime_cms.models.sites import Site
from realtime_cms.sites import service
from realtime_cms.sites.schemas import SiteCreate, SiteMemberOut, SiteOut, SiteUpdate

routes = Routes("sites")

SITE_LISTING = Listing(
    fields={
        "id": Field(Site.id, int),
        "name": Field(Site.name),
        "domain": Field(Site.domain),
        "is_active": Field(Site.is_active, bool),
        "created_at": Field(Site.created_at, datetime),
    },
    default_sort="id",
)


@routes.get(
    "/api/v1/sites", "List sites", permission="sites.view", response=SiteOut, listing=SITE_LISTING
)
async def list_sites(call: Call) -> Page[Site]:
    assert call.query is not None
    return await call.query.fetch(call.db, sa.select(Site))


@routes.post(
    "/api/v1/sites",
    "Create a site",
    permission="sites.manage",
    body=SiteCreate,
    response=SiteOut,
    status=201,
)
async def create_site(call: Call) -> Site:
    body: SiteCreate = call.body
    return await service.create_site(call.db, call.principal, **body.model_dump())


@routes.get(
    "/api/v1/sites/{site_id:\\d+}", "Read a site", permission="sites.view", response=SiteOut
)
async def get_site(call: Call) -> Site:
    return await service.get_site(call.db, call.principal, call.path_int("site_id"))


@routes.patch(
    "/api/v1/sites/{site_id:\\d+}",
    "Change a site",
    permission="sites.manage",
    body=SiteUpdate,
    response=SiteOut,
)
async def update_site(call: Call) -> Site:
    body: SiteUpdate = call.body
    return await service.update_site(
        call.db, call.principal, call.path_int("site_id"), **body.model_dump()
    )


@routes.delete(
    "/api/v1/sites/{site_id:\\d+}", "Delete a site and everything on it", permission="sites.manage"
)
async def delete_site(call: Call) -> None:
    await service.delete_site(call.db, call.principal, call.path_int("site_id"))


@routes.get(
    "/api/v1/sites/{site_id:\\d+}/users",
    "List a site's members",
    permission="sites.view",
    response=SiteMemberOut,
)
async def list_members(call: Call) -> Page[dict[str, Any]]:
    members = await service.list_members(call.db, call.principal, call.path_int("site_id"))
    return Page(items=members, total=len(members), limit=len(members), offset=0)


@routes.put(
    "/api/v1/sites/{site_id:\\d+}/users/{user_id:\\d+}",
    "Add a member to a site",
    permission="sites.manage",
)
async def add_member(call: Call) -> None:
    await service.add_member(
        call.db, call.principal, call.path_int("site_id"), call.path_int("user_id")
    )


@routes.delete(
    "/api/v1/sites/{site_id:\\d+}/users/{user_id:\\d+}",
    "Remove a member from a site",
    permission="sites.manage",
)
async def remove_member(call: Call) -> None:
    await service.remove_member(
        call.db, call.principal, call.path_int("site_id"), call.path_int("user_id")
    )
