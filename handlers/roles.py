"""REST for roles and the permission catalog."""

from __future__ import annotations

from datetime import datetime

from handlers.api import Call, Routes
from realtime_cms.listing import Field, Listing, Page
from realtime_cms.models.auth import Permission, Role
from realtime_cms.rbac import service
from realtime_cms.rbac.schemas import PermissionOut, RoleCreate, RoleOut, RoleUpdate

routes = Routes("roles")

ROLE_LISTING = Listing(
    fields={
        "id": Field(Role.id, int),
        "name": Field(Role.name),
        "created_at": Field(Role.created_at, datetime),
    },
    default_sort="id",
)
PERMISSION_LISTING = Listing(
    fields={"id": Field(Permission.id, int), "name": Field(Permission.name)}, default_sort="name"
)


async def _role_out(call: Call, role: Role) -> RoleOut:
    out = RoleOut.model_validate(role)
    out.permissions = await service.role_permissions(call.db, role.id)
    return out


@routes.get(
    "/api/v1/roles", "List roles", permission="roles.manage", response=RoleOut, listing=ROLE_LISTING
)
async def list_roles(call: Call) -> Page[RoleOut]:
    assert call.query is not None
    page = await service.list_roles(call.db, call.principal, call.query)
    return Page(
        [await _role_out(call, role) for role in page.items], page.total, page.limit, page.offset
    )


@routes.post(
    "/api/v1/roles",
    "Create a role",
    permission="roles.manage",
    body=RoleCreate,
    response=RoleOut,
    status=201,
)
async def create_role(call: Call) -> RoleOut:
    body: RoleCreate = call.body
    role = await service.create_role(
        call.db,
        call.principal,
        name=body.name,
        description=body.description,
        permissions=body.permissions,
    )
    return await _role_out(call, role)


@routes.get(
    "/api/v1/roles/{role_id:\\d+}", "Read a role", permission="roles.manage", response=RoleOut
)
async def get_role(call: Call) -> RoleOut:
    role = await service.read_role(call.db, call.principal, call.path_int("role_id"))
    return await _role_out(call, role)


@routes.patch(
    "/api/v1/roles/{role_id:\\d+}",
    "Change a role",
    permission="roles.manage",
    body=RoleUpdate,
    response=RoleOut,
)
async def update_role(call: Call) -> RoleOut:
    body: RoleUpdate = call.body
    role = await service.update_role(
        call.db,
        call.principal,
        call.path_int("role_id"),
        name=body.name,
        description=body.description,
        permissions=body.permissions,
    )
    return await _role_out(call, role)


@routes.delete("/api/v1/roles/{role_id:\\d+}", "Delete a role", permission="roles.manage")
async def delete_role(call: Call) -> None:
    await service.delete_role(call.db, call.principal, call.path_int("role_id"))


@routes.get(
    "/api/v1/permissions",
    "List the permission catalog",
    permission="roles.manage",
    response=PermissionOut,
    listing=PERMISSION_LISTING,
)
async def list_permissions(call: Call) -> Page[Permission]:
    assert call.query is not None
    return await service.list_permissions(call.db, call.principal, call.query)
