"""REST for administering user accounts and their role grants."""

from __future__ import annotations

from datetime import datetime

from handlers import keys
from handlers.api import Call, Routes
from realtime_cms.accounts import service
from realtime_cms.accounts.schemas import (
    PasswordSetIn,
    UserCreate,
    UserOut,
    UserRoleOut,
    UserUpdate,
)
from realtime_cms.listing import Field, Listing, Page
from realtime_cms.models.auth import Role, User
from realtime_cms.rbac import service as rbac

routes = Routes("users")

USER_LISTING = Listing(
    fields={
        "id": Field(User.id, int),
        "username": Field(User.username),
        "email": Field(User.email),
        "is_active": Field(User.is_active, bool),
        "site_id": Field(User.site_id, int),
        "created_at": Field(User.created_at, datetime),
        "last_login": Field(User.last_login, datetime),
    },
    default_sort="id",
)
USER = "/api/v1/users/{user_id:\\d+}"


@routes.get(
    "/api/v1/users", "List users", permission="users.view", response=UserOut, listing=USER_LISTING
)
async def list_users(call: Call) -> Page[User]:
    assert call.query is not None
    return await service.list_users(call.db, call.principal, call.query)


@routes.post(
    "/api/v1/users",
    "Create a user",
    permission="users.manage",
    body=UserCreate,
    response=UserOut,
    status=201,
)
async def create_user(call: Call) -> User:
    """Create an account; `roles` (names) are granted at once, which also needs roles.manage."""
    body: UserCreate = call.body
    return await service.create_user(
        call.db,
        call.app[keys.PASSWORDS],
        call.principal,
        username=body.username,
        email=body.email,
        password=body.password,
        first_name=body.first_name,
        last_name=body.last_name,
        site_id=body.site_id,
        is_active=body.is_active,
        roles=body.roles,
    )


@routes.get(USER, "Read a user", permission="users.view", response=UserOut)
async def get_user(call: Call) -> User:
    return await service.get_user(call.db, call.principal, call.path_int("user_id"))


@routes.patch(USER, "Change a user", permission="users.manage", body=UserUpdate, response=UserOut)
async def update_user(call: Call) -> User:
    """Change the fields sent; a changed email must be verified again."""
    body: UserUpdate = call.body
    return await service.update_user(
        call.db, call.principal, call.path_int("user_id"), body.model_dump(exclude_unset=True)
    )


@routes.delete(USER, "Delete a user", permission="users.manage")
async def delete_user(call: Call) -> None:
    await service.delete_user(call.db, call.principal, call.path_int("user_id"))


@routes.post(USER + "/deactivate", "Deactivate a user", permission="users.manage", response=UserOut)
async def deactivate_user(call: Call) -> User:
    """Deactivate an account; its sessions, remember-me and API tokens stop working at once."""
    return await service.deactivate(call.db, call.principal, call.path_int("user_id"))


@routes.post(USER + "/activate", "Activate a user", permission="users.manage", response=UserOut)
async def activate_user(call: Call) -> User:
    return await service.activate(call.db, call.principal, call.path_int("user_id"))


@routes.post(
    USER + "/password", "Set a user's password", permission="users.manage", body=PasswordSetIn
)
async def set_password(call: Call) -> None:
    """Set another user's password; all of that user's sessions and tokens are revoked."""
    body: PasswordSetIn = call.body
    await service.set_password(
        call.db,
        call.app[keys.PASSWORDS],
        call.principal,
        call.path_int("user_id"),
        new_password=body.password,
    )


@routes.get(USER + "/roles", "List a user's roles", permission="users.view", response=UserRoleOut)
async def list_user_roles(call: Call) -> Page[Role]:
    roles = await service.user_roles(call.db, call.principal, call.path_int("user_id"))
    return Page(items=roles, total=len(roles), limit=len(roles), offset=0)


@routes.put(USER + "/roles/{role_id:\\d+}", "Grant a role", permission="roles.manage")
async def grant_role(call: Call) -> None:
    await rbac.grant_role(
        call.db, call.principal, call.path_int("user_id"), call.path_int("role_id")
    )


@routes.delete(USER + "/roles/{role_id:\\d+}", "Revoke a role", permission="roles.manage")
async def revoke_role(call: Call) -> None:
    await rbac.revoke_role(
        call.db, call.principal, call.path_int("user_id"), call.path_int("role_id")
    )
